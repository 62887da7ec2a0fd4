"""The refresh-retrain job over simulated daily windows: promote, no-op, refuse, lock, kill and rerun.

Windows are 10,000 demo rows: too few for the default rule (margin 0, calibration within 1 +- 0.1) to
promote reliably, so these tests use a permissive margin; the rule itself is tested on its own below and
the default rule's promotion at 1M rows is in bench/refresh_compare.py (README "Performance").
"""
import gzip
import json
import os
import signal
import subprocess
import time

import pytest

from ctr_pipeline.config import Layer, build_config, flag_layer, parse_set_option
from ctr_pipeline.errors import RunFailed
from ctr_pipeline.locks import Lock
from ctr_pipeline.pipeline import run_stages
from ctr_pipeline.refresh import decide as rules
from ctr_pipeline.refresh.cli import refresh_registry
from ctr_pipeline.refresh.job import refresh_dir
from ctr_pipeline.registry.bundle import from_run
from ctr_pipeline.registry.store import Registry
from ctr_pipeline.runs import STAGES, RunDir

from .conftest import REPO, cli, cli_env

PERMISSIVE = ["refresh.margin=-0.05", "refresh.calibration_band=0.5", "refresh.extra_trees=20",
              "refresh.bootstrap=50"]


# ---------------------------------------------------------------------------------------------- pure rules

def candidate(mxe, low, high, calibration=1.0):
    return {"mxe": mxe, "calibration": calibration, "improvement": {"interval": [low, high]}}


def test_the_rule_promotes_only_a_significant_calibrated_improvement():
    champ = {"mxe": 0.15}
    d = rules.decide(champ, {"refresh": candidate(0.148, 0.002, 0.02), "continuation": candidate(0.149, 0.01, 0.02)},
                     margin=0.0, band=0.1)
    assert d["action"] == "promote" and d["winner"] == "refresh"          # the lowest MXE, not the widest margin
    d = rules.decide(champ, {"refresh": candidate(0.148, -0.001, 0.02)}, margin=0.0, band=0.1)
    assert d["action"] == "keep" and "does not lie above" in d["reason"]
    d = rules.decide(champ, {"refresh": candidate(0.148, 0.01, 0.02, calibration=1.2)}, margin=0.0, band=0.1)
    assert d["action"] == "keep" and "calibration 1.200" in d["reason"]
    d = rules.decide(champ, {"refresh": candidate(0.148, 0.01, 0.02)}, margin=0.015, band=0.1)
    assert d["action"] == "keep"
    assert rules.decide(champ, {}, 0.0, 0.1)["action"] == "keep"


def test_continuation_keeps_the_trees_early_stopping_would():
    from ctr_pipeline.refresh.job import early_stop

    assert early_stop([0.5, 0.4, 0.3, 0.31, 0.32, 0.33], patience=2) == 2     # no gain in 2 trees: keep 2
    assert early_stop([0.5, 0.4, 0.41, 0.42, 0.3, 0.2], patience=2) == 1      # stopped before the late gain
    assert early_stop([0.5, 0.4, 0.41, 0.42, 0.3, 0.2], patience=3) == 5
    assert early_stop([0.5, 0.6, 0.7], patience=5) == 0                       # no tree helps: none added


def test_window_identity_and_broken_windows():
    assert rules.window_key([("b", 2), ("a", 1)]) == rules.window_key([("a", 1), ("b", 2)])
    assert rules.window_key([("a", 1)]) != rules.window_key([("a", 2)])
    assert rules.window_problem(0.04, 0.04, 3.0) is None and rules.window_problem(0.1, 0.04, 3.0) is None
    assert "click rate 0.000%" in rules.window_problem(0.0, 0.04, 3.0)
    assert rules.window_problem(0.2, 0.04, 3.0) and rules.window_problem(0.01, 0.04, 3.0)


def test_a_done_window_is_skipped_unless_forced(monkeypatch, tmp_path):
    from types import SimpleNamespace

    from ctr_pipeline.refresh import job

    reg = Registry.open(str(tmp_path / "reg"), create=True)
    files = [SimpleNamespace(display="/logs/day2.tsv", size=10)]
    monkeypatch.setattr("ctr_pipeline.readers.spark.list_input_files", lambda spark, path: files)
    key = rules.window_key([("/logs/day2.tsv", 10)])
    record = {"at": "t", "window": {"key": key}, "champion": {"version": "v1", "holdout": {"mxe": 0.2}},
              "candidates": {}, "decision": {"action": "keep", "reason": "no challenger was built"}}
    (refresh_dir(reg) / "windows" / f"{key}.json").write_text(json.dumps(record))
    ran = []
    monkeypatch.setattr(job, "run", lambda *a: ran.append(a) or record)
    cfg = build_config([flag_layer("--input", "input.path", "/logs/day2.tsv")])
    assert "refreshed already" in refresh_registry(None, cfg, reg, "v1", False, "log") and not ran
    assert "kept v1" in refresh_registry(None, cfg, reg, "v1", True, "log") and len(ran) == 1


def test_a_publish_cut_short_is_finished_by_the_rerun_without_a_second_version(tmp_path, monkeypatch):
    from ctr_pipeline.refresh import job

    from .test_registry import fake_bundle

    reg = Registry.open(str(tmp_path / "reg"), create=True)
    reg.promote(reg.register(fake_bundle(tmp_path, "day1", 0.2)))
    record = {"at": "t", "window": {"key": "k2", "files": []}, "champion": {"version": "v1", "holdout": {"mxe": 0.2}},
              "candidates": {}, "decision": {"action": "promote", "winner": "refresh", "best": "refresh",
                                             "reason": "better"}}
    real_promote = Registry.promote

    def killed_after_register(self, *args, **kwargs):
        raise KeyboardInterrupt("killed")          # the process dies right after the version is written

    monkeypatch.setattr(Registry, "promote", killed_after_register)
    with pytest.raises(KeyboardInterrupt):
        job.publish(reg, dict(record, decision=dict(record["decision"])), fake_bundle(tmp_path, "day2", 0.19))
    assert state(reg) == (["v1", "v2"], {"champion": "v1"})              # a version, no alias moved, no marker
    assert job.done_before(reg, "k2") is None
    monkeypatch.setattr(Registry, "promote", real_promote)
    job.publish(reg, dict(record, decision=dict(record["decision"])), fake_bundle(tmp_path, "day2", 0.19))
    assert state(reg) == (["v1", "v2"], {"champion": "v2", "challenger": "v2"})   # v2 found again by lineage
    assert job.done_before(reg, "k2")["decision"]["version"] == "v2"


# ---------------------------------------------------------------------------------------------- on Spark

def test_validation_curve_is_the_champion_plus_k_added_trees_at_full_width(spark, tmp_path):
    """The continuation's curve, from boosters narrowed to their split columns, is the weighted log loss of
    the champion's margin plus the first k added trees, as full-width XGBoost predicts them."""
    import numpy as np
    import xgboost as xgb
    from pyspark.ml.linalg import SparseVector
    from scipy.sparse import random as sparse_random

    from ctr_pipeline.refresh.job import validation_curve

    rng = np.random.default_rng(8)
    width, n = 3000, 1500
    x = sparse_random(n, width, density=6 / width, format="csr", random_state=rng, dtype=np.float64)
    x.data = np.round(x.data * 3) + 1
    y = (rng.random(n) < 0.15 + 0.5 * (x[:, :40].sum(axis=1).A.ravel() > 0)).astype(np.float64)
    w = rng.uniform(0.5, 2.0, n)
    params = {"objective": "binary:logistic", "max_depth": 3, "nthread": 1}
    champion = xgb.train(params, xgb.DMatrix(x, label=y, missing=0.0), 6)
    base = champion.predict(xgb.DMatrix(x, missing=0.0), output_margin=True)
    added = xgb.train(params, xgb.DMatrix(x, label=y, missing=0.0, base_margin=base), 5)
    rows = [(i, int(y[i]), float(w[i]), SparseVector(width, x[i].indices.tolist(), x[i].data.tolist())) for i in range(n)]
    path = str(tmp_path / "validation")
    spark.createDataFrame(rows, ["row_id", "label", "weight", "features"]).repartition(3).write.parquet(path)
    got = validation_curve(spark, bytes(champion.save_raw("ubj")), bytes(added.save_raw("ubj")), path, width)
    full = xgb.DMatrix(x, missing=0.0, base_margin=base)
    want = []
    for k in range(6):
        m = base if k == 0 else added.predict(full, output_margin=True, iteration_range=(0, k))
        p = np.clip(1 / (1 + np.exp(-m.astype(np.float64))), 1e-15, 1 - 1e-15)
        want.append(float(np.sum(w * -(y * np.log(p) + (1 - y) * np.log1p(-p))) / w.sum()))
    assert got == pytest.approx(want, rel=1e-9)


@pytest.fixture(scope="module")
def days(spark, tmp_path_factory):
    """Day 1 trained and registered as champion; day 2 drifted; day 3 corrupted and clickless copies."""
    from ctr_pipeline.demo_data import generate

    base = tmp_path_factory.mktemp("refresh")
    paths = {}
    for day in (1, 2):
        paths[day] = base / f"day{day}.tsv.gz"
        generate(10_000, paths[day], seed=5, day=day, drift=0.4)
    lines = gzip.open(paths[2], "rt").read().splitlines()
    corrupted = base / "day3_corrupted.tsv"
    corrupted.write_text("\n".join(line if i % 20 else "garbage\twith\ttoo few fields" for i, line in enumerate(lines))
                         + "\n")
    clickless = base / "day3_clickless.tsv"
    clickless.write_text("\n".join("0" + line[1:] for line in lines) + "\n")
    run = RunDir(base / "day1")
    cfg = build_config([parse_set_option(s) for s in ("training.n_estimators=20", "evaluation.baselines=[]",
                                                      "evaluation.bootstrap=0", "training.search_space={}",
                                                      "training.early_stopping_rounds=null")]
                       + [flag_layer("--input", "input.path", str(paths[1]))])
    run_stages(STAGES, cfg, run, lambda: spark)
    return {"dir": base, "run": run, 2: paths[2], "corrupted": corrupted, "clickless": clickless}


def new_registry(days, name):
    reg = Registry.open(str(days["dir"] / name), create=True)
    reg.promote(reg.register(from_run(days["run"].root), reason="day 1"), reason="day 1")
    return reg


def refresh_config(reg, window, *sets):
    return build_config([Layer("champion", reg.bundle("champion").config),
                         *[parse_set_option(s) for s in (*PERMISSIVE, *sets)],
                         flag_layer("--input", "input.path", str(window))])


def state(reg):
    return [v["version"] for v in reg.versions()], {a: d["version"] for a, d in reg.aliases().items()}


def test_daily_windows_promote_then_skip_then_refuse(spark, days):
    reg = new_registry(days, "registry")
    text = refresh_registry(spark, refresh_config(reg, days[2]), reg, "v1", False, "log")
    assert "-> promoted" in text, text
    versions, aliases = state(reg)
    assert versions == ["v1", "v2"] and aliases == {"champion": "v2", "challenger": "v2"}
    v2 = reg.versions()[1]
    assert v2["lineage"]["parent"] == "v1" and v2["lineage"]["method"] in ("refresh", "continuation")
    assert v2["lineage"]["window_key"] and v2["metrics"]["test"]["mxe"] > 0
    [marker] = (refresh_dir(reg) / "windows").iterdir()
    record = json.loads(marker.read_text())
    assert set(record["candidates"]) == {"refresh", "continuation"} and record["decision"]["version"] == "v2"
    for c in record["candidates"].values():
        low, high = c["improvement"]["interval"]
        assert low <= c["relative_mxe_improvement"] <= high
    assert record["drift"]["window_ctr"] > 0 and record["drift"]["oov_share"]
    assert record["facts"]["refresh"]["trees"] == 20 and record["window"]["rows"]["test"] == 1_000
    # the refreshed model is the champion's transform with new leaves: the registry can score with it
    assert reg.bundle("champion").transform.uri.endswith("versions/v2/transform")

    again = refresh_registry(spark, refresh_config(reg, days[2]), reg, "v2", False, "log")
    assert "refreshed already" in again and state(reg) == (versions, aliases)

    for window, why in ((days["corrupted"], "malformed"), (days["clickless"], "click rate 0.000%")):
        with pytest.raises(RunFailed, match="champion v2 kept") as err:
            refresh_registry(spark, refresh_config(reg, window), reg, "v2", False, "log")
        assert why in str(err.value)
        assert state(reg) == (versions, aliases)
    refusals = [json.loads(p.read_text()) for p in (refresh_dir(reg) / "decisions").iterdir()]
    assert sorted(r["decision"]["action"] for r in refusals) == ["promote", "refused", "refused"]
    assert len((refresh_dir(reg) / "windows").iterdir()) == 1       # refused windows may be tried again


def test_a_second_refresh_is_refused_and_a_killed_one_changes_nothing(spark, days):
    reg = new_registry(days, "registry-kill")
    before = state(reg)
    args = ["refresh", "--registry", str(reg.root), "--input", str(days[2]), "--master", "local[2]",
            "--set", "spark.driver_memory=1g", *[a for s in PERMISSIVE for a in ("--set", s)]]
    log_path = days["dir"] / "first.err"
    with open(log_path, "w") as err:
        first = subprocess.Popen(cli(*args), cwd=REPO, env=cli_env(), stdout=subprocess.DEVNULL, stderr=err,
                                 start_new_session=True)
    try:
        deadline = time.time() + 300
        while "refreshing the champion's" not in log_path.read_text():
            assert first.poll() is None and time.time() < deadline, log_path.read_text()[-2000:]
            time.sleep(0.5)
        second = subprocess.run(cli(*args), cwd=REPO, env=cli_env(), capture_output=True, text=True, timeout=120)
        assert second.returncode == 0 and "refresh skipped" in second.stdout, second.stderr
        assert f"pid {first.pid}" in second.stdout
    finally:
        os.killpg(first.pid, signal.SIGKILL)
        first.wait()
    assert state(reg) == before and not (refresh_dir(reg) / "windows").exists()
    assert (refresh_dir(reg) / "refresh.lock").exists()            # left by the killed process
    [work] = (refresh_dir(reg) / "work").iterdir()
    sampled = RunDir(work).stage_record("sample")                 # the killed run had drawn the sets
    assert sampled["status"] == "complete"
    cfg = refresh_config(reg, days[2], "refresh.full_retrain=true")   # the rerun also retrains from scratch
    with Lock(refresh_dir(reg) / "refresh.lock", "refresh", heartbeat=0):   # stale: its pid is gone
        text = refresh_registry(spark, cfg, reg, "v1", False, "log")
    assert "-> promoted" in text and state(reg)[0] == ["v1", "v2"]
    assert RunDir(work).stage_record("sample")["token"] == sampled["token"]   # resumed from them, not redrawn
    [marker] = (refresh_dir(reg) / "windows").iterdir()
    record = json.loads(marker.read_text())
    assert set(record["candidates"]) == {"refresh", "continuation", "retrain"}
    assert record["facts"]["retrain"]["trees"] == 20 and record["facts"]["retrain"]["seconds"] > 0
    logs = list((refresh_dir(reg) / "logs").iterdir())
    assert len(logs) == 2 and any("refresh: skipped" in p.read_text() for p in logs)


def test_the_invocation_log_gets_everything_and_the_console_what_it_showed(tmp_path):
    import io
    import logging

    from ctr_pipeline.invocation import invocation_log
    from ctr_pipeline.storage import Location

    logger = logging.getLogger("ctr_pipeline")
    console = logging.StreamHandler(io.StringIO())
    saved = (logger.level, logger.handlers)
    logger.handlers = [console]
    logger.setLevel(logging.WARNING)                                    # as `ctr-pipeline -q` sets it
    try:
        with invocation_log(Location.of(tmp_path / "logs")) as path:
            logging.getLogger("ctr_pipeline.refresh").info("building challengers")
            logging.getLogger("ctr_pipeline.refresh").warning("no validation set")
    finally:
        logger.handlers = saved[1]
        logger.setLevel(saved[0])
    assert console.stream.getvalue() == "no validation set\n"
    text = open(path).read()
    assert "INFO ctr_pipeline.refresh building challengers" in text and "WARNING" in text
    assert console.level == logging.NOTSET
