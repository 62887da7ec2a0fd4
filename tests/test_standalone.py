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
