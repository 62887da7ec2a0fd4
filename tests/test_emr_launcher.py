"""The EMR launcher against moto's server over real HTTP: dry run, up -> submit -> status -> logs ->
down, a failed step's stderr tail, and user mistakes. moto's steps never finish by themselves, so the
launcher's sleep is replaced by one that moves the running step in moto's in-process backend."""
import gzip
import json
import subprocess
import sys

import pytest
import yaml

from ctr_pipeline.cli import main
from emr_configs import cli as emr_cli
from emr_configs import launcher as launcher_mod
from emr_configs.definition import load
from emr_configs.launcher import Launcher
from emr_configs.steps import stage_args
from emr_configs.validate import validate_request

from .conftest import REPO

BUCKET = "ctr-emr-test"
ACCOUNT = "123456789012"


@pytest.fixture(scope="module")
def wheel() -> bytes:
    return launcher_mod.build_wheel()


@pytest.fixture
def definition(tmp_path):
    text = (REPO / "emr_configs" / "default.yaml").read_text().replace("my-ctr-bucket", BUCKET)
    path = tmp_path / "cluster.yaml"
    path.write_text(text)
    return path


@pytest.fixture
def moto_emr(aws, definition, wheel, monkeypatch):
    """moto's S3 bucket, a launcher whose sleep completes (or fails) moto's running step, prints kept."""
    from moto.emr.models import emr_backends

    from ctr_pipeline.aws import client

    client("s3", aws).create_bucket(Bucket=BUCKET)
    monkeypatch.setattr(launcher_mod, "build_wheel", lambda: wheel)
    plan = {"fail": None, "sleeps": 0}

    def step_moto(_seconds):
        plan["sleeps"] += 1
        for cluster in emr_backends[ACCOUNT]["us-east-1"].clusters.values():
            for step in cluster.steps:
                if step.state not in ("COMPLETED", "FAILED", "CANCELLED"):
                    step.state = "FAILED" if plan["fail"] and plan["fail"] in step.name else "COMPLETED"
                    return

    monkeypatch.setattr(emr_cli, "make_launcher",
                        lambda defn, settings: Launcher(defn, settings, sleep=step_moto, say=print))
    return plan


def test_dry_run_prints_the_exact_requests_and_sends_nothing(definition, tmp_path):
    env = {"PATH": "/usr/bin:/bin", "HOME": str(tmp_path)}          # no credentials, no endpoint
    out = subprocess.run([sys.executable, "-m", "ctr_pipeline.cli", "emr", "up", "--dry-run",
                          "--definition", str(definition)], capture_output=True, text=True, env=env, cwd=REPO)
    assert out.returncode == 0, out.stderr
    shown = json.loads(out.stdout)
    defn = load(definition)
    assert shown["RunJobFlow"] == json.loads(json.dumps(defn.run_job_flow_request()))
    assert [p["uri"] for p in shown["s3_puts"]] == [defn.wheel_uri, defn.bootstrap_uri, defn.entry_uri]
    assert shown["s3_puts"][0]["bytes"] > 10_000                    # the wheel was really built

    out = subprocess.run([sys.executable, "-m", "ctr_pipeline.cli", "emr", "submit", "--dry-run", "--up",
                          "--transient", "--definition", str(definition), "--input", f"s3://{BUCKET}/logs/",
                          "--out", f"s3://{BUCKET}/runs/r1", "--set", "training.n_estimators=50"],
                         capture_output=True, text=True, env=env, cwd=REPO)
    assert out.returncode == 0, out.stderr
    req = json.loads(out.stdout)["RunJobFlow"]
    validate_request(req, "dry run")
    assert req["Instances"]["KeepJobFlowAliveWhenNoSteps"] is False
    assert [s["Name"] for s in req["Steps"]] == [f"ctr-pipeline {s}" for s in ("sample", "features", "train",
                                                                              "evaluate")]
    assert req["Steps"][0]["HadoopJarStep"]["Args"] == [
        "spark-submit", "--deploy-mode", "client", "--master", "yarn", defn.entry_uri, "sample",
        "--out", f"s3://{BUCKET}/runs/r1", "--config", f"s3://{BUCKET}/runs/r1/_emr/config.yaml",
        "--input", f"s3://{BUCKET}/logs/", "--set", "aws.region=us-east-1", "--set", "training.n_estimators=50"]
    assert all(s["ActionOnFailure"] == "TERMINATE_CLUSTER" for s in req["Steps"])


def test_up_submit_status_logs_down_against_moto(aws, moto_emr, definition, tmp_path, capsys):
    from moto.emr.models import emr_backends

    from ctr_pipeline.aws import client

    assert main(["emr", "up", "--definition", str(definition)]) == 0
    cluster_id = capsys.readouterr().out.strip().splitlines()[-1]
    s3, emr = client("s3", aws), client("emr", aws)
    keys = {o["Key"] for o in s3.list_objects_v2(Bucket=BUCKET)["Contents"]}
    assert keys >= {"ctr-pipeline/artifacts/wheels/ctr_pipeline-0.1.0-py3-none-any.whl",
                    "ctr-pipeline/artifacts/bootstrap.sh", "ctr-pipeline/artifacts/spark_submit.py"}
    cluster = emr.describe_cluster(ClusterId=cluster_id)["Cluster"]
    assert cluster["Name"] == "ctr-pipeline" and cluster["ReleaseLabel"] == "emr-7.5.0"
    assert [a["Name"] for a in cluster["Applications"]] == ["Spark"]
    assert {t["Key"]: t["Value"] for t in cluster["Tags"]} == {"project": "ctr-pipeline"}

    config = tmp_path / "run.yaml"
    config.write_text(yaml.safe_dump({"training": {"n_estimators": 30}}))
    argv = ["emr", "submit", "--definition", str(definition), "--cluster-id", cluster_id, "--config", str(config),
            "--input", f"s3://{BUCKET}/logs/", "--out", f"s3://{BUCKET}/runs/r1", "--set", "emr.poll_seconds=1"]
    assert main(argv) == 0
    out = capsys.readouterr().out
    assert "emr: all 4 step(s) completed" in out and "ctr-pipeline train (s-" in out
    steps = emr_backends[ACCOUNT]["us-east-1"].clusters[cluster_id].steps
    defn = load(definition)
    assert [s.args for s in steps] == [
        stage_args(defn, stage, f"s3://{BUCKET}/runs/r1", f"s3://{BUCKET}/runs/r1/_emr/config.yaml",
                   f"s3://{BUCKET}/logs/", ["emr.poll_seconds=1"]) for stage in ("sample", "features", "train",
                                                                                 "evaluate")]
    assert s3.get_object(Bucket=BUCKET, Key="runs/r1/_emr/config.yaml")["Body"].read() == config.read_bytes()

    assert main(["emr", "status", "--definition", str(definition), "--cluster-id", cluster_id]) == 0
    status = capsys.readouterr().out
    assert status.count("COMPLETED") == 4 and cluster_id in status

    # a failing stage: its stderr tail is printed and the command exits 1 with one line naming the step
    moto_emr["fail"] = "features"
    assert main([*argv, "--stages", "sample,features"]) == 1
    failed = next(s for s in emr_backends[ACCOUNT]["us-east-1"].clusters[cluster_id].steps if s.state == "FAILED")
    s3.put_object(Bucket=BUCKET, Key=f"emr-logs/{cluster_id}/steps/{failed.id}/stderr.gz",
                  Body=gzip.compress("\n".join(f"line {i}" for i in range(100)).encode()))
    err = capsys.readouterr().err
    assert f"EMR step 'ctr-pipeline features' ({failed.id}) on cluster {cluster_id} FAILED" in err
    assert main(["emr", "logs", "--definition", str(definition), "--cluster-id", cluster_id,
                 "--step-id", failed.id, "--lines", "3"]) == 0
    assert capsys.readouterr().err.splitlines()[-3:] == ["  line 97", "  line 98", "  line 99"]

    assert main(["emr", "down", "--definition", str(definition), "--cluster-id", cluster_id]) == 0
    assert emr.describe_cluster(ClusterId=cluster_id)["Cluster"]["Status"]["State"].startswith("TERMINAT")
    assert main(argv) == 2                                       # a terminated cluster takes no steps
    assert f"cluster {cluster_id} is TERMINAT" in capsys.readouterr().err


def test_failed_step_tail_is_printed_while_following(aws, moto_emr, definition, capsys):
    from moto.emr.models import emr_backends

    from ctr_pipeline.aws import client

    defn = load(definition)
    launcher = emr_cli.make_launcher(defn, aws)
    cluster_id = launcher.up()
    moto_emr["fail"] = "sample"
    from emr_configs.steps import stage_steps

    ids = launcher.add_steps(cluster_id, stage_steps(defn, ["sample"], f"s3://{BUCKET}/runs/x",
                                                     f"s3://{BUCKET}/runs/x/_emr/config.yaml", None))
    client("s3", aws).put_object(Bucket=BUCKET, Key=f"emr-logs/{cluster_id}/steps/{ids[0]}/stderr.gz",
                                 Body=gzip.compress(b"Traceback\nValueError: boom\n"))
    from ctr_pipeline.errors import RunFailed

    with pytest.raises(RunFailed, match=f"'ctr-pipeline sample' \\({ids[0]}\\) on cluster {cluster_id} FAILED"):
        launcher.follow(cluster_id, ids, 0, 5)
    err = capsys.readouterr().err
    assert "  ValueError: boom" in err and f"emr-logs/{cluster_id}/steps/{ids[0]}/stderr.gz" in err
    assert emr_backends[ACCOUNT]["us-east-1"].clusters[cluster_id].steps[0].state == "FAILED"


def test_user_mistakes_exit_2_with_one_line(aws, moto_emr, definition, capsys):
    cases = [(["emr", "status", "--definition", str(definition), "--cluster-id", "j-NOSUCHCLUSTER"], "DescribeCluster"),
             (["emr", "submit", "--definition", str(definition), "--cluster-id", "j-X", "--out", "/tmp/run"],
              "an EMR run directory must be on S3"),
             (["emr", "submit", "--definition", str(definition), "--out", f"s3://{BUCKET}/r"],
              "exactly one of --cluster-id ID or --up"),
             (["emr", "up", "--definition", "missing.yaml"], "missing.yaml: config file not found")]
    for argv, message in cases:
        assert main(argv) == 2, argv
        err = capsys.readouterr().err
        assert message in err and len(err.strip().splitlines()) == 1, err
