"""The mrjob sampler with mrjob's EMR runner against moto's server, its mrjob.conf generated from the
same cluster definition as the launcher's.

moto creates clusters and steps but never runs a step, so :class:`FakeEmrCluster` plays the cluster's
part: it runs each submitted Hadoop streaming step with mrjob's inline runner (in a process of its own)
on the step's S3 input
and ``-files`` (the plan), writes the output where the step's ``-output`` says, and completes the step
in moto's in-process backend, leaving it RUNNING for a moment first as EMR does (mrjob releases its
pool lock when it sees a step running). Everything else is mrjob's own EMR runner: cluster creation,
pooling, uploads to the cloud tmp dir, step submission, polling and reading the output from S3.
"""
import shlex
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import pytest
import yaml

from ctr_pipeline.aws import client
from ctr_pipeline.errors import UserError
from emr_configs.definition import load
from emr_configs.mrjob_conf import mrjob_conf
from emr_configs.validate import validate_request
from sampling import mr_srs

from .conftest import REPO

BUCKET = "ctr-mrjob-test"
INPUT = f"s3://{BUCKET}/run/_mrjob/input/"
TMP_PREFIX = "ctr-pipeline/artifacts/mrjob-tmp/"


def targets_for(counts):
    """train / validation / test of 40% / 10% / 20% of each stratum (rows)."""
    return {s: {"train": n * 4 // 10, "validation": n // 10, "test": n // 5} for s, n in counts.items()}


class FakeEmrCluster(threading.Thread):
    """Runs the Hadoop streaming steps that mrjob submits to moto (which never runs them)."""

    def __init__(self, settings):
        super().__init__(daemon=True)
        self.s3, self.emr = client("s3", settings), client("emr", settings)
        self.region, self.done, self.ran, self.errors = settings.region, threading.Event(), [], []
        self.bootstrapped = {}                                     # cluster id -> its bootstrap scripts' text

    def run(self):
        while not self.done.is_set():
            try:
                for cluster in self.emr.list_clusters(ClusterStates=["RUNNING", "WAITING"])["Clusters"]:
                    self.bootstrap(cluster["Id"])
                    for step in self.emr.list_steps(ClusterId=cluster["Id"], StepStates=["PENDING", "RUNNING"])[
                            "Steps"]:
                        self.execute(cluster["Id"], step)
            except Exception as exc:  # reported by the test, which would otherwise wait forever
                self.errors.append(exc)
                return
            time.sleep(0.05)

    def execute(self, cluster_id, step):
        self.set_state(cluster_id, step["Id"], "RUNNING")
        args = step["Config"]["Args"]
        assert args[0] == "hadoop-streaming", args
        opts = {a: args[i + 1] for i, a in enumerate(args) if a in ("-files", "-output", "-mapper")}
        inputs = [args[i + 1] for i, a in enumerate(args) if a == "-input"]
        with tempfile.TemporaryDirectory() as work:
            local, uris = {}, {}
            for entry in opts.get("-files", "").split(","):
                uri, _, name = entry.partition("#")
                if uri:
                    local[name], uris[name] = self.download(uri, Path(work) / name), uri
            files = [self.download(f"s3://{BUCKET}/{o['Key']}", Path(work) / "in" / Path(o["Key"]).name)
                     for uri in inputs for o in self.list(uri)]
            command = shlex.split(opts["-mapper"])
            job_args = [a for a in command[command.index("mr_srs.py") + 1:]
                        if not a.startswith("--step-num") and a != "--mapper"]
            run_args = [str(local.get(a, a)) for a in job_args]    # --plan NAME -> the downloaded file
            # a process of its own, as a task would be (mrjob's inline runner swaps sys.stdout)
            done = subprocess.run([sys.executable, "-m", "sampling.mr_srs", "--no-conf", "-r", "inline", *run_args,
                                   *map(str, files)], cwd=REPO, capture_output=True, timeout=120, check=True)
            output = done.stdout
        bucket, _, prefix = opts["-output"][len("s3://"):].partition("/")
        self.s3.put_object(Bucket=bucket, Key=prefix.rstrip("/") + "/part-00000", Body=output)
        self.ran.append({"cluster": cluster_id, "args": job_args, "files": sorted(local), "uris": uris})
        time.sleep(0.6)                                          # mrjob polls every 0.2 s: it sees RUNNING
        self.set_state(cluster_id, step["Id"], "COMPLETED")

    def list(self, uri):
        bucket, _, prefix = uri[len("s3://"):].partition("/")
        return self.s3.list_objects_v2(Bucket=bucket, Prefix=prefix).get("Contents", [])

    def download(self, uri, path):
        bucket, _, key = uri[len("s3://"):].partition("/")
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(self.s3.get_object(Bucket=bucket, Key=key)["Body"].read())
        return path

    def bootstrap(self, cluster_id):
        """Read the cluster's bootstrap scripts once, as its nodes would when it starts."""
        if cluster_id not in self.bootstrapped:
            actions = self.emr.list_bootstrap_actions(ClusterId=cluster_id)["BootstrapActions"]
            self.bootstrapped[cluster_id] = [self.read(a["ScriptPath"]) for a in actions]

    def read(self, uri):
        bucket, _, key = uri[len("s3://"):].partition("/")
        return self.s3.get_object(Bucket=bucket, Key=key)["Body"].read().decode()

    def backend(self, cluster_id):
        """The cluster in moto's backend, its applications with versions as EMR 7.5 reports them (moto
        leaves them empty; mrjob needs Hadoop's to write a map-only step)."""
        from moto.core import DEFAULT_ACCOUNT_ID
        from moto.emr.models import emr_backends

        cluster = emr_backends[DEFAULT_ACCOUNT_ID][self.region].clusters[cluster_id]
        for app in cluster.applications:
            app.version = app.version or {"Hadoop": "3.4.0-amzn-1", "Spark": "3.5.2-amzn-1"}.get(app.name)
        return cluster

    def set_state(self, cluster_id, step_id, state):
        """Move a step in moto's backend (the cluster waits once all its steps completed)."""
        cluster = self.backend(cluster_id)
        for step in cluster.steps:
            if step.id == step_id:
                step.state = state
        cluster.state = "WAITING" if all(s.state == "COMPLETED" for s in cluster.steps) else "RUNNING"


@pytest.fixture
def emr_setup(aws, tmp_path, monkeypatch):
    """moto buckets with 1,000 input rows in two parts, the default definition on that bucket, and
    its generated mrjob.conf (polling every 0.2 s instead of 30 s)."""
    import mrjob.pool

    # mrjob waits 10 s after tagging a pooled cluster with its lock, to see that no other job overwrote it
    monkeypatch.setattr(mrjob.pool, "_WAIT_AFTER_ADD_TAG", 0.5)
    s3 = client("s3", aws)
    s3.create_bucket(Bucket=BUCKET)
    for part in range(2):
        rows = range(part * 500, part * 500 + 500)
        s3.put_object(Bucket=BUCKET, Key=f"run/_mrjob/input/part-0000{part}.json",
                      Body=b"".join(b'{"row_id": %d, "label": %d}\n' % (i, int(i % 7 == 0)) for i in rows))
    defn = load(REPO / "emr_configs" / "default.yaml",
                {"log_uri": f"s3://{BUCKET}/emr-logs/", "artifacts_uri": f"s3://{BUCKET}/ctr-pipeline/artifacts/",
                 "data": {"input_prefixes": [f"s3://{BUCKET}/run/"], "run_prefixes": [f"s3://{BUCKET}/runs/"]}})
    conf = mrjob_conf(defn, aws.endpoint_url)
    conf["runners"]["emr"].update(check_cluster_every=0.2, cloud_fs_sync_secs=0)
    conf_path = tmp_path / "mrjob.conf"
    conf_path.write_text(yaml.safe_dump(conf))
    inputs = [f"{INPUT}part-0000{part}.json" for part in range(2)]
    return aws, defn, conf_path, inputs


def test_emr_runner_selects_the_rows_the_inline_runner_selects_on_one_pooled_cluster(emr_setup, tmp_path):
    aws, _, conf_path, inputs = emr_setup
    fake = FakeEmrCluster(aws)
    fake.start()
    try:
        info = mr_srs.run_srs(inputs, tmp_path / "emr", targets_for, seed=5, delta=1e-4, runner="emr",
                              stratify_by="label", conf_path=str(conf_path))
    finally:
        fake.done.set()
        fake.join(timeout=10)
    assert not fake.errors, fake.errors

    local_inputs = []
    for part, uri in enumerate(inputs):
        path = tmp_path / f"part-0000{part}.json"
        fake.download(uri, path)
        local_inputs.append(str(path))
    expected = mr_srs.run_srs(local_inputs, tmp_path / "inline", targets_for, seed=5, delta=1e-4, runner="inline",
                              stratify_by="label")
    assert info == expected and info["counts"] == {"0": 857, "1": 143}
    got = (tmp_path / "emr" / "assigned" / "part-00000").read_bytes().splitlines()
    assert sorted(got) == sorted((tmp_path / "inline" / "assigned" / "part-00000").read_bytes().splitlines())
    assert len(got) == sum(sum(t.values()) for t in targets_for(info["counts"]).values())

    # the three phases ran as steps of ONE cluster (mrjob's pooling), in order, the plans shipped as files
    assert [r["args"][:2] for r in fake.ran] == [["--phase", "count"], ["--phase", "regions"], ["--phase", "assign"]]
    assert len({r["cluster"] for r in fake.ran}) == 1
    assert [[f for f in r["files"] if f.startswith("plan")] for r in fake.ran] == [
        [], ["plan-1.json"], ["plan-final.json"]]
    assert all("mr_srs.py" in r["files"] for r in fake.ran)
    assert "--stratify-by" in fake.ran[0]["args"] and "label" in fake.ran[0]["args"]


def test_emr_runner_sends_the_definitions_cluster_and_uploads_to_the_cloud_tmp_dir(emr_setup, tmp_path, monkeypatch):
    import boto3

    aws, defn, conf_path, inputs = emr_setup
    s3, emr = client("s3", aws), client("emr", aws)
    sent = []                                   # mrjob's RunJobFlow parameters, through boto3's event hooks
    monkeypatch.setattr(boto3, "DEFAULT_SESSION", None)
    boto3.setup_default_session()
    boto3.DEFAULT_SESSION.events.register("provide-client-params.emr.RunJobFlow",
                                          lambda params, **_: sent.append(params))
    fake = FakeEmrCluster(aws)
    fake.start()
    try:
        mr_srs.run_srs(inputs, tmp_path / "emr", targets_for, seed=5, delta=1e-4, runner="emr",
                       conf_path=str(conf_path))
    finally:
        fake.done.set()
        fake.join(timeout=10)
    (params,) = sent
    validate_request(params, "mrjob's request")
    req = defn.run_job_flow_request()
    for key in ("ReleaseLabel", "ServiceRole", "JobFlowRole", "LogUri", "AutoTerminationPolicy"):
        assert params[key] == req[key], key
    assert _configurations(params["Configurations"]) == _configurations(req["Configurations"])
    assert params["Instances"]["InstanceGroups"] == req["Instances"]["InstanceGroups"]
    (summary,) = emr.list_clusters()["Clusters"]
    cluster = emr.describe_cluster(ClusterId=summary["Id"])["Cluster"]
    assert cluster["ReleaseLabel"] == defn.release_label == "emr-7.5.0" and cluster["ServiceRole"] == defn.service_role
    assert cluster["Ec2InstanceAttributes"]["IamInstanceProfile"] == defn.instance_profile
    assert {a["Name"] for a in cluster["Applications"]} >= {"Spark", "Hadoop"}
    assert {"Key": "project", "Value": "ctr-pipeline"} in cluster["Tags"]
    classes = {c["Classification"] for c in cluster["Configurations"]}
    assert classes >= {"capacity-scheduler", "spark-defaults", "spark-env"}
    groups = {g["InstanceGroupType"]: g for g in emr.list_instance_groups(ClusterId=summary["Id"])["InstanceGroups"]}
    assert (groups["MASTER"]["InstanceType"], groups["MASTER"]["RequestedInstanceCount"]) == ("m5.xlarge", 1)
    assert (groups["CORE"]["InstanceType"], groups["CORE"]["RequestedInstanceCount"]) == ("m5.2xlarge", 2)

    steps = emr.list_steps(ClusterId=summary["Id"])["Steps"][::-1]   # newest first from EMR
    assert [s["Status"]["State"] for s in steps] == ["COMPLETED"] * 3
    args = steps[0]["Config"]["Args"]
    assert [args[i + 1] for i, a in enumerate(args) if a == "-input"] == inputs
    mapper = args[args.index("-mapper") + 1]
    assert "/usr/bin/python3.11 mr_srs.py" in mapper and "--phase count" in mapper, mapper
    assert args[args.index("-output") + 1].startswith(f"s3://{BUCKET}/{TMP_PREFIX}")

    # the job and each phase's plan went up to the cloud tmp dir, which mrjob empties after each phase
    tmp_dir = defn.artifact("mrjob-tmp/")
    for ran, plan in zip(fake.ran, (None, "plan-1.json", "plan-final.json")):
        assert ran["uris"]["mr_srs.py"].startswith(tmp_dir)
        assert plan is None or ran["uris"][plan].startswith(tmp_dir) and ran["args"][-1] == plan, ran
    assert "Contents" not in s3.list_objects_v2(Bucket=BUCKET, Prefix=TMP_PREFIX)
    # mrjob wraps the definition's bootstrap command into its own master script: it must run ours
    (scripts,) = fake.bootstrapped.values()
    assert any(f"bootstrap.sh {defn.wheel_uri} /usr/bin/python3.11" in text for text in scripts), scripts


def _configurations(items):
    """EMR configurations without empty ``Properties`` (mrjob adds them; EMR reads them the same)."""
    return [{k: (_configurations(v) if k == "Configurations" else v) for k, v in c.items()
             if not (k == "Properties" and not v)} for c in items]


def test_run_srs_on_emr_needs_a_conf_and_s3_inputs(tmp_path):
    with pytest.raises(UserError, match=r"runner 'emr' needs conf_path"):
        mr_srs.run_srs([INPUT], tmp_path, targets_for, seed=1, delta=1e-4, runner="emr")
    with pytest.raises(UserError, match=r"runner 'emr' reads its input from S3: '/data/x.json' is not an s3:// URI"):
        mr_srs.run_srs(["/data/x.json"], tmp_path, targets_for, seed=1, delta=1e-4, runner="emr",
                       conf_path=str(tmp_path / "mrjob.conf"))


def test_emr_runner_needs_an_s3_run_directory(tmp_path, demo_tsv, capsys):
    from ctr_pipeline.cli import main

    argv = ["sample", "--input", str(demo_tsv), "--out", str(tmp_path / "run"), "--engine", "mrjob",
            "--set", "sampling.mrjob_runner=emr"]
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert "sampling.mrjob_runner 'emr' reads and writes S3" in err and len(err.strip().splitlines()) == 1
    assert not (tmp_path / "run" / "splits").exists()
