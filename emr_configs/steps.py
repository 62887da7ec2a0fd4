"""EMR steps for the pipeline's stages (pure): one ``spark-submit`` per stage through command-runner.jar.

Each step runs the same entry point a local ``spark-submit`` does (``ctr_pipeline/spark_submit.py``,
uploaded to the artifacts prefix) in **client** deploy mode: the driver runs on the master node, where
the bootstrap action installed the project's wheel, and everything it prints (progress lines, the
one-line ``ctr-pipeline: error: ...``, a traceback) lands in the step's own ``stderr.gz`` under the
cluster's log URI, which is what the launcher tails when a step fails. In cluster mode the driver
would run in a YARN container and the step's log would hold only the YARN client's polling.
"""
from __future__ import annotations

from typing import Optional, Sequence

from ctr_pipeline.errors import UserError
from ctr_pipeline.runs import STAGES

STEP_NAME = "ctr-pipeline {stage}"


def parse_stages(text: str) -> list[str]:
    """``'sample,train'`` -> the named stages in pipeline order; a UserError names a bad one."""
    names = [s.strip() for s in text.split(",") if s.strip()]
    unknown = [s for s in names if s not in STAGES]
    if not names or unknown:
        raise UserError(f"--stages {text!r}: {'unknown ' + ', '.join(unknown) + '; ' if unknown else ''}"
                        f"give a comma-separated subset of {','.join(STAGES)}")
    return [s for s in STAGES if s in names]


def check_locations(defn, out: str, input_uri: Optional[str], input_source: str) -> None:
    """The run directory (``out``) and the input must be S3 locations under the definition's
    ``data.run_prefixes`` / ``data.input_prefixes`` (the only ones its instance role may touch), so a
    wrong location stops here instead of failing on the cluster minutes later."""
    if not out.startswith("s3://") or len(out) <= len("s3://"):
        raise UserError(f"--out {out!r}: an EMR run directory must be on S3 (s3://bucket/prefix)")
    _under(out, defn.run_prefixes, "--out", defn, "data.run_prefixes")
    if input_uri:
        if not str(input_uri).startswith("s3://"):
            raise UserError(f"{input_source}: input {input_uri!r} must be on S3 (s3://...) for an EMR run")
        _under(str(input_uri), (*defn.input_prefixes, *defn.run_prefixes), input_source, defn,
               "data.input_prefixes")


def _under(uri: str, prefixes: Sequence[str], what: str, defn, key: str) -> None:
    if not any((uri.rstrip("/") + "/").startswith(p.rstrip("/") + "/") for p in prefixes):
        raise UserError(f"{what}: {uri!r} is not under {key} of {defn.source} ({', '.join(prefixes)}), the "
                        f"only prefixes the cluster's instance role may use; add its prefix to {key} there")


def command_args(defn, command: Sequence[str], config_uri: str, sets: Sequence[str] = (),
                 input_uri: Optional[str] = None) -> list[str]:
    """``spark-submit`` of the entry point with a ``ctr-pipeline`` command line (``HadoopJarStep.Args``
    of command-runner.jar), the uploaded config, the input and the region."""
    args = ["spark-submit", "--deploy-mode", "client", "--master", "yarn", defn.entry_uri, *command,
            "--config", config_uri] + (["--input", input_uri] if input_uri else [])
    for item in (f"aws.region={defn.region}", *sets):
        args += ["--set", item]
    return args


def stage_args(defn, stage: str, out: str, config_uri: str, input_uri: Optional[str],
               sets: Sequence[str] = ()) -> list[str]:
    """The command line of one stage's step."""
    return command_args(defn, [stage, "--out", out], config_uri, sets, input_uri if stage == "sample" else None)


def refresh_steps(defn, registry: str, config_uri: str, input_uri: str, sets: Sequence[str] = (),
                  transient: bool = False) -> list[dict]:
    """The refresh job as one step: ``ctr-pipeline refresh --registry REG --input WINDOW``."""
    args = command_args(defn, ["refresh", "--registry", registry], config_uri, sets, input_uri)
    return [{"Name": STEP_NAME.format(stage="refresh"),
             "ActionOnFailure": "TERMINATE_CLUSTER" if transient else "CANCEL_AND_WAIT",
             "HadoopJarStep": {"Jar": "command-runner.jar", "Args": args}}]


def stage_steps(defn, stages: Sequence[str], out: str, config_uri: str, input_uri: Optional[str],
                sets: Sequence[str] = (), transient: bool = False) -> list[dict]:
    """``Steps`` of AddJobFlowSteps / RunJobFlow, in pipeline order. A failed step cancels the rest
    (CANCEL_AND_WAIT keeps the cluster for the next try) or, when ``transient``, terminates the cluster."""
    unknown = [s for s in stages if s not in STAGES]
    if unknown:
        raise ValueError(f"unknown stage(s) {unknown}; stages are {', '.join(STAGES)}")
    action = "TERMINATE_CLUSTER" if transient else "CANCEL_AND_WAIT"
    return [{"Name": STEP_NAME.format(stage=stage), "ActionOnFailure": action,
             "HadoopJarStep": {"Jar": "command-runner.jar",
                               "Args": stage_args(defn, stage, out, config_uri, input_uri, sets)}}
            for stage in STAGES if stage in stages]


def stderr_key(log_uri: str, cluster_id: str, step_id: str) -> tuple[str, str]:
    """(bucket, key) of a step's stderr log as EMR writes it: ``<log_uri>/<cluster>/steps/<step>/stderr.gz``."""
    bucket, _, prefix = log_uri[len("s3://"):].partition("/")
    prefix = prefix.strip("/")
    return bucket, "/".join(p for p in (prefix, cluster_id, "steps", step_id, "stderr.gz") if p)
