"""EMR steps for the pipeline's stages (pure): one ``spark-submit`` per stage through command-runner.jar.

Each step runs the same entry point a local ``spark-submit`` does (``ctr_pipeline/spark_submit.py``,
uploaded to the artifacts prefix) in client deploy mode, so the driver runs on the master node and its
progress lines land in the step's own stdout/stderr logs under the cluster's log URI.
"""
from __future__ import annotations

from typing import Sequence

from ctr_pipeline.runs import STAGES


def stage_args(defn, stage: str, out: str, config_uri: str, input_uri: str | None,
               sets: Sequence[str] = ()) -> list[str]:
    """The command line of one stage's step."""
    args = ["spark-submit", "--deploy-mode", "client", "--master", "yarn", defn.entry_uri, stage,
            "--out", out, "--config", config_uri]
    if input_uri and stage == "sample":
        args += ["--input", input_uri]
    for item in (f"aws.region={defn.region}", *sets):
        args += ["--set", item]
    return args


def stage_steps(defn, stages: Sequence[str], out: str, config_uri: str, input_uri: str | None,
                sets: Sequence[str] = (), transient: bool = False) -> list[dict]:
    """``Steps`` of AddJobFlowSteps, in pipeline order. A failed step cancels the rest (and terminates
    the cluster when ``transient``)."""
    unknown = [s for s in stages if s not in STAGES]
    if unknown:
        raise ValueError(f"unknown stage(s) {unknown}; stages are {', '.join(STAGES)}")
    action = "TERMINATE_CLUSTER" if transient else "CANCEL_AND_WAIT"
    return [{"Name": f"ctr-pipeline {stage}", "ActionOnFailure": action,
             "HadoopJarStep": {"Jar": "command-runner.jar",
                               "Args": stage_args(defn, stage, out, config_uri, input_uri, sets)}}
            for stage in STAGES if stage in stages]


def stderr_key(log_uri: str, cluster_id: str, step_id: str) -> tuple[str, str]:
    """(bucket, key) of a step's stderr log as EMR writes it under the log URI."""
    bucket, _, prefix = log_uri[len("s3://"):].partition("/")
    prefix = prefix.strip("/")
    return bucket, "/".join(p for p in (prefix, cluster_id, "steps", step_id, "stderr.gz") if p)
