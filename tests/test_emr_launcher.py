"""The EMR launcher against moto's server over real HTTP: the wheel, dry runs, up -> submit -> status ->
logs -> down, a failed step's stderr tail, a cluster that dies first, --transient, user mistakes.

moto's steps never finish by themselves, so the launcher's ``sleep`` is replaced by one that moves the
first unfinished step one state on (PENDING -> RUNNING -> COMPLETED or FAILED) in moto's in-process
backend, the way EMR would between two polls. Every request the launcher sends is recorded through
botocore's event hooks and checked against botocore's service model.
"""
import copy
import gzip
import hashlib
import io
import json
import logging
import subprocess
import sys
import zipfile

import pytest
import yaml

from ctr_pipeline.cli import main
from ctr_pipeline.errors import RunFailed, UserError
from emr_configs import cli as emr_cli
from emr_configs import launcher as launcher_mod
from emr_configs.definition import BOOTSTRAP_SCRIPT, ENTRY_SCRIPT, load
from emr_configs.launcher import Launcher
from emr_configs.steps import stage_args, stage_steps

from .conftest import REPO

BUCKET = "ctr-emr-test"
ACCOUNT = "123456789012"  # moto's default account
STAGES = ("sample", "features", "train", "evaluate")
RUN, INPUT = f"s3://{BUCKET}/runs/r1", f"s3://{BUCKET}/logs/"


@pytest.fixture(scope="module")
def wheel():
    """The project's wheel, really built once for this module (about 10 s); the checkout is left as it
    was (setuptools builds in the tree)."""
    had_build = (REPO / "build").exists()
    built = launcher_mod.build_wheel()
    assert had_build or not (REPO / "build").exists()
    return built


@pytest.fixture
def definition(tmp_path):
    text = (REPO / "emr_configs" / "default.yaml").read_text().replace("my-ctr-bucket", BUCKET)
    path = tmp_path / "cluster.yaml"
    path.write_text(text)
    return path


def moto_clusters():
    from moto.emr.models import emr_backends

    return emr_backends[ACCOUNT]["us-east-1"].clusters


def _validate(service: str, operation: str, params: dict) -> None:
    import botocore.session
    from botocore.validate import ParamValidator

    shape = botocore.session.get_session().get_service_model(service).operation_model(operation).input_shape
    report = ParamValidator().validate(params, shape)
    assert not report.has_errors(), report.generate_report()


@pytest.fixture
def moto_emr(aws, definition, wheel, monkeypatch):
    """A moto bucket; the CLI's launcher gets the prebuilt wheel and a sleep that steps moto's clusters;
    every EMR and S3 request is recorded (``sent``); progress lines of the emr logger (``progress``)."""
    from ctr_pipeline.aws import client

    s3 = client("s3", aws)
    s3.create_bucket(Bucket=BUCKET)
    state = {"fail": None, "sleeps": [], "sent": [], "progress": [], "log_lines": 100}

    def record(params, model, event_name, **_):
        state["sent"].append((model.name, copy.deepcopy(params), event_name.split(".")[1]))

    for service in ("emr", "s3"):
        client(service, aws).meta.events.register(f"before-parameter-build.{service}", record)

    def step_moto(seconds):
        """EMR between two polls: the first unfinished step moves one state on."""
        state["sleeps"].append(seconds)
        for cluster_id, cluster in moto_clusters().items():
            for step in cluster.steps:
                if step.state == "PENDING":
                    step.state = "RUNNING"
                    return
                if step.state == "RUNNING":
                    failing = state["fail"] and state["fail"] in step.name
                    step.state = "FAILED" if failing else "COMPLETED"
                    if failing:  # EMR pushes the step's logs and cancels the steps after it
                        log = "\n".join(f"log line {i}" for i in range(state["log_lines"])).encode()
                        s3.put_object(Bucket=BUCKET, Key=f"emr-logs/{cluster_id}/steps/{step.id}/stderr.gz",
                                      Body=gzip.compress(log))
                        for later in cluster.steps:
                            if later.state == "PENDING":
                                later.state = "CANCELLED"
                    return

    monkeypatch.setattr(emr_cli, "make_launcher",
                        lambda defn, settings: Launcher(defn, settings, sleep=step_moto, wheel=wheel))
    handler = logging.Handler()
    handler.emit = lambda rec: state["progress"].append(rec.getMessage())
    emr_log = logging.getLogger("ctr_pipeline.emr")
    emr_log.addHandler(handler)
    monkeypatch.setattr(logging.getLogger("ctr_pipeline"), "handlers", [logging.NullHandler()])
    yield state
    emr_log.removeHandler(handler)
    for operation, params, service in state["sent"]:
        _validate(service, operation, params)


def test_wheel_is_built_from_the_checkout(wheel):
    from emr_configs.definition import wheel_name

    assert wheel.name == wheel_name()                # the name mrjob's bootstrap and the launcher both use
    names = zipfile.ZipFile(io.BytesIO(wheel.data)).namelist()
    assert {"ctr_pipeline/cli.py", "ctr_pipeline/spark_submit.py", "emr_configs/steps.py"} <= set(names)


def _dry_run(tmp_path, *argv):
    env = {"PATH": "/usr/bin:/bin", "HOME": str(tmp_path)}  # no credentials: any request would fail (exit 2)
    out = subprocess.run([sys.executable, "-m", "ctr_pipeline.cli", "emr", *argv, "--dry-run"],
                         capture_output=True, text=True, env=env, cwd=REPO, timeout=300)
    assert out.returncode == 0, out.stderr
    return json.loads(out.stdout)


def test_dry_run_prints_the_exact_requests_and_sends_nothing(definition, tmp_path):
    defn = load(definition)
    shown = _dry_run(tmp_path, "up", "--definition", str(definition))
    assert [(r["service"], r["operation"]) for r in shown] == [("s3", "PutObject")] * 3 + [("emr", "RunJobFlow")]
    puts = [r["params"] for r in shown[:3]]
    assert [f"s3://{p['Bucket']}/{p['Key']}" for p in puts] == [defn.wheel_uri, defn.bootstrap_uri, defn.entry_uri]
    assert puts[0]["Body"]["bytes"] > 10_000                      # the wheel was really built
    assert puts[1]["Body"] == {"bytes": len(BOOTSTRAP_SCRIPT.read_bytes()),
                               "sha256": hashlib.sha256(BOOTSTRAP_SCRIPT.read_bytes()).hexdigest()}
    assert shown[3]["params"] == json.loads(json.dumps(defn.run_job_flow_request()))
    _validate("emr", "RunJobFlow", shown[3]["params"])

    shown = _dry_run(tmp_path, "submit", "--up", "--transient", "--definition", str(definition), "--input", INPUT,
                     "--out", RUN, "--set", "training.n_estimators=50")
    assert [r["operation"] for r in shown] == ["PutObject"] * 4 + ["RunJobFlow"]
    assert shown[0]["params"]["Key"] == "runs/r1/_emr/config.yaml"
    req = shown[-1]["params"]
    _validate("emr", "RunJobFlow", req)
    assert req["Instances"]["KeepJobFlowAliveWhenNoSteps"] is False
    assert [s["Name"] for s in req["Steps"]] == [f"ctr-pipeline {s}" for s in STAGES]
    assert req["Steps"][0]["HadoopJarStep"] == {"Jar": "command-runner.jar", "Args": [
        "spark-submit", "--deploy-mode", "client", "--master", "yarn", defn.entry_uri, "sample",
        "--out", RUN, "--config", f"{RUN}/_emr/config.yaml", "--input", INPUT,
        "--set", "aws.region=us-east-1", "--set", "training.n_estimators=50"]}
    assert all(s["ActionOnFailure"] == "TERMINATE_CLUSTER" for s in req["Steps"])

    shown = _dry_run(tmp_path, "submit", "--cluster-id", "j-EXISTING", "--definition", str(definition),
                     "--out", RUN, "--stages", "train,features")   # no wheel, no cluster: config and steps only
    assert [r["operation"] for r in shown] == ["PutObject", "AddJobFlowSteps"]
    _validate("emr", "AddJobFlowSteps", shown[1]["params"])
    assert [s["Name"] for s in shown[1]["params"]["Steps"]] == ["ctr-pipeline features", "ctr-pipeline train"]
    assert shown[1]["params"]["Steps"][0]["ActionOnFailure"] == "CANCEL_AND_WAIT"


def test_refresh_runs_as_a_step_on_a_transient_cluster(aws, moto_emr, definition, tmp_path, capsys):
    defn = load(definition)
    registry = f"s3://{BUCKET}/runs/registry"
    shown = _dry_run(tmp_path, "refresh", "--up", "--transient", "--definition", str(definition), "--registry",
                     registry, "--input", INPUT, "--set", "refresh.margin=0.001")
    assert [r["operation"] for r in shown] == ["PutObject"] * 4 + ["RunJobFlow"]
    assert shown[0]["params"]["Key"] == "runs/registry/refresh/_emr/config.yaml"
    req = shown[-1]["params"]
    _validate("emr", "RunJobFlow", req)
    assert req["Steps"] == [{"Name": "ctr-pipeline refresh", "ActionOnFailure": "TERMINATE_CLUSTER",
                             "HadoopJarStep": {"Jar": "command-runner.jar", "Args": [
                                 "spark-submit", "--deploy-mode", "client", "--master", "yarn", defn.entry_uri,
                                 "refresh", "--registry", registry,
                                 "--config", f"{registry}/refresh/_emr/config.yaml", "--input", INPUT,
                                 "--set", "aws.region=us-east-1", "--set", "refresh.margin=0.001"]}}]
    assert main(["emr", "refresh", "--up", "--transient", "--definition", str(definition), "--registry", registry,
                 "--input", INPUT]) == 0                       # against moto: the step is followed to the end
    assert "emr: all 1 step(s) completed; registry " + registry in capsys.readouterr().out
    assert main(["emr", "refresh", "--up", "--definition", str(definition), "--registry", "s3://elsewhere/reg",
                 "--input", INPUT]) == 2                       # outside the definition's prefixes
    assert "data.run_prefixes" in capsys.readouterr().err


def test_up_submit_status_down_against_moto(aws, moto_emr, definition, wheel, tmp_path, capsys):
    from ctr_pipeline.aws import client

    assert main(["emr", "up", "--definition", str(definition)]) == 0
    cluster_id = capsys.readouterr().out.strip().splitlines()[-1]
    s3, emr, defn = client("s3", aws), client("emr", aws), load(definition)
    art = "ctr-pipeline/artifacts/"
    for key, data in ((f"{art}wheels/{wheel.name}", wheel.data), (f"{art}bootstrap.sh", BOOTSTRAP_SCRIPT.read_bytes()),
                      (f"{art}spark_submit.py", ENTRY_SCRIPT.read_bytes())):
        assert s3.get_object(Bucket=BUCKET, Key=key)["Body"].read() == data
    cluster = emr.describe_cluster(ClusterId=cluster_id)["Cluster"]
    assert (cluster["Name"], cluster["ReleaseLabel"], cluster["LogUri"]) == ("ctr-pipeline", "emr-7.5.0",
                                                                           f"s3://{BUCKET}/emr-logs/")
    assert [a["Name"] for a in cluster["Applications"]] == ["Spark", "Zeppelin"]
    assert {t["Key"]: t["Value"] for t in cluster["Tags"]} == {"project": "ctr-pipeline"}
    boot = emr.list_bootstrap_actions(ClusterId=cluster_id)["BootstrapActions"][0]
    assert boot["ScriptPath"] == defn.bootstrap_uri and boot["Args"][0] == defn.wheel_uri
    sent = [op for op, *_ in moto_emr["sent"]]
    assert sent[:4] == ["PutObject"] * 3 + ["RunJobFlow"]
    assert moto_emr["sent"][3][1] == defn.run_job_flow_request()  # the definition's request, unchanged

    config = tmp_path / "run.yaml"
    config.write_text(yaml.safe_dump({"training": {"n_estimators": 30}}))
    argv = ["emr", "submit", "--definition", str(definition), "--cluster-id", cluster_id, "--config", str(config),
            "--input", INPUT, "--out", RUN, "--set", "emr.poll_seconds=7"]
    assert main(argv) == 0
    assert f"emr: all 4 step(s) completed; run directory {RUN}" in capsys.readouterr().out
    steps = moto_clusters()[cluster_id].steps
    assert [s.args for s in steps] == [stage_args(defn, stage, RUN, f"{RUN}/_emr/config.yaml", INPUT,
                                                  ["emr.poll_seconds=7"]) for stage in STAGES]
    assert [(s.name, s.jar, s.action_on_failure) for s in steps] == [
        (f"ctr-pipeline {stage}", "command-runner.jar", "CANCEL_AND_WAIT") for stage in STAGES]
    assert s3.get_object(Bucket=BUCKET, Key="runs/r1/_emr/config.yaml")["Body"].read() == config.read_bytes()
    # one progress line per state change, in order; polls every emr.poll_seconds
    changes = [line.split("): ")[1].split(" after ")[0] for line in moto_emr["progress"] if "(s-" in line]
    assert changes == ["RUNNING", "COMPLETED"] + ["PENDING", "RUNNING", "COMPLETED"] * 3
    assert any(line.startswith(f"emr: ctr-pipeline train ({steps[2].id}): COMPLETED after ")
               for line in moto_emr["progress"])
    assert set(moto_emr["sleeps"]) == {7.0}

    assert main(["emr", "status", "--definition", str(definition), "--cluster-id", cluster_id]) == 0
    status = capsys.readouterr().out.splitlines()
    assert status[0].startswith(f"{cluster_id} ctr-pipeline: ")
    assert [line.split() for line in status[1:]] == [[s.id, "COMPLETED", "ctr-pipeline", st]
                                                     for s, st in zip(steps, STAGES)]

    assert main(["emr", "down", "--definition", str(definition), "--cluster-id", cluster_id]) == 0
    assert emr.describe_cluster(ClusterId=cluster_id)["Cluster"]["Status"]["State"] in ("TERMINATING", "TERMINATED")
    assert main(argv) == 2                                        # a terminated cluster takes no steps
    assert f"cluster {cluster_id} is TERMINATED" in capsys.readouterr().err
    assert len(moto_clusters()[cluster_id].steps) == 4


def test_failed_step_prints_its_stderr_tail_and_exits_1(aws, moto_emr, definition, capsys):
    cluster_id = emr_cli.make_launcher(load(definition), aws).up()
    moto_emr["fail"] = "features"
    argv = ["emr", "submit", "--definition", str(definition), "--cluster-id", cluster_id, "--input", INPUT,
            "--out", RUN, "--set", "emr.log_tail_lines=3"]
    assert main(argv) == 1
    steps = moto_clusters()[cluster_id].steps
    assert [s.state for s in steps] == ["COMPLETED", "FAILED", "CANCELLED", "CANCELLED"]
    err = capsys.readouterr().err.splitlines()
    log_uri = f"s3://{BUCKET}/emr-logs/{cluster_id}/steps/{steps[1].id}/stderr.gz"
    assert err == [f"emr: last 3 lines of {log_uri}:", "  log line 97", "  log line 98", "  log line 99",
                   f"ctr-pipeline: failed: EMR step 'ctr-pipeline features' ({steps[1].id}) on cluster {cluster_id} "
                   f"FAILED; logs: s3://{BUCKET}/emr-logs/{cluster_id}/steps/{steps[1].id}/"]

    assert main(["emr", "logs", "--definition", str(definition), "--cluster-id", cluster_id,
                 "--step-id", steps[1].id, "--lines", "2"]) == 0
    out = capsys.readouterr()
    assert out.out.splitlines() == ["log line 98", "log line 99"] and log_uri in out.err
    assert main(["emr", "logs", "--definition", str(definition), "--cluster-id", cluster_id,
                 "--step-id", steps[2].id]) == 1                  # a cancelled step has no log yet
    assert f"no stderr log of step 'ctr-pipeline train' ({steps[2].id}, CANCELLED)" in capsys.readouterr().err


def test_transient_runs_terminate_the_cluster(aws, moto_emr, definition, capsys):
    from ctr_pipeline.aws import client

    emr = client("emr", aws)
    base = ["emr", "submit", "--definition", str(definition), "--input", INPUT, "--out", RUN, "--transient",
            "--stages", "sample,features"]
    assert main([*base, "--up"]) == 0                             # a new cluster that ends itself
    run_job_flow = next(params for op, params, _ in moto_emr["sent"] if op == "RunJobFlow")
    assert run_job_flow["Instances"]["KeepJobFlowAliveWhenNoSteps"] is False
    assert [s["ActionOnFailure"] for s in run_job_flow["Steps"]] == ["TERMINATE_CLUSTER"] * 2
    cluster_id = next(iter(moto_clusters()))
    assert [s.state for s in moto_clusters()[cluster_id].steps] == ["COMPLETED", "COMPLETED"]
    assert "emr: all 2 step(s) completed" in capsys.readouterr().out

    other = emr_cli.make_launcher(load(definition), aws).up()     # an existing cluster: terminated after
    assert main([*base, "--cluster-id", other]) == 0
    assert emr.describe_cluster(ClusterId=other)["Cluster"]["Status"]["State"] in ("TERMINATING", "TERMINATED")


def test_a_cluster_that_terminates_first_fails_the_follow(aws, moto_emr, definition):
    launcher = emr_cli.make_launcher(load(definition), aws)
    cluster_id = launcher.up()
    request = launcher.add_steps(cluster_id, stage_steps(launcher.defn, ["sample"], RUN, f"{RUN}/_emr/c.yaml", None))
    step_ids = launcher.execute([request])[0]["StepIds"]
    cluster = moto_clusters()[cluster_id]
    cluster.terminate()
    cluster.last_state_change_reason = "Master instance failed to bootstrap"  # what EMR would say
    with pytest.raises(RunFailed, match=f"cluster {cluster_id} is TERMINATED \\(Master instance failed to "
                                        f"bootstrap\\) before step 'ctr-pipeline sample' \\({step_ids[0]}\\)"):
        launcher.follow(cluster_id, step_ids, 1.0, 5)
    assert moto_emr["sleeps"] == []


def test_user_mistakes_exit_2_with_one_line(aws, moto_emr, definition, tmp_path, capsys, monkeypatch):
    bad = tmp_path / "bad.yaml"
    bad.write_text(definition.read_text() + "idle_timeout: 60\n")
    d = ["--definition", str(definition)]
    cases = [(["emr", "status", *d, "--cluster-id", "j-NOSUCHCLUSTER"], "DescribeCluster j-NOSUCHCLUSTER: "),
             (["emr", "submit", *d, "--cluster-id", "j-X", "--out", "/tmp/run"], "an EMR run directory must be on S3"),
             (["emr", "submit", *d, "--cluster-id", "j-X", "--out", f"s3://{BUCKET}/elsewhere/r"],
              "is not under data.run_prefixes of"),
             (["emr", "submit", *d, "--cluster-id", "j-X", "--out", RUN, "--input", "data/x.tsv"],
              "--input: input 'data/x.tsv' must be on S3"),
             (["emr", "submit", *d, "--out", RUN], "exactly one of --cluster-id ID"),
             (["emr", "submit", *d, "--cluster-id", "j-X", "--out", RUN, "--stages", "sample,fit"],
              "--stages 'sample,fit': unknown fit"),
             (["emr", "submit", *d, "--cluster-id", "j-X", "--out", RUN, "--set", "emr.poll_seconds=0"],
              "emr.poll_seconds"),
             (["emr", "logs", *d, "--cluster-id", "j-X", "--step-id", "s-X", "--lines", "0"], "--lines 0"),
             (["emr", "up", "--definition", "missing.yaml"], "missing.yaml: config file not found"),
             (["emr", "up", "--definition", str(bad)], "unknown key 'idle_timeout'"),
             (["emr", "down"], "--cluster-id")]
    for argv, message in cases:
        assert main(argv) == 2, argv
        err = capsys.readouterr().err
        assert message in err and len(err.strip().splitlines()) == 1, err
    assert moto_clusters() == {}                                   # nothing was created
    for key in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY"):
        monkeypatch.delenv(key)
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(tmp_path / "none"))
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "none"))
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")
    from ctr_pipeline import aws as aws_mod

    aws_mod.client.cache_clear()
    assert main(["emr", "status", *d, "--cluster-id", "j-X"]) == 2
    assert "no AWS credentials; set AWS_PROFILE" in capsys.readouterr().err


def test_aws_errors_map_to_exit_codes():
    from botocore.exceptions import ClientError, EndpointConnectionError

    def raising(exc):
        def fn(**_):
            raise exc
        return fn

    def client_error(code):
        return ClientError({"Error": {"Code": code, "Message": "m"}}, "RunJobFlow")

    with pytest.raises(UserError, match="RunJobFlow: ValidationException: m"):
        launcher_mod.aws_call("RunJobFlow", raising(client_error("ValidationException")))
    with pytest.raises(RunFailed, match="InternalServerError"):
        launcher_mod.aws_call("RunJobFlow", raising(client_error("InternalServerError")))
    with pytest.raises(RunFailed, match="Could not connect"):
        launcher_mod.aws_call("RunJobFlow", raising(EndpointConnectionError(endpoint_url="http://x")))
    assert launcher_mod.aws_call("GetObject", raising(client_error("NoSuchKey")), missing_ok=True) is None


def test_notes_wait_for_the_cluster_then_go_to_its_zeppelin(aws, moto_emr, definition, capsys, monkeypatch):
    from zeppelin.notes import NOTES

    from .zeppelin_harness import fake_zeppelin

    assert main(["emr", "up", "--definition", str(definition)]) == 0
    cluster_id = capsys.readouterr().out.strip().splitlines()[-1]
    cluster = moto_clusters()[cluster_id]
    cluster.state = "STARTING"
    states = iter(["BOOTSTRAPPING", "WAITING"])
    moto_launcher = emr_cli.make_launcher

    def booting(defn, settings):     # between two polls the cluster moves on, then is up
        launcher = moto_launcher(defn, settings)
        launcher.sleep = lambda seconds: setattr(cluster, "state", next(states))
        return launcher

    monkeypatch.setattr(emr_cli, "make_launcher", booting)
    with fake_zeppelin({}, auth=False) as server:
        url = f"http://127.0.0.1:{server.server_port}"
        assert main(["emr", "notes", "--definition", str(definition), "--cluster-id", cluster_id,
                     "--zeppelin", url]) == 0
        assert sorted(server.notes.values()) == sorted(f"/ctr-pipeline/{n.name}" for n in NOTES)
    assert cluster.state == "WAITING" and "is STARTING; waiting" in " ".join(moto_emr["progress"])
    cluster.applications = [a for a in cluster.applications if a.name != "Zeppelin"]
    assert main(["emr", "notes", "--definition", str(definition), "--cluster-id", cluster_id]) == 2
    assert "not Zeppelin; add Zeppelin to 'applications'" in capsys.readouterr().err
    cluster.state = "TERMINATED"
    assert main(["emr", "notes", "--definition", str(definition), "--cluster-id", cluster_id]) == 1
    assert "is TERMINATED" in capsys.readouterr().err
