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
                "--set", "training.num_workers=2", "--set", "training.n_estimators=10",
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
    metrics = json.loads((tmp_path / "run" / "evaluation" / "metrics.json").read_text())
    assert 0.5 < metrics["test"]["auc"] <= 1.0


STANDALONE_RUN = ["--set", "training.num_workers=2", "--set", "training.n_estimators=10", "--set",
                  "spark.driver_memory=1g", "--set", "spark.conf={spark.executor.memory: 1g}", "--set",
                  "evaluation.baselines=[]"]


def executor_pids(cluster: StandaloneCluster) -> list[int]:
    """The executor JVMs this cluster's worker launched (they run in its work directory)."""
    import psutil

    found = []
    for p in psutil.process_iter(["cmdline", "cwd"]):
        cmd = " ".join(p.info["cmdline"] or [])
        if "CoarseGrainedExecutorBackend" in cmd and str(cluster.workdir) in (p.info["cwd"] or ""):
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
