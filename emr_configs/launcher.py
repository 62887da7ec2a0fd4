"""The EMR launcher (the boto3 adapter): upload artifacts, create a cluster, add stage steps, follow
them, fetch a failed step's stderr, terminate.

Everything that uploads or creates is first a :class:`Request` (service, operation, parameters), so a
dry run prints exactly what a real run sends. EMR requests are checked against botocore's model before
they exist. Clients come from :func:`ctr_pipeline.aws.client`; ``sleep`` and ``clock`` are injectable
so tests follow steps without waiting; progress goes to the ``ctr_pipeline.emr`` logger.
"""
from __future__ import annotations

import gzip
import hashlib
import logging
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Mapping, Optional, Sequence, TextIO

from ctr_pipeline.aws import AwsSettings, client
from ctr_pipeline.errors import RunFailed, UserError

from .definition import BOOTSTRAP_SCRIPT, ENTRY_SCRIPT, ClusterDefinition
from .steps import stderr_key
from .validate import validate_request

log = logging.getLogger("ctr_pipeline.emr")
REPO = Path(__file__).resolve().parent.parent
STEP_FAILED = {"FAILED", "CANCELLED", "CANCEL_PENDING", "INTERRUPTED"}
USER_ERROR_CODES = {"InvalidRequestException", "ValidationException", "NoSuchBucket", "AccessDenied",
                    "AccessDeniedException"}


@dataclass(frozen=True)
class Wheel:
    name: str   # file name, e.g. ctr_pipeline-0.1.0-py3-none-any.whl
    data: bytes


def build_wheel(repo: Path = REPO) -> Wheel:
    """This project's wheel, built from the checkout at ``repo`` with pip (no network: --no-deps,
    --no-build-isolation). Takes about 10 s; a failure is RunFailed with pip's last output."""
    if not (repo / "setup.py").is_file():
        raise UserError(f"{repo}: no setup.py here; run 'ctr-pipeline emr' from a clone of the project")
    had_build = (repo / "build").exists()
    with tempfile.TemporaryDirectory(prefix="ctr-wheel-") as tmp:
        cmd = [sys.executable, "-m", "pip", "wheel", "--quiet", "--no-deps", "--no-build-isolation", "-w", tmp,
               str(repo)]
        try:
            done = subprocess.run(cmd, capture_output=True, text=True, timeout=600)
        finally:
            if not had_build:  # setuptools builds in the tree: leave the checkout as it was
                shutil.rmtree(repo / "build", ignore_errors=True)
        wheels = sorted(Path(tmp).glob("*.whl"))
        if done.returncode != 0 or len(wheels) != 1:
            raise RunFailed(f"building the wheel ({' '.join(cmd)}) failed: {done.stderr.strip()[-500:]}")
        return Wheel(wheels[0].name, wheels[0].read_bytes())


@dataclass(frozen=True)
class Request:
    """One AWS request: ``service`` ('s3' or 'emr'), botocore ``operation`` name, exact ``params``."""

    service: str
    operation: str
    params: Mapping[str, Any]

    def shown(self) -> dict:
        """JSON-able form for --dry-run: the parameters in full, a Body as its size (bytes) and sha256."""
        params = dict(self.params)
        if isinstance(params.get("Body"), bytes):
            body = params["Body"]
            params["Body"] = {"bytes": len(body), "sha256": hashlib.sha256(body).hexdigest()}
        return {"service": self.service, "operation": self.operation, "params": params}


def upload(uri: str, data: bytes) -> Request:
    """A PutObject of ``data`` to ``s3://bucket/key``."""
    bucket, _, key = uri[len("s3://"):].partition("/")
    return Request("s3", "PutObject", {"Bucket": bucket, "Key": key, "Body": data})


def aws_call(what: str, fn: Callable, missing_ok: bool = False, **kwargs: Any) -> Any:
    """Call boto3 (``fn(**kwargs)``); a request the user can fix is a UserError (exit 2), any other AWS
    error RunFailed (exit 1). ``missing_ok``: a missing S3 object (NoSuchKey, 404) returns None."""
    from botocore.exceptions import BotoCoreError, ClientError, NoCredentialsError

    try:
        return fn(**kwargs)
    except NoCredentialsError:
        raise UserError(f"{what}: no AWS credentials; set AWS_PROFILE or AWS_ACCESS_KEY_ID / "
                        "AWS_SECRET_ACCESS_KEY (never in the config file)") from None
    except ClientError as exc:
        err = exc.response.get("Error", {})
        if missing_ok and err.get("Code") in ("NoSuchKey", "404"):
            return None
        message = f"{what}: {err.get('Code')}: {err.get('Message')}"
        raise (UserError if err.get("Code") in USER_ERROR_CODES else RunFailed)(message) from None
    except BotoCoreError as exc:
        raise RunFailed(f"{what}: {exc}") from None


class Launcher:
    """One cluster definition and AWS settings. ``wheel``: a prebuilt wheel (else built on first use);
    ``sleep(seconds)`` and ``clock() -> seconds`` drive polling; ``say(line)`` gets progress lines."""

    def __init__(self, defn: ClusterDefinition, settings: AwsSettings, sleep: Callable[[float], None] = time.sleep,
                 clock: Callable[[], float] = time.monotonic, say: Callable[[str], None] = log.info,
                 wheel: Optional[Wheel] = None):
        self.defn, self.settings = defn, settings
        self.sleep, self.clock, self.say = sleep, clock, say
        self._wheel = wheel

    def _client(self, service: str) -> Any:
        return client(service, self.settings)

    # ------------------------------------------------------------------------------ requests
    def wheel(self) -> Wheel:
        """The wheel given to the constructor, else the checkout's (built once per launcher)."""
        if self._wheel is None:
            self._wheel = build_wheel()
        return self._wheel

    @property
    def wheel_uri(self) -> str:
        return self.defn.artifact(f"wheels/{self.wheel().name}")

    def artifacts(self) -> list[Request]:
        """Uploads of the wheel, the bootstrap script and the spark-submit entry script."""
        return [upload(self.wheel_uri, self.wheel().data),
                upload(self.defn.bootstrap_uri, BOOTSTRAP_SCRIPT.read_bytes()),
                upload(self.defn.entry_uri, ENTRY_SCRIPT.read_bytes())]

    def create_cluster(self, steps: Sequence[dict] = (), transient: bool = False) -> Request:
        """RunJobFlow of the definition (with ``steps``; ``transient``: terminate after the last one)."""
        params = self.defn.run_job_flow_request(self.wheel_uri, self.defn.bootstrap_uri)
        if steps:
            params["Steps"] = list(steps)
        if transient:
            params["Instances"]["KeepJobFlowAliveWhenNoSteps"] = False
        validate_request(params, self.defn.source, "RunJobFlow")
        return Request("emr", "RunJobFlow", params)

    def add_steps(self, cluster_id: str, steps: Sequence[dict]) -> Request:
        """AddJobFlowSteps of ``steps`` (from :func:`emr_configs.steps.stage_steps`) to a cluster."""
        params = {"JobFlowId": cluster_id, "Steps": list(steps)}
        validate_request(params, self.defn.source, "AddJobFlowSteps")
        return Request("emr", "AddJobFlowSteps", params)

    def send(self, request: Request) -> dict:
        """Send one request; returns boto3's response."""
        from botocore import xform_name

        what = f"{request.operation} {_target(request)}".strip()
        out = aws_call(what, getattr(self._client(request.service), xform_name(request.operation)),
                       **request.params)
        if request.operation == "PutObject":
            self.say(f"emr: uploaded {_target(request)} ({len(request.params['Body']):,} bytes)")
        return out

    def up_plan(self, steps: Sequence[dict] = (), transient: bool = False) -> list[Request]:
        """The uploads of :meth:`artifacts`, then RunJobFlow: what ``emr up`` sends, in order."""
        return [*self.artifacts(), self.create_cluster(steps, transient)]

    def execute(self, plan: Sequence[Request]) -> list[dict]:
        """Send the requests in order; returns their responses."""
        return [self.send(request) for request in plan]

    def up(self, steps: Sequence[dict] = (), transient: bool = False) -> str:
        """Upload the artifacts and create the cluster; returns its id (j-...)."""
        return self.started(self.execute(self.up_plan(steps, transient))[-1])

    def started(self, response: dict) -> str:
        """The cluster id of a RunJobFlow response, announced."""
        cluster_id = response["JobFlowId"]
        self.say(f"emr: cluster {cluster_id} ({self.defn.name}, {self.defn.release_label}) starting")
        return cluster_id

    # ------------------------------------------------------------------------------ clusters
    def cluster(self, cluster_id: str) -> dict:
        """DescribeCluster's ``Cluster`` (an unknown id is a UserError)."""
        emr = self._client("emr")
        return aws_call(f"DescribeCluster {cluster_id}", emr.describe_cluster, ClusterId=cluster_id)["Cluster"]

    def step(self, cluster_id: str, step_id: str) -> dict:
        """DescribeStep's ``Step``: Id, Name, Status (State, FailureDetails), Config."""
        emr = self._client("emr")
        return aws_call(f"DescribeStep {step_id}", emr.describe_step, ClusterId=cluster_id, StepId=step_id)["Step"]

    def check_alive(self, cluster_id: str) -> None:
        """A UserError unless the cluster exists and is not terminating or terminated."""
        state = self.cluster(cluster_id)["Status"]["State"]
        if state.startswith("TERMINAT"):
            raise UserError(f"cluster {cluster_id} is {state}; start one with 'ctr-pipeline emr up' "
                            "or use 'emr submit --up'")

    def wait_until_up(self, cluster_id: str, poll_seconds: float) -> dict:
        """Poll until the cluster is WAITING or RUNNING (its applications up); returns DescribeCluster's
        ``Cluster``. A cluster that terminates first is a RunFailed with EMR's reason."""
        last = None
        while True:
            cluster = self.cluster(cluster_id)
            state = cluster["Status"]["State"]
            if state in ("WAITING", "RUNNING"):
                return cluster
            if state.startswith("TERMINAT"):
                reason = (cluster["Status"].get("StateChangeReason") or {}).get("Message") or "no reason given"
                raise RunFailed(f"cluster {cluster_id} is {state} ({reason})")
            if state != last:
                self.say(f"emr: cluster {cluster_id} is {state}; waiting for it to be up")
                last = state
            self.sleep(poll_seconds)

    def steps(self, cluster_id: str) -> list[dict]:
        """ListSteps' summaries of every step of the cluster, oldest first (all pages)."""
        emr, found, marker = self._client("emr"), [], None
        while True:
            page = aws_call(f"ListSteps {cluster_id}", emr.list_steps, ClusterId=cluster_id,
                            **({"Marker": marker} if marker else {}))
            found += page["Steps"]
            marker = page.get("Marker")
            if not marker:
                return found[::-1]

    def status(self, cluster_id: str) -> dict:
        """{'state', 'name', 'reason', 'steps': [{'id', 'name', 'state'}]} of a cluster."""
        cluster = self.cluster(cluster_id)
        return {"state": cluster["Status"]["State"], "name": cluster["Name"],
                "reason": (cluster["Status"].get("StateChangeReason") or {}).get("Message") or "",
                "steps": [{"id": s["Id"], "name": s["Name"], "state": s["Status"]["State"]}
                          for s in self.steps(cluster_id)]}

    def down(self, cluster_id: str) -> None:
        emr = self._client("emr")
        aws_call(f"TerminateJobFlows {cluster_id}", emr.terminate_job_flows, JobFlowIds=[cluster_id])
        self.say(f"emr: cluster {cluster_id} terminating")

    # ------------------------------------------------------------------------------ following
    def follow(self, cluster_id: str, step_ids: Sequence[str], poll_seconds: float, tail_lines: int) -> None:
        """Wait for the steps in order, polling every ``poll_seconds`` (one progress line per state change
        of a step or the cluster, with seconds elapsed). A failed step's last ``tail_lines`` stderr lines
        go to stderr and RunFailed names it; a cluster that terminates first is RunFailed with its reason."""
        started, cluster_state = self.clock(), None
        for step_id in step_ids:
            step_state = None
            while True:
                step = self.step(cluster_id, step_id)
                if step["Status"]["State"] != step_state:
                    step_state = step["Status"]["State"]
                    self.say(f"emr: {step['Name']} ({step_id}): {step_state} after {self.clock() - started:.0f}s")
                if step_state == "COMPLETED":
                    break
                if step_state in STEP_FAILED:
                    self._step_failed(cluster_id, step, tail_lines)
                cluster = self.cluster(cluster_id)["Status"]
                if cluster["State"] != cluster_state:
                    cluster_state = cluster["State"]
                    self.say(f"emr: cluster {cluster_id}: {cluster_state} after {self.clock() - started:.0f}s")
                if cluster_state.startswith("TERMINAT"):
                    reason = (cluster.get("StateChangeReason") or {}).get("Message") or "no reason given"
                    raise RunFailed(f"cluster {cluster_id} is {cluster_state} ({reason}) before step "
                                    f"'{step['Name']}' ({step_id}) finished; see its logs under "
                                    f"{self.defn.log_uri.rstrip('/')}/{cluster_id}/")
                self.sleep(poll_seconds)

    def _step_failed(self, cluster_id: str, step: dict, tail_lines: int) -> None:
        self.print_tail(cluster_id, step["Id"], tail_lines, sys.stderr)
        status = step["Status"]
        details = status.get("FailureDetails") or {}
        reason = "; ".join(str(details[k]) for k in ("Reason", "Message") if details.get(k))
        raise RunFailed(f"EMR step '{step['Name']}' ({step['Id']}) on cluster {cluster_id} {status['State']}"
                        f"{': ' + reason if reason else ''}; logs: "
                        f"{self.defn.log_uri.rstrip('/')}/{cluster_id}/steps/{step['Id']}/")

    def tail(self, cluster_id: str, step_id: str, lines: int) -> tuple[str, Optional[list[str]]]:
        """(URI of the step's stderr log, its last ``lines`` lines, or None while EMR has not written it)."""
        bucket, key = stderr_key(self.defn.log_uri, cluster_id, step_id)
        uri = f"s3://{bucket}/{key}"
        got = aws_call(f"GetObject {uri}", self._client("s3").get_object, missing_ok=True, Bucket=bucket, Key=key)
        if got is None:
            return uri, None
        body = got["Body"].read()
        text = (gzip.decompress(body) if body[:2] == b"\x1f\x8b" else body).decode("utf-8", "replace")
        return uri, text.splitlines()[-lines:]

    def print_tail(self, cluster_id: str, step_id: str, lines: int, file: TextIO) -> bool:
        """Print the step's stderr tail to ``file`` (indented, under a header); False when there is none."""
        uri, got = self.tail(cluster_id, step_id, lines)
        if got is None:
            print(f"emr: no stderr log at {uri} yet (EMR copies step logs to S3 every few minutes; "
                  f"try 'ctr-pipeline emr logs' later)", file=file)
            return False
        print(f"emr: last {len(got)} lines of {uri}:", file=file)
        for line in got:
            print(f"  {line}", file=file)
        return True


def _target(request: Request) -> str:
    p = request.params
    return f"s3://{p['Bucket']}/{p['Key']}" if request.service == "s3" else str(p.get("JobFlowId", p.get("Name", "")))
