"""The mrjob.conf of mrjob's EMR runner, generated from the same cluster definition as the launcher's.

Option names are mrjob 0.7.4's (``mrjob.emr.EMRJobRunner.OPT_NAMES``; a test checks them). Pure: no
AWS call, no mrjob import.
"""
from __future__ import annotations

from typing import TYPE_CHECKING, Optional

if TYPE_CHECKING:
    from .definition import ClusterDefinition


def mrjob_conf(defn: "ClusterDefinition", endpoint_url: Optional[str] = None, *, wheel_uri: Optional[str] = None,
               bootstrap_uri: Optional[str] = None, pool: bool = True) -> dict:
    """``{"runners": {"emr": {...}}}`` for ``mrjob -c``: region, release, roles, instance groups (types,
    counts, market) or fleets, the bootstrap action running ``bootstrap_uri`` with ``wheel_uri``, EMR
    configurations, log and temp
    locations (``<artifacts>/mrjob-tmp/``, which the instance role may write), tags, subnet, key pair.

    ``bootstrap_uri`` defaults to this checkout's emr_configs/bootstrap.sh, which mrjob uploads with the
    job (so the script always matches the code); an s3:// URI works too. ``wheel_uri`` defaults to the
    definition's, which ``ctr-pipeline emr up`` uploads: the wheel must be there before the job runs.

    Idle clusters end after ``idle_timeout_seconds`` (EMR's AutoTerminationPolicy, plus mrjob's own
    ``max_mins_idle`` in minutes). With ``pool`` the sampler's phases (count, regions, assign) share one
    cluster through mrjob's cluster pooling instead of starting one each (and mrjob does not read logs:
    a failed step's stderr is under ``log_uri``, see ``ctr-pipeline emr logs``). ``endpoint_url`` (moto in
    tests) becomes mrjob's S3, EMR, EC2 and IAM endpoints; mrjob's boto3 clients also honour
    AWS_ENDPOINT_URL when it is unset.
    """
    from .definition import BOOTSTRAP_SCRIPT

    wheel_uri, bootstrap_uri = wheel_uri or defn.wheel_uri, bootstrap_uri or str(BOOTSTRAP_SCRIPT)
    opts: dict = {
        "region": defn.region, "release_label": defn.release_label,
        "iam_service_role": defn.service_role, "iam_instance_profile": defn.instance_profile,
        "cloud_log_dir": defn.log_uri, "cloud_tmp_dir": defn.artifact("mrjob-tmp/"),
        "python_bin": [defn.python], "tags": {str(k): str(v) for k, v in defn.tags.items()},
        "max_mins_idle": max(1, defn.idle_timeout_seconds // 60),
        "extra_cluster_params": {"AutoTerminationPolicy": {"IdleTimeout": defn.idle_timeout_seconds}},
        # mrjob makes the script (the path before '#') available and runs it on every node with these args
        "bootstrap": [f"bash {bootstrap_uri}# {wheel_uri} {defn.python}"],
        "emr_configurations": defn.configurations(),
        "applications": list(defn.applications),
    }
    if pool:
        # - pool_wait_minutes: a job holds its pool lock (an EMR tag) until mrjob sees its step RUNNING,
        #   at most 60 s; a phase that ends between two polls leaves the lock behind, and the next phase
        #   waits for it (polling every 30 s) instead of starting a second cluster.
        # - read_logs off: on a pooled (still running) cluster mrjob waits 10 minutes after every step
        #   for its logs to reach S3, only to print counters; failed steps' logs stay under log_uri.
        opts.update(pool_clusters=True, pool_name=defn.name, pool_wait_minutes=2, pool_jitter_seconds=5,
                    read_logs=False)
    # the definition's own groups or fleets (types, counts, markets, spot settings), exactly as sent by
    # the launcher; mrjob's pooling matches clusters on them
    instances = defn.instances()
    if defn.fleets:
        opts["instance_fleets"] = instances["InstanceFleets"]
    else:
        opts["instance_groups"] = instances["InstanceGroups"]
    if defn.subnet_id:
        opts["subnet"] = defn.subnet_id
    if defn.key_name:
        opts["ec2_key_pair"] = defn.key_name
    if endpoint_url:
        opts.update(s3_endpoint=endpoint_url, emr_endpoint=endpoint_url, ec2_endpoint=endpoint_url,
                    iam_endpoint=endpoint_url)
    return {"runners": {"emr": opts}}
