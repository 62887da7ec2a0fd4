"""The EMR launcher (the boto3 adapter): upload artifacts, create a cluster, add stage steps, follow
them, fetch a failed step's stderr, terminate.

Clients come from :func:`ctr_pipeline.aws.client`; ``sleep`` and ``clock`` are injectable so tests
follow steps without waiting. Requests are built by :mod:`emr_configs.definition` and
:mod:`emr_configs.steps` and checked against botocore's model before they are sent.
"""
from __future__ import annotations

import gzip
import logging
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any, Callable, Optional, Sequence

from ctr_pipeline.aws import AwsSettings, client
from ctr_pipeline.errors import RunFailed, UserError

from .definition import BOOTSTRAP_SCRIPT, ENTRY_SCRIPT, WHEEL_NAME, ClusterDefinition
from .steps import stderr_key
from .validate import validate_request

log = logging.getLogger("ctr_pipeline.emr")
REPO = Path(__file__).resolve().parent.parent
DONE, FAILED = {"COMPLETED"}, {"FAILED", "CANCELLED", "INTERRUPTED"}
USER_ERROR_CODES = {"InvalidRequestException", "ValidationException", "NoSuchBucket", "AccessDenied",
                    "AccessDeniedException"}


def build_wheel(repo: Path = REPO) -> bytes:
    """This project's wheel, built from the checkout with pip (no network: --no-build-isolation)."""
    if not (repo / "setup.py").is_file():
        raise UserError(f"{repo}: no setup.py here; run 'ctr-pipeline emr' from a clone of the project")
    with tempfile.TemporaryDirectory(prefix="ctr-wheel-") as tmp:
        cmd = [sys.executable, "-m", "pip", "wheel", "--quiet", "--no-deps", "--no-build-isolation", "-w", tmp,
               str(repo)]
        done = subprocess.run(cmd, capture_output=True, text=True, timeout=600)
        if done.returncode != 0:
            raise RunFailed(f"building the wheel failed: {done.stderr.strip()[-500:]}")
        return (Path(tmp) / WHEEL_NAME).read_bytes()


def aws_call(what: str, fn: Callable, **kwargs) -> Any:
    """Call boto3; a request the user can fix is a UserError (exit 2), any other AWS error RunFailed."""
    from botocore.exceptions import BotoCoreError, ClientError, NoCredentialsError

    try:
        return fn(**kwargs)
    except NoCredentialsError:
        raise UserError(f"{what}: no AWS credentials; set AWS_PROFILE or AWS_ACCESS_KEY_ID / "
                        "AWS_SECRET_ACCESS_KEY (never in the config file)") from None
    except ClientError as exc:
        err = exc.response.get("Error", {})
        message = f"{what}: {err.get('Code')}: {err.get('Message')}"
        raise (UserError if err.get("Code") in USER_ERROR_CODES else RunFailed)(message) from None
    except BotoCoreError as exc:
        raise RunFailed(f"{what}: {exc}") from None


class Launcher:
    def __init__(self, defn: ClusterDefinition, settings: AwsSettings, sleep: Callable[[float], None] = time.sleep,
                 clock: Callable[[], float] = time.monotonic, say: Callable[[str], None] = log.info):
        self.defn, self.settings = defn, settings
        self.sleep, self.clock, self.say = sleep, clock, say

    @property
    def emr(self):
        return client("emr", self.settings)

    @property
    def s3(self):
        return client("s3", self.settings)

    # ------------------------------------------------------------------------------ artifacts
    def artifacts(self, wheel: Optional[bytes] = None) -> list[tuple[str, bytes]]:
        """(S3 URI, bytes) of the wheel, the bootstrap script and the spark-submit entry script."""
        wheel = build_wheel() if wheel is None else wheel
        return [(self.defn.wheel_uri, wheel), (self.defn.bootstrap_uri, BOOTSTRAP_SCRIPT.read_bytes()),
                (self.defn.entry_uri, ENTRY_SCRIPT.read_bytes())]

    def put(self, uri: str, data: bytes) -> None:
        bucket, _, key = uri[len("s3://"):].partition("/")
        aws_call(f"upload {uri}", self.s3.put_object, Bucket=bucket, Key=key, Body=data)

    # ------------------------------------------------------------------------------ cluster
    def create_request(self, steps: Sequence[dict] = (), transient: bool = False) -> dict:
        req = self.defn.run_job_flow_request()
        if steps:
            req["Steps"] = list(steps)
        if transient:
            req["Instances"]["KeepJobFlowAliveWhenNoSteps"] = False
        validate_request(req, self.defn.source)
        return req

    def up(self, steps: Sequence[dict] = (), transient: bool = False, wheel: Optional[bytes] = None) -> str:
        """Upload the artifacts and create the cluster; returns its id."""
        for uri, data in self.artifacts(wheel):
            self.put(uri, data)
            self.say(f"emr: uploaded {uri} ({len(data):,} bytes)")
        out = aws_call("RunJobFlow", self.emr.run_job_flow, **self.create_request(steps, transient))
        self.say(f"emr: cluster {out['JobFlowId']} ({self.defn.name}, {self.defn.release_label}) starting")
        return out["JobFlowId"]

    def add_steps(self, cluster_id: str, steps: Sequence[dict]) -> list[str]:
        req = {"JobFlowId": cluster_id, "Steps": list(steps)}
        validate_request(req, self.defn.source, "AddJobFlowSteps")
        state = self.status(cluster_id)["state"]
        if state.startswith("TERMINAT"):
            raise UserError(f"cluster {cluster_id} is {state}; start one with 'ctr-pipeline emr up'")
        return aws_call("AddJobFlowSteps", self.emr.add_job_flow_steps, **req)["StepIds"]

    def step_ids(self, cluster_id: str) -> list[str]:
        """Every step of the cluster, oldest first."""
        steps = aws_call("ListSteps", self.emr.list_steps, ClusterId=cluster_id)["Steps"]
        return [s["Id"] for s in reversed(steps)]

    def status(self, cluster_id: str) -> dict:
        """{'state', 'name', 'steps': [{'id', 'name', 'state'}]} of a cluster."""
        cluster = aws_call("DescribeCluster", self.emr.describe_cluster, ClusterId=cluster_id)["Cluster"]
        steps = aws_call("ListSteps", self.emr.list_steps, ClusterId=cluster_id)["Steps"]
        return {"state": cluster["Status"]["State"], "name": cluster["Name"],
                "steps": [{"id": s["Id"], "name": s["Name"], "state": s["Status"]["State"]} for s in reversed(steps)]}

    def down(self, cluster_id: str) -> None:
        aws_call("TerminateJobFlows", self.emr.terminate_job_flows, JobFlowIds=[cluster_id])
        self.say(f"emr: cluster {cluster_id} terminating")

    # ------------------------------------------------------------------------------ following
    def follow(self, cluster_id: str, step_ids: Sequence[str], poll_seconds: float, tail_lines: int) -> None:
        """Poll until every step completed (one line per state change); a failed step's stderr tail is
        printed and RunFailed raised naming it."""
        started, seen = self.clock(), {}
        pending = list(step_ids)
        while pending:
            for step_id in list(pending):
                step = aws_call("DescribeStep", self.emr.describe_step, ClusterId=cluster_id, StepId=step_id)["Step"]
                state = step["Status"]["State"]
                if seen.get(step_id) != state:
                    seen[step_id] = state
                    self.say(f"emr: {step['Name']} ({step_id}): {state} at {self.clock() - started:.0f}s")
                if state in FAILED:
                    self.print_tail(cluster_id, step_id, tail_lines)
                    reason = step["Status"].get("FailureDetails", {}).get("Reason") or state.lower()
                    raise RunFailed(f"EMR step '{step['Name']}' ({step_id}) on cluster {cluster_id} {state}: "
                                    f"{reason}; its logs are under "
                                    f"{self.defn.log_uri.rstrip('/')}/{cluster_id}/steps/{step_id}/")
                if state in DONE:
                    pending.remove(step_id)
                else:
                    break  # steps run in order: wait for this one
            if pending:
                self.sleep(poll_seconds)

    def tail(self, cluster_id: str, step_id: str, lines: int) -> list[str]:
        """The last ``lines`` lines of a step's stderr log ([] when EMR has not written it yet)."""
        bucket, key = stderr_key(self.defn.log_uri, cluster_id, step_id)
        from botocore.exceptions import ClientError

        try:
            body = self.s3.get_object(Bucket=bucket, Key=key)["Body"].read()
        except ClientError:
            return []
        text = gzip.decompress(body).decode("utf-8", "replace") if body[:2] == b"\x1f\x8b" else body.decode()
        return text.splitlines()[-lines:]

    def print_tail(self, cluster_id: str, step_id: str, lines: int) -> None:
        got = self.tail(cluster_id, step_id, lines)
        where = "s3://{}/{}".format(*stderr_key(self.defn.log_uri, cluster_id, step_id))
        if not got:
            print(f"emr: no stderr log at {where} yet (EMR copies step logs every few minutes)", file=sys.stderr)
            return
        print(f"emr: last {len(got)} lines of {where}:", file=sys.stderr)
        for line in got:
            print(f"  {line}", file=sys.stderr)
