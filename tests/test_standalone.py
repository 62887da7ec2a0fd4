"""The pipeline on a real standalone cluster (master + worker daemons on 127.0.0.1), not local mode."""
import json

import pytest

from ctr_pipeline.standalone import StandaloneCluster

from .conftest import REPO, cli, cli_env

pytestmark = pytest.mark.spark


def test_pipeline_runs_on_a_standalone_cluster(tmp_path, demo_tsv):
    import subprocess

    with StandaloneCluster(tmp_path / "cluster", cores=2, memory="3g") as cluster:
        proc = subprocess.run(
            cli("run", "--master", cluster.url, "--input", str(demo_tsv), "--out", str(tmp_path / "run"),
                "--set", "training.n_estimators=10",           # num_workers auto: the cluster's 2 slots
                "--set", "spark.driver_memory=1g", "--set", "spark.app_name=ctr-standalone-test",
                "--set", "spark.conf={spark.executor.memory: 1g}",
                "--set", "evaluation.baselines=[]"),     # MLlib's LR on executors is Spark's own, tested by Spark
            capture_output=True, text=True, cwd=REPO, env=cli_env(), timeout=900)
        state = cluster.master_state()
    assert proc.returncode == 0, proc.stderr[-3000:]
    apps = [a["name"] for a in state.get("completedapps", []) + state.get("activeapps", [])]
    assert "ctr-standalone-test" in apps, apps            # the work went through the cluster's master
    manifest = json.loads((tmp_path / "run" / "manifest.json").read_text())
    assert manifest["stages"]["train"]["details"]["params"]["num_workers"] == 2
    assert manifest["stages"]["train"]["details"]["engine"] == "spark"   # auto: not a local master
    metrics = json.loads((tmp_path / "run" / "evaluation" / "metrics.json").read_text())
    assert 0.5 < metrics["test"]["auc"] <= 1.0


STANDALONE_RUN = ["--set", "training.num_workers=2", "--set", "training.n_estimators=10", "--set",
                  "spark.driver_memory=1g", "--set", "spark.conf={spark.executor.memory: 1g}", "--set",
                  "evaluation.baselines=[]"]


def executor_pids(cluster: StandaloneCluster, at_work: bool = False) -> list[int]:
    """The executor JVMs this cluster's worker launched (they run in its work directory); ``at_work``:
    only those running a Python task (a forked pyspark worker under the executor's pyspark.daemon)."""
    import psutil

    found = []
    for p in psutil.process_iter(["cmdline", "cwd"]):
        cmd = " ".join(p.info["cmdline"] or [])
        if "CoarseGrainedExecutorBackend" in cmd and str(cluster.workdir) in (p.info["cwd"] or ""):
            try:
                busy = any(len(c.children()) > 0 for c in p.children() if "pyspark.daemon" in " ".join(c.cmdline()))
            except psutil.Error:
                continue
            if busy or not at_work:
                found.append(p.pid)
    return found


@pytest.fixture(scope="module")
def cluster_and_reference(tmp_path_factory, demo_tsv):
    """A standalone cluster and an undisturbed run on it."""
    import subprocess

    where = tmp_path_factory.mktemp("standalone")
    with StandaloneCluster(where / "cluster", cores=2, memory="3g") as cluster:
        proc = subprocess.run(cli("run", "--master", cluster.url, "--input", str(demo_tsv), "--out",
                                  str(where / "reference"), *STANDALONE_RUN),
                              capture_output=True, text=True, cwd=REPO, env=cli_env(), timeout=900)
        assert proc.returncode == 0, proc.stderr[-3000:]
        yield cluster, where / "reference"


# An executor JVM killed (SIGKILL) while a stage runs: the worker starts another, Spark's task retries
# (and, for the barrier training stage, the stage's retry) redo the lost work, and the results equal the
# undisturbed run's. Each variant is a whole run on the cluster (1-3 minutes here): `make test-all`.
@pytest.mark.slow
@pytest.mark.parametrize("stage", ["sample", "features", "train", "evaluate"])
def test_an_executor_lost_mid_stage_changes_no_result(cluster_and_reference, demo_tsv, tmp_path, stage):
    import os
    import signal
    import subprocess
    import time

    from .conftest import run_outputs

    cluster, reference = cluster_and_reference
    run, err_path = tmp_path / "run", tmp_path / "run.err"
    with open(err_path, "w") as err:
        proc = subprocess.Popen(cli("run", "--master", cluster.url, "--input", str(demo_tsv), "--out", str(run),
                                    *STANDALONE_RUN), cwd=REPO, env=cli_env(), stdout=subprocess.DEVNULL, stderr=err)
    try:
        deadline = time.time() + 600
        while f"{stage}: started" not in err_path.read_text():
            assert proc.poll() is None and time.time() < deadline, err_path.read_text()[-2000:]
            time.sleep(0.2)
        while not executor_pids(cluster):   # the session starts with the first stage that needs Spark
            assert proc.poll() is None and time.time() < deadline, err_path.read_text()[-2000:]
            time.sleep(0.2)
        time.sleep(1.0)
        victims = executor_pids(cluster)
        assert victims and f"{stage}: done" not in err_path.read_text()     # the stage is still at work
        for pid in victims:
            os.kill(pid, signal.SIGKILL)
        assert proc.wait(timeout=900) == 0, err_path.read_text()[-3000:]
    finally:
        if proc.poll() is None:
            proc.kill()
    app = max((cluster.workdir / "work").glob("app-*"), key=lambda p: p.stat().st_mtime)
    assert len([d for d in app.iterdir() if d.is_dir()]) >= 2      # the worker started a new executor
    assert run_outputs(run) == run_outputs(reference)


# The same fault with Spark's retries turned off (spark.task.maxFailures=1): the job cannot recover, and
# the user gets one line naming the lost executor and what to look at, not a Java trace.
@pytest.mark.slow
def test_an_executor_lost_beyond_retries_is_one_line(cluster_and_reference, tmp_path):
    import os
    import signal
    import subprocess
    import time

    from .conftest import copy_of_sampled_run

    cluster, reference = cluster_and_reference
    run, err_path = copy_of_sampled_run(reference, tmp_path), tmp_path / "run.err"
    args = [a if not a.startswith("spark.conf=") else "spark.conf={spark.executor.memory: 1g, spark.task.maxFailures: 1}"
            for a in STANDALONE_RUN]
    with open(err_path, "w") as err:
        proc = subprocess.Popen(cli("features", "--master", cluster.url, "--out", str(run), *args),
                                cwd=REPO, env=cli_env(), stdout=subprocess.DEVNULL, stderr=err)
    killed = 0
    try:
        deadline = time.time() + 600
        while "features: fitting" not in err_path.read_text():
            assert proc.poll() is None and time.time() < deadline, err_path.read_text()[-2000:]
            time.sleep(0.2)
        while proc.poll() is None and time.time() < deadline:
            for pid in executor_pids(cluster, at_work=True):     # each executor once its first Python task runs
                os.kill(pid, signal.SIGKILL)
                killed += 1
            time.sleep(0.1)
        assert proc.wait(timeout=60) == 1, err_path.read_text()[-3000:]
    finally:
        if proc.poll() is None:
            proc.kill()
    text = err_path.read_text()
    [line] = [x for x in text.splitlines() if x.startswith("ctr-pipeline:")]
    assert killed and "Traceback" not in text, text[-3000:]
    assert line.startswith(("ctr-pipeline: failed: features stage failed: a Spark executor was lost 1 times",
                            "ctr-pipeline: failed: features stage failed: the cluster's master removed the "
                            "application")), line
    assert "check the workers' logs" in line and "(full trace: " in line
    assert not (run / "features").exists() and not (run / "run.lock").exists()
