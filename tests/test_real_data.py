"""The shipped configs on the real data sets in ../shared/data (skipped where that folder is absent)."""
import json

import pytest

from .conftest import REPO, cli, cli_env

pytestmark = pytest.mark.spark


def run_config(tmp_path, config, *sets):
    import subprocess

    args = [a for s in sets for a in ("--set", s)]
    return subprocess.run(cli("run", "--config", str(REPO / "configs" / config), "--out", str(tmp_path / "run"),
                              *args), capture_output=True, text=True, cwd=REPO, env=cli_env(), timeout=900)


@pytest.mark.slow   # about 90 s; the 200-row Criteo CSV run below keeps a real data set in `make test`
def test_talkingdata_end_to_end(tmp_path, shared_data):
    # the shipped config at a test's cost: fewer trees (its 200 with early stopping are in `make bench`)
    proc = run_config(tmp_path, "talkingdata.yaml", f"input.path={shared_data}/"
                                                    "talkingdata_adtracking_train_sample_100k.csv.gz",
                      "training.n_estimators=40", "evaluation.bootstrap=50")
    assert proc.returncode == 0, proc.stderr[-3000:]
    manifest = json.loads((tmp_path / "run" / "manifest.json").read_text())
    sample = manifest["stages"]["sample"]
    assert sample["details"]["input"]["rows_read"] == 100_000 and sample["details"]["input"]["rows_quarantined"] == 0
    assert "attributed_time" in manifest["config"]["input"]["drop"]
    metrics = json.loads((tmp_path / "run" / "evaluation" / "metrics.json").read_text())
    assert metrics["test"]["positives"] > 20
    assert metrics["test"]["auc"] > 0.85          # without the leaky column; AUC near 1.0 would mean a leak
    assert "test: AUC" in proc.stdout


def test_criteo_dac_sample_as_csv(tmp_path, shared_data):
    """The 200-row DeepCTR Criteo sample (CSV with header, floats for integers) through every stage."""
    cols = ",".join(f"I{i}" for i in range(1, 14))
    cats = ",".join(f"C{i}" for i in range(1, 27))
    proc = run_config(tmp_path, "example.yaml", f"input.path={shared_data}/deepctr_criteo_sample_200.csv.gz",
                      "input.format=csv", f"input.numeric=[{cols}]", f"input.categorical=[{cats}]",
                      "sampling.train=0.5", "sampling.validation=0", "sampling.test=0.5",
                      "training.n_estimators=5", "evaluation.baselines=[]",
                      "training.early_stopping_rounds=null")   # example.yaml sets it; it needs validation
    assert proc.returncode == 0, proc.stderr[-3000:]
    metrics = json.loads((tmp_path / "run" / "evaluation" / "metrics.json").read_text())
    assert metrics["test"]["rows"] + json.loads((tmp_path / "run" / "manifest.json").read_text())[
        "stages"]["sample"]["rows"]["train"] == 200
