"""Least-privilege IAM policy documents for a cluster definition (pure; nothing is created).

- Instance role (the EC2 instance profile every node runs as): list and read the input prefixes and
  the artifacts prefix; read, write and delete under the run prefixes and the mrjob sampler's scratch
  prefix (``<artifacts>/mrjob-tmp/``); write under the log prefix.
  Nothing else: no other bucket, no other service.
- Service role (what EMR itself uses to run the cluster): AWS's managed ``AmazonEMRServicePolicy_v2``
  (EC2 instances, networking and scaling on the user's behalf; it is maintained by AWS and scoped to
  resources tagged ``for-use-with-amazon-emr-managed-policies=true``), plus ``iam:PassRole`` on the
  instance role only, to EC2 only (the managed policy's own PassRole covers only the default role name
  ``EMR_EC2_DefaultRole``). The instance role is assumed to have the instance profile's name.

Nothing is written to disk: ``ctr-pipeline emr policies`` prints these documents for a definition.
"""
from __future__ import annotations

from typing import TYPE_CHECKING, Iterable, Optional

if TYPE_CHECKING:
    from .definition import ClusterDefinition

EMR_SERVICE_POLICY_ARN = "arn:aws:iam::aws:policy/service-role/AmazonEMRServicePolicy_v2"
MANAGED_TAG = {"for-use-with-amazon-emr-managed-policies": "true"}


def _split(uri: str) -> tuple[str, str]:
    bucket, _, key = uri[len("s3://"):].partition("/")
    return bucket, key.rstrip("/") + "/" if key.strip("/") else ""


def _objects(uris: Iterable[str]) -> list[str]:
    return sorted({f"arn:aws:s3:::{b}/{k}*" for b, k in map(_split, uris)})


def _listing(uris: Iterable[str]) -> list[dict]:
    by_bucket: dict[str, set] = {}
    for b, k in map(_split, uris):
        by_bucket.setdefault(b, set()).add(f"{k}*")
    return [{"Sid": f"List{i}", "Effect": "Allow", "Action": "s3:ListBucket", "Resource": f"arn:aws:s3:::{b}",
             "Condition": {"StringLike": {"s3:prefix": sorted(prefixes | {p.rstrip('*') for p in prefixes})}}}
            for i, (b, prefixes) in enumerate(sorted(by_bucket.items()))]


def instance_role_policy(defn: "ClusterDefinition") -> dict:
    """The IAM policy document (a JSON-ready dict) of the nodes' instance role: ListBucket limited by
    ``s3:prefix`` to the prefixes below, GetObject on the input and artifacts prefixes, read/write/delete
    on the run prefixes and ``<artifacts>/mrjob-tmp/``, PutObject on the log prefix."""
    read = [*defn.input_prefixes, defn.artifacts_uri]
    write = [*defn.run_prefixes, defn.artifact("mrjob-tmp/")]  # the mrjob sampler's scratch space
    return {"Version": "2012-10-17", "Statement": [
        *_listing([*read, *write, defn.log_uri]),
        {"Sid": "ReadInputAndArtifacts", "Effect": "Allow", "Action": ["s3:GetObject"], "Resource": _objects(read)},
        {"Sid": "ReadWriteRuns", "Effect": "Allow",
         "Action": ["s3:GetObject", "s3:PutObject", "s3:DeleteObject", "s3:AbortMultipartUpload"],
         "Resource": _objects(write)},
        {"Sid": "WriteLogs", "Effect": "Allow", "Action": ["s3:PutObject"], "Resource": _objects([defn.log_uri])},
    ]}


def service_role_policies(defn: "ClusterDefinition", account_id: str = "ACCOUNT_ID") -> dict:
    """EMR's service role: ``managed_policy_arns`` to attach, the ``inline_policy`` document
    (PassRole of the instance role in ``account_id``) and the ``required_tags`` the managed policy
    expects on the cluster's network resources."""
    role_arn = f"arn:aws:iam::{account_id}:role/{defn.instance_profile}"
    return {"managed_policy_arns": [EMR_SERVICE_POLICY_ARN],
            "inline_policy": {"Version": "2012-10-17", "Statement": [
                {"Sid": "PassInstanceRole", "Effect": "Allow", "Action": "iam:PassRole", "Resource": role_arn,
                 "Condition": {"StringLike": {"iam:PassedToService": "ec2.amazonaws.com*"}}}]},
            "required_tags": MANAGED_TAG}


def trust_policy(service: str, account_id: Optional[str] = None) -> dict:
    """Who may assume the role: ``elasticmapreduce.amazonaws.com`` (service role) or
    ``ec2.amazonaws.com`` (instance role). With ``account_id``, EMR may assume the service role only on
    behalf of that account's clusters (``aws:SourceAccount``/``aws:SourceArn``: no confused deputy)."""
    statement: dict = {"Effect": "Allow", "Principal": {"Service": service}, "Action": "sts:AssumeRole"}
    if account_id and service.startswith("elasticmapreduce."):
        statement["Condition"] = {"StringEquals": {"aws:SourceAccount": account_id},
                                  "ArnLike": {"aws:SourceArn": f"arn:aws:elasticmapreduce:*:{account_id}:*"}}
    return {"Version": "2012-10-17", "Statement": [statement]}
