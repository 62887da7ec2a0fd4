"""Training on Spark: retries from checkpoints after an injected failure, kill -9 and --resume, the
cost-aware stopping rule, progress lines, outputs."""
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import cloudpickle
import numpy as np
import pandas as pd
import pytest

from ctr_pipeline.config import build_config, flag_layer, parse_set_option
from ctr_pipeline.pipeline import run_stage, run_stages
from ctr_pipeline.runs import RunDir
from features.spark_io import read_features, vector_width
from training import callbacks as cb
from training import spark_job as tj

from .conftest import REPO, cli_env

pytestmark = pytest.mark.spark

BASE = ["features.categorical_encoding=hash", "features.hash_buckets=512", "evaluation.baselines=[]",
        "evaluation.bootstrap=0", "training.checkpoint_every=5", "training.retry_backoff=0",
        "training.search_space={}", "training.early_stopping_rounds=null"]   # searched and stopped where asked


def make_cfg(demo_tsv, *extra):
    return build_config([parse_set_option(s) for s in (*BASE, *extra)]
                        + [flag_layer("--input", "input.path", str(demo_tsv))])


class FailOnce(cb.PipelineCallback):
    """Raises in the training task at round 12 of the first attempt; a marker file beside the
    checkpoints remembers that it did (instance state does not survive the retry)."""

    def after_iteration(self, model, epoch, evals_log):
        stop = super().after_iteration(model, epoch, evals_log)
        marker = self.store.root.parent / "failed-once"
        if model.num_boosted_rounds() == 12 and not marker.exists():
            marker.touch()
            raise RuntimeError("injected failure: executor lost")
        return stop


class FailAlways(cb.PipelineCallback):
    def after_iteration(self, model, epoch, evals_log):
        if model.num_boosted_rounds() == 12:
            raise RuntimeError("injected failure: executor lost")
        return super().after_iteration(model, epoch, evals_log)


def predictions(spark, run: RunDir, model_dir: Path) -> np.ndarray:
    import xgboost as xgb
    from scipy.sparse import csr_matrix

    rows = read_features(spark, str(run.path_of("features") / "test")).orderBy("row_id").collect()
    width = rows[0]["features"].size
    data, indices, indptr = [], [], [0]
    for r in rows:
        indices += list(r["features"].indices)
        data += list(r["features"].values)
        indptr.append(len(indices))
    booster = xgb.Booster(model_file=str(model_dir / "booster.ubj"))
    return booster.predict(xgb.DMatrix(csr_matrix((data, indices, indptr), shape=(len(rows), width)), missing=0.0))


@pytest.fixture(scope="module")
def prepared(spark, demo_tsv, tmp_path_factory):
    """A run with finished sample and features stages, and an uninterrupted training as the reference."""
    root = tmp_path_factory.mktemp("train")
    run = RunDir(root / "base")
    cfg = make_cfg(demo_tsv, "training.n_estimators=30")
    run_stages(("sample", "features", "train"), cfg, run, lambda: spark)
    return run, cfg, predictions(spark, run, run.path_of("train"))


def copy_upstream(run: RunDir, dest: Path) -> RunDir:
    shutil.copytree(run.root, dest, ignore=shutil.ignore_patterns("checkpoints", "model"))
    manifest = json.loads((dest / "manifest.json").read_text())
    manifest["stages"].pop("train", None)
    (dest / "manifest.json").write_text(json.dumps(manifest))
    return RunDir(dest)


def test_outputs_history_and_metadata(prepared):
    run, _, _ = prepared
    model = run.path_of("train")
    history = json.loads((model / "history.json").read_text())
    assert len(history["training"]["logloss"]) == 30
    meta = json.loads((model / "metadata.json").read_text())
    assert meta["trees"] == 30 and meta["params"]["n_estimators"] == 30 and meta["feature_map_sha256"]
    assert meta["versions"]["xgboost"].startswith("3.2") and meta["data"]["rows"]["train"] > 0
    assert sorted(p.name for p in (run.root / "checkpoints" / "train").iterdir()) == [
        f"round-{r:06d}.ubj" for r in (5, 10, 15, 20, 25)]


def test_driver_engine_trains_what_xgboost_trains_on_the_same_rows(spark, prepared):
    """On a local master the default engine trains in the driver: the model is xgboost.train's on train's
    rows in row_id order, with the stage's parameters on 2 threads."""
    import xgboost as xgb
    from scipy.sparse import csr_matrix

    from training.core import booster_params

    run, _, reference = prepared
    meta = json.loads((run.path_of("train") / "metadata.json").read_text())
    assert meta["engine"] == {"setting": "auto", "ran": "driver", "threads": 2}
    rows = read_features(spark, str(run.path_of("features") / "train")).orderBy("row_id").collect()
    indptr = np.cumsum([0] + [len(r["features"].indices) for r in rows])
    x = csr_matrix((np.concatenate([r["features"].values for r in rows]),
                    np.concatenate([r["features"].indices for r in rows]), indptr),
                   shape=(len(rows), rows[0]["features"].size))
    booster = xgb.train({**booster_params(meta["params"]), "nthread": 2},
                        xgb.DMatrix(x, label=[r["label"] for r in rows], missing=0.0), 30)
    scratch = run.root.parent / "plain"
    scratch.mkdir(exist_ok=True)
    booster.save_model(str(scratch / "booster.ubj"))
    np.testing.assert_allclose(predictions(spark, run, scratch), reference, rtol=0, atol=1e-6)


@pytest.mark.parametrize("engine", ["driver", "spark"])
def test_injected_failure_is_retried_from_the_checkpoint(spark, prepared, tmp_path, monkeypatch, caplog, engine):
    run, cfg, reference = prepared
    if engine == "spark":   # xgboost.spark's 2 workers grow another model than the driver: its own reference
        cfg = make_cfg(cfg.input.path, "training.n_estimators=30", "training.engine=spark")
        uninterrupted = copy_upstream(run, tmp_path / "reference")
        run_stage("train", cfg, uninterrupted, lambda: spark, force=False)
        reference = predictions(spark, uninterrupted, uninterrupted.path_of("train"))
    again = copy_upstream(run, tmp_path / "retry")
    cloudpickle.register_pickle_by_value(sys.modules[__name__])
    monkeypatch.setattr(tj, "PipelineCallback", FailOnce)
    with caplog.at_level("WARNING", logger="ctr_pipeline"):
        run_stage("train", cfg, again, lambda: spark, force=False)
    assert (again.root / "checkpoints" / "failed-once").exists()
    assert "attempt 1 of 3 failed" in caplog.text
    # Spark reports the first barrier task to fail: the one that raised, or its peer whose collective
    # call broke when the other left (XGBoost's result.cc error); either is the reason for attempt 1.
    assert "injected failure" in caplog.text or "collective" in caplog.text
    history = json.loads((again.path_of("train") / "history.json").read_text())
    assert len(history["training"]["logloss"]) == 30                  # rounds 1-10 from the checkpoint
    np.testing.assert_allclose(predictions(spark, again, again.path_of("train")), reference, rtol=0, atol=1e-6)


def test_early_stopping_patience_survives_a_retry(spark, prepared, tmp_path, monkeypatch):
    """The best round comes before the checkpoint the retry resumes from (10) and the stop after the failure
    (12): a retry that restarted the patience count would stop later than the uninterrupted run."""
    run, base, _ = prepared
    cfg = make_cfg(base.input.path, "training.n_estimators=200", "training.learning_rate=0.7",
                   "training.early_stopping_rounds=10", "training.tree_method=approx")  # approx stays supported
    reference = copy_upstream(run, tmp_path / "reference")
    rec = run_stage("train", cfg, reference, lambda: spark, force=False)
    assert rec["details"]["params"]["tree_method"] == "approx"
    best = rec["details"]["best_iteration"]
    assert best < 10 and rec["details"]["trees"] == best + 1     # stops at round best + 11 > 12
    again = copy_upstream(run, tmp_path / "retry")
    cloudpickle.register_pickle_by_value(sys.modules[__name__])
    monkeypatch.setattr(tj, "PipelineCallback", FailOnce)
    again_rec = run_stage("train", cfg, again, lambda: spark, force=False)
    assert (again.root / "checkpoints" / "failed-once").exists()
    history = [json.loads((r.path_of("train") / "history.json").read_text()) for r in (reference, again)]
    assert len(history[0]["validation"]["logloss"]) == best + 11
    np.testing.assert_allclose(history[1]["validation"]["logloss"], history[0]["validation"]["logloss"], atol=1e-9)
    assert again_rec["details"]["best_iteration"] == best
    np.testing.assert_allclose(predictions(spark, again, again.path_of("train")),
                               predictions(spark, reference, reference.path_of("train")), rtol=0, atol=1e-6)


def test_failures_beyond_the_retries_are_one_clear_error(spark, prepared, tmp_path, monkeypatch):
    from ctr_pipeline.errors import StageError

    run, cfg, _ = prepared
    again = copy_upstream(run, tmp_path / "fail")
    cloudpickle.register_pickle_by_value(sys.modules[__name__])
    monkeypatch.setattr(tj, "PipelineCallback", FailAlways)
    cfg1 = make_cfg(cfg.input.path, "training.n_estimators=30", "training.retries=1")
    with pytest.raises(StageError, match=r"training failed in all 2 attempt\(s\); .* --resume"):
        run_stage("train", cfg1, again, lambda: spark, force=False)


def test_cost_aware_rule_stops_and_keeps_the_best_trees(spark, prepared, tmp_path):
    run, _, _ = prepared
    again = copy_upstream(run, tmp_path / "gain")
    cfg = build_config([parse_set_option(s) for s in (*BASE, "training.n_estimators=200", "training.learning_rate=0.3",
                                                           "training.min_relative_gain=0.002",
                                                           "training.gain_window=5")])
    rec = run_stage("train", cfg, again, lambda: spark, force=False)
    history = json.loads((again.path_of("train") / "history.json").read_text())
    valid = history["validation"]["logloss"]
    assert len(valid) < 200                                            # stopped by the rule
    best = int(np.argmin(valid))
    assert rec["details"]["best_iteration"] == best
    assert rec["details"]["trees"] == best + 1                          # only the trees up to the best round
    import xgboost as xgb

    assert xgb.Booster(model_file=str(again.path_of("train") / "booster.ubj")).num_boosted_rounds() == best + 1


@pytest.mark.parametrize("engine", ["driver", "spark"])
def test_early_stopping_from_the_leaves_matches_xgboosts_own_evaluation(spark, prepared, tmp_path, monkeypatch, engine):
    """The validation log computed from the leaves every 10 rounds stops at the round XGBoost's evaluation of
    every round stops at (7 rounds of patience: not a multiple of 10), with the same log and model; in the
    driver and on xgboost.spark's workers."""
    run, base, _ = prepared
    cfg = make_cfg(base.input.path, "training.n_estimators=200", "training.learning_rate=0.6",
                   "training.early_stopping_rounds=7", "training.stopping_rows=400", f"training.engine={engine}")
    runs = {}
    supported = tj.heldout.supported
    for by in ("leaves", "xgboost"):
        monkeypatch.setattr(tj.heldout, "supported", supported if by == "leaves" else lambda params: False)
        runs[by] = copy_upstream(run, tmp_path / by)
        rec = run_stage("train", cfg, runs[by], lambda: spark, force=False)
        meta = json.loads((runs[by].path_of("train") / "metadata.json").read_text())
        assert meta["stopping"]["evaluated_by"] == by and meta["stopping"]["validation_rows"] == 400
        assert meta["engine"] == {"setting": engine, "ran": engine, "threads": 2 if engine == "driver" else None}
        assert meta["trees"] == rec["details"]["best_iteration"] + 1 < 200
    history = {by: json.loads((r.path_of("train") / "history.json").read_text()) for by, r in runs.items()}
    ours, theirs = history["leaves"]["validation"]["logloss"], history["xgboost"]["validation"]["logloss"]
    assert len(ours) == len(theirs) and (len(ours) - 1) % 10 != 9 and len(history["leaves"]["training"]["logloss"]) == len(ours)
    np.testing.assert_allclose(ours, theirs, rtol=1e-5)
    np.testing.assert_allclose(predictions(spark, runs["leaves"], runs["leaves"].path_of("train")),
                               predictions(spark, runs["xgboost"], runs["xgboost"].path_of("train")), rtol=0, atol=1e-6)


def test_kill_9_then_resume_gives_the_uninterrupted_model(spark, prepared, tmp_path):
    """A real training process killed with SIGKILL mid-way; `train --resume` ends with the same model."""
    run, _, _ = prepared
    killed = copy_upstream(run, tmp_path / "killed")
    sets = [a for s in (*BASE, "training.n_estimators=300", "training.max_depth=8", "training.progress_every=5")
            for a in ("--set", s)]
    cmd = [str(Path(sys.executable).parent / "ctr-pipeline"), "train", "--out", str(killed.root), *sets,
           "--set", "spark.master=local[2]", "--set", "spark.driver_memory=1g"]
    proc = subprocess.Popen(cmd, cwd=REPO, env=cli_env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            start_new_session=True)
    ckpt = killed.root / "checkpoints" / "train"
    deadline = time.monotonic() + 300
    while time.monotonic() < deadline and proc.poll() is None:
        done = [p for p in ckpt.glob("round-*.ubj")] if ckpt.is_dir() else []
        if any(int(p.stem.split("-")[1]) >= 20 for p in done):
            os.killpg(proc.pid, signal.SIGKILL)
            break
        time.sleep(0.05)
    proc.wait(timeout=60)
    assert proc.returncode == -signal.SIGKILL, proc.stderr.read().decode()[-2000:]
    assert not killed.is_complete("train")
    resumed = subprocess.run(cmd + ["--resume"], cwd=REPO, env=cli_env(), capture_output=True, text=True, timeout=600)
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert "resuming from the checkpoint with" in resumed.stderr
    assert "train: round 300/300" in resumed.stderr
    reference_run = copy_upstream(run, tmp_path / "reference")
    cfg = build_config([parse_set_option(s) for s in (*BASE, "training.n_estimators=300", "training.max_depth=8")])
    run_stage("train", cfg, reference_run, lambda: spark, force=False)
    np.testing.assert_allclose(predictions(spark, killed, killed.path_of("train")),
                               predictions(spark, reference_run, reference_run.path_of("train")), rtol=0, atol=1e-6)


# ---------------------------------------------------------------------------------------------- search

def test_cv_folds_reproducible_and_disjoint(spark, prepared):
    from features.hashing import fold_of
    from training.cv import FOLD, with_folds

    run, _, _ = prepared
    train = read_features(spark, str(run.path_of("features") / "train"))
    a = {r["row_id"]: r[FOLD] for r in with_folds(train, 3, 5).select("row_id", FOLD).collect()}
    b = {r["row_id"]: r[FOLD] for r in with_folds(train.repartition(5), 3, 5).select("row_id", FOLD).collect()}
    assert a == b and set(a.values()) == {0, 1, 2}                      # every row in exactly one fold
    ids = np.array(sorted(a))
    assert [a[i] for i in ids] == fold_of(ids, 3, 5).tolist()


def test_search_persists_results_and_resumes_without_redoing_them(spark, prepared, tmp_path):
    from xgboost.spark import SparkXGBClassifier

    from training.cv import run_search

    run, cfg, _ = prepared
    train = read_features(spark, str(run.path_of("features") / "train"))
    t = make_cfg(cfg.input.path, "training.search_space={max_depth: [2, 4]}", "training.search_folds=2",
                 "training.n_estimators=5").training
    calls = []

    def fit(params, df):
        calls.append(params["max_depth"])
        return SparkXGBClassifier(**{k: v for k, v in params.items()}).fit(df)

    base = {"features_col": "features", "label_col": "label", "n_estimators": 5, "enable_sparse_data_optim": True,
            "missing": 0.0, "num_workers": 1}
    table = run_search(t, base, train, tmp_path / "cv", fit)
    assert sorted(calls) == [2, 2, 4, 4] and len(list((tmp_path / "cv").glob("*.json"))) == 4
    assert table["folds"].tolist() == [2, 2] and table["mxe_mean"].is_monotonic_increasing
    victim = sorted((tmp_path / "cv").glob("*.json"))[0]
    victim.unlink()                                                     # as if the search crashed before it
    calls.clear()
    again = run_search(t, base, train, tmp_path / "cv", fit)
    assert len(calls) == 1
    np.testing.assert_allclose(again["mxe_mean"], table["mxe_mean"], rtol=0, atol=1e-9)


def test_stage_search_picks_the_best_candidate_and_refits(spark, prepared, tmp_path):
    run, _, _ = prepared
    again = copy_upstream(run, tmp_path / "search")
    cfg = build_config([parse_set_option(s) for s in (
        *BASE, "training.n_estimators=8", "training.search_space={max_depth: [1, 5]}", "training.search_folds=2",
        "training.search_budget=null",
        "training.early_stopping_rounds=3")])
    rec = run_stage("train", cfg, again, lambda: spark, force=False)
    model = again.path_of("train")
    import pandas as pd

    table = pd.read_csv(model / "cv_results.tsv", sep="\t")
    assert len(table) == 3 and (table["folds"] == 2).all()            # max_depth 1, 5 and the configured 6
    from training.search import choose

    best, why = choose(table, {"max_depth": 6})                        # the configured values unless beaten
    meta = json.loads((model / "metadata.json").read_text())
    assert meta["search"]["best"] == best and meta["search"]["why"] == why and meta["cv_table"] == "cv_results.tsv"
    assert rec["details"]["params"]["max_depth"] == best["max_depth"]


def test_sampled_search_runs_one_task_per_candidate_and_fold_and_resumes(spark, prepared, tmp_path):
    """The default search: an exact sample of search_rows train rows, one Spark task per (candidate, fold),
    early stopping in each fold; a rerun after losing one result trains only that one, to the same table."""
    from training.core import estimator_params
    from training.cv import run_sampled_search

    run, cfg, _ = prepared
    train = read_features(spark, str(run.path_of("features") / "train"))
    c = make_cfg(cfg.input.path, "training.search_space={max_depth: [2, 4, 6], learning_rate: [0.3, 0.9]}",
                 "training.search_candidates=3", "training.search_rows=1500", "training.n_estimators=40")
    base = {k: v for k, v in estimator_params(c).items() if k != "validation_indicator_col"}
    table, info = run_sampled_search(c.training, base, train, tmp_path / "cv", 5, "test")
    assert (info["rows"], info["train_rows"], info["tasks_run"]) == (1500, train.count(), 12)  # 3 + configured
    records = [json.loads(p.read_text()) for p in sorted((tmp_path / "cv").glob("*.json"))]
    assert len(records) == 12 and sum(r["rows"] for r in records) == 4 * 1500         # each fold held out once
    assert all(1 <= r["trees"] <= 40 for r in records) and any(r["trees"] < 40 for r in records)
    assert {"learning_rate": 0.1, "max_depth": 6} in [json.loads(p) for p in table["params"]]
    assert len(table) == 4 and table["mxe_mean"].is_monotonic_increasing and "trees_mean" in table
    sorted((tmp_path / "cv").glob("*.json"))[4].unlink()
    again, info2 = run_sampled_search(c.training, base, train, tmp_path / "cv", 5, "test")
    assert info2["tasks_run"] == 1
    np.testing.assert_allclose(again["mxe_mean"], table["mxe_mean"], rtol=0, atol=1e-12)
    shuffled, _ = run_sampled_search(c.training, base, train.repartition(7), tmp_path / "cv2", 5, "test")
    assert shuffled.equals(table)                          # the rows' partitioning and order do not matter
    from training import driver_fit                        # the driver engine samples the rows it holds
    held = driver_fit.load(run.path_of("features") / "train", vector_width(train), False, 2)
    in_driver, info3 = run_sampled_search(c.training, base, train, tmp_path / "cv3", 5, "test",
                                          held=(held.x, held.columns()))
    assert in_driver.equals(table) and info3["rows"] == 1500 and info3["tasks_run"] == 12



def test_driver_search_keeps_each_finished_fit_when_one_fails_and_says_how_far_it_is(spark, prepared, tmp_path,
                                                                                      monkeypatch, caplog):
    """The driver engine's search records each (candidate, fold) as it finishes: when a fit fails, those done
    and those running beside it are kept (the rest are not started), and the rerun trains only what is
    missing, to the same table; a progress line every ``every`` seconds says how many fits are done."""
    import logging

    from training import cv, driver_fit
    from training.core import estimator_params

    run, cfg, _ = prepared
    train = read_features(spark, str(run.path_of("features") / "train"))
    c = make_cfg(cfg.input.path, "training.search_space={max_depth: [2, 4]}", "training.search_rows=1200",
                 "training.n_estimators=10")
    base = {k: v for k, v in estimator_params(c).items() if k != "validation_indicator_col"}
    rows = driver_fit.load(run.path_of("features") / "train", vector_width(train), False, 2)
    held = (rows.x, rows.columns())
    reference, _ = cv.run_sampled_search(c.training, base, train, tmp_path / "ref", None, "test", held=held)
    fit = cv.fold_result

    def failing(x, y, w, folds, fold, params, *rest):
        if params["max_depth"] == 4 and fold == 1:
            raise RuntimeError("injected")
        return fit(x, y, w, folds, fold, params, *rest)

    monkeypatch.setattr(cv, "fold_result", failing)
    with pytest.raises(RuntimeError, match="injected"):
        cv.run_sampled_search(c.training, base, train, tmp_path / "cv", None, "test", held=held)
    kept = list((tmp_path / "cv").glob("*.json"))
    # deepest first: the three max_depth 6 fits and max_depth 4's fold 0 started before the failing one
    assert len(kept) >= 4 and not [p for p in kept if json.loads(p.read_text())["params"] == {"max_depth": 4}
                                   and json.loads(p.read_text())["fold"] == 1]
    monkeypatch.setattr(cv, "fold_result", fit)
    again, info = cv.run_sampled_search(c.training, base, train, tmp_path / "cv", None, "test", held=held)
    assert info["tasks_run"] == 9 - len(kept) and again.equals(reference)
    with caplog.at_level(logging.INFO, logger="ctr_pipeline.training"):
        cv.run_sampled_search(c.training, base, train, tmp_path / "cv2", None, "test", held=held, every=0.0)
    lines = [r.getMessage() for r in caplog.records if "fits done" in r.getMessage()]
    assert [line.split(", ")[0] for line in lines] == [f"train: search: {i} of 9 fits done" for i in range(1, 9)]



def test_a_local_run_of_driver_engines_starts_no_jvm(spark, demo_tsv, tmp_path, monkeypatch):
    """On a local master and run directory all four stages work in the driver (sampling, features, the
    search, training with early stopping, the LR baseline, the bootstrap, scoring) and the session is never
    started and no Spark job runs on the session this process already has (pyspark's writers would use it):
    no JVM. The model/spark_model/ they write without Spark loads in Spark and scores as the booster."""
    import xgboost as xgb
    from pyspark.ml.functions import vector_to_array
    from pyspark.sql import SparkSession
    from xgboost.spark import SparkXGBClassifierModel

    from ctr_pipeline.spark import LazySession

    def no_jvm():
        raise AssertionError("a stage started the Spark session")

    cfg = make_cfg(demo_tsv, "features.categorical_encoding=vocab", "training.n_estimators=12",
                   "training.search_space={max_depth: [2, 3]}", "training.search_rows=1000",
                   "training.search_budget=null", "training.early_stopping_rounds=3",
                   "evaluation.baselines=[logistic_regression]", "evaluation.bootstrap=20",
                   "evaluation.segment_by=null")
    run = RunDir(tmp_path / "run")
    session = LazySession(no_jvm, cfg.spark)
    monkeypatch.setattr(SparkSession.Builder, "getOrCreate", lambda self: no_jvm())   # as xgboost.spark asks
    tracker = spark.sparkContext.statusTracker()

    def last_job() -> int:
        return max(tracker.getJobIdsForGroup(None) or [-1])

    before = last_job()
    records = run_stages(("sample", "features", "train", "evaluate"), cfg, run, session)
    monkeypatch.undo()
    assert last_job() == before
    assert session.started is None and records["evaluate"]["details"]["metrics"]["test"]["rows"] > 0
    train = records["train"]["details"]
    assert train["engine"] == "driver" and train["search"]["candidates"] == 3 and train["best_iteration"] is not None
    assert records["sample"]["details"]["engine"] == records["features"]["details"]["engine"]["ran"] == "driver"
    model = SparkXGBClassifierModel.load(str(run.path_of("train") / "spark_model"))
    df = read_features(spark, str(run.path_of("features") / "test")).orderBy("row_id").limit(50)
    got = np.array([r[0] for r in model.transform(df).select(vector_to_array("probability")[1]).collect()])
    booster = xgb.Booster(model_file=str(run.path_of("train") / "booster.ubj"))
    assert model.get_booster().num_boosted_rounds() == booster.num_boosted_rounds()
    assert got == pytest.approx(predictions(spark, run, run.path_of("train"))[:50], abs=1e-6)


def test_the_spark_model_written_without_spark_is_the_spark_writers(spark, prepared, tmp_path):
    """driver_fit.save_spark_model writes the files xgboost.spark's own writer writes (the metadata differs
    only in its timestamp), and a model that still holds a starting booster is refused."""
    from xgboost.spark import SparkXGBClassifierModel

    from ctr_pipeline.storage import Location
    from training import driver_fit

    run, _, _ = prepared
    model = SparkXGBClassifierModel.load(str(run.path_of("train") / "spark_model"))
    model.write().save(str(tmp_path / "by_spark"))
    driver_fit.save_spark_model(model, Location.of(tmp_path / "ours"))
    for part in ("metadata", "model"):
        assert sorted(p.name for p in (tmp_path / "ours" / part).iterdir()) == ["_SUCCESS", "part-00000"]
        assert (tmp_path / "ours" / part / "_SUCCESS").read_bytes() == b""
    ours, theirs = (json.loads((tmp_path / d / "metadata" / "part-00000").read_text()) for d in ("ours", "by_spark"))
    assert ours.pop("timestamp") > 0 and theirs.pop("timestamp") > 0 and ours == theirs
    assert (tmp_path / "ours" / "model" / "part-00000").read_bytes() == \
        (tmp_path / "by_spark" / "model" / "part-00000").read_bytes()
    model.set(model.getParam("xgb_model"), model.get_booster())
    with pytest.raises(ValueError, match="clear xgb_model"):
        driver_fit.save_spark_model(model, Location.of(tmp_path / "refused"))


def test_default_search_within_its_budget_then_early_stopping_on_a_validation_sample(spark, prepared, tmp_path):
    """The default space searched on a sample, as many candidates as the budget pays for (the configured
    values first), the chosen one refit on all of train with early stopping (a default) on an exact sample
    of validation; the summary says what was searched and what was chosen. With the default budget this
    small train split is not searched at all, and the summary says why."""
    from training.search import RECOMMENDED_SPACE, search_candidates

    run, _, _ = prepared
    train_rows = run.stage_record("features")["rows"]["train"]
    budget = (3 * 2 * 2000 + 1) / train_rows                 # pays for 3 candidates of 2 folds x 2,000 rows
    sets = (*BASE[:4], "training.search_rows=2000", "training.learning_rate=0.5", "training.stopping_rows=300")
    again = copy_upstream(run, tmp_path / "default")
    cfg = build_config([parse_set_option(s) for s in (*sets, f"training.search_budget={budget!r}")])
    rec = run_stage("train", cfg, again, lambda: spark, force=False)
    meta = json.loads((again.path_of("train") / "metadata.json").read_text())
    search = meta["search"]
    assert search["engine"] == "sampled" and search["rows"] == 2000 and search["candidates"] == 3
    assert search["afforded"] == 3 and search["drawn"] == 6 and search["tasks_run"] == 9
    table = pd.read_csv(again.path_of("train") / "cv_results.tsv", sep="\t")
    drawn = search_candidates(cfg.training, {"max_depth": 6, "learning_rate": 0.5})
    assert sorted(table["params"]) == sorted(json.dumps(c, sort_keys=True) for c in drawn[:3])
    assert search["space"] == RECOMMENDED_SPACE and set(search["best"]) == set(RECOMMENDED_SPACE)
    assert all(rec["details"]["params"][k] == v for k, v in search["best"].items())
    assert meta["stopping"] == {"early_stopping_rounds": 20, "validation_rows": 300, "min_relative_gain": None,
                                "evaluated_by": "leaves",
                                "gain_window": 20} and meta["best_iteration"] is not None
    assert meta["data"]["rows"]["validation"] == rec["rows"]["validation"] > 300     # all read, 300 evaluated
    assert any(line.startswith("search: 3 candidates (random) x 3 folds on an exact sample of 2,000 of ")
               for line in rec["summary"])
    skipped = copy_upstream(run, tmp_path / "skipped")
    rec = run_stage("train", build_config([parse_set_option(s) for s in sets]), skipped, lambda: spark, force=False)
    meta = json.loads((skipped.path_of("train") / "metadata.json").read_text())
    assert meta["search"]["skipped"] and "cv_table" not in meta and rec["details"]["params"]["max_depth"] == 6
    assert f"search: skipped: training.search_budget 0.25 x {train_rows:,} train rows pays for 0 of 6 " \
           "candidates" in rec["summary"][-1]


def test_validation_as_dmatrix_swaps_xgboost_sparks_choice_only_while_fitting():
    import xgboost.spark.core as xgb_spark

    original = xgb_spark._can_use_qdm
    assert original("hist", "cpu") is True
    with tj.validation_as_dmatrix(True):
        assert xgb_spark._can_use_qdm is tj.plain_dmatrix and not xgb_spark._can_use_qdm("hist", "cpu")
    assert xgb_spark._can_use_qdm is original
    with tj.validation_as_dmatrix(False):
        assert xgb_spark._can_use_qdm is original


def test_weighted_rows_train_in_the_driver_as_xgboost_trains_them(spark, tmp_path):
    """``features.weight`` end to end on the driver engine: the model equals xgboost.train's with the same
    rows, labels and weights, and the validation log (from the leaves) is the weighted log loss."""
    import xgboost as xgb
    from scipy.sparse import csr_matrix

    from training.core import booster_params

    rng = np.random.default_rng(5)
    n = 3000
    c1 = rng.choice(list("abcdef"), n)
    n1 = rng.normal(size=n).round(3)
    p = 1 / (1 + np.exp(-(n1 + (c1 == "a") * 1.5 - 1.0)))
    pd.DataFrame({"label": (rng.random(n) < p).astype(int), "w": rng.integers(1, 5, n).astype(float), "n1": n1,
                  "c1": c1}).to_csv(tmp_path / "w.csv", index=False)
    cfg = build_config([parse_set_option(s) for s in (
        "input.format=csv", "input.numeric=[n1, w]", "input.categorical=[c1]", "features.weight=w",
        "features.time_features=[]", "evaluation.baselines=[]", "evaluation.bootstrap=0",
        "training.search_space={}", "training.n_estimators=15", "training.early_stopping_rounds=50",
        "training.stopping_rows=0")] + [flag_layer("--input", "input.path", str(tmp_path / "w.csv"))])
    run = RunDir(tmp_path / "run")
    run_stages(("sample", "features", "train"), cfg, run, lambda: spark)
    meta = json.loads((run.path_of("train") / "metadata.json").read_text())
    assert meta["engine"]["ran"] == "driver" and meta["params"]["weight_col"] == "weight"

    def rows(split):
        got = read_features(spark, str(run.path_of("features") / split)).orderBy("row_id").collect()
        indptr = np.cumsum([0] + [len(r["features"].indices) for r in got])
        x = csr_matrix((np.concatenate([r["features"].values for r in got]),
                        np.concatenate([r["features"].indices for r in got]), indptr),
                       shape=(len(got), got[0]["features"].size))
        return x, np.array([r["label"] for r in got]), np.array([r["weight"] for r in got])

    x, y, w = rows("train")
    assert len(set(w)) == 4
    reference = xgb.train({**booster_params(meta["params"]), "nthread": 2},
                          xgb.DMatrix(x, label=y, weight=w, missing=0.0), 15)
    vx, vy, vw = rows("validation")
    ours = xgb.Booster(model_file=str(run.path_of("train") / "booster.ubj"))
    np.testing.assert_allclose(ours.predict(xgb.DMatrix(vx, missing=0.0)),
                               reference.predict(xgb.DMatrix(vx, missing=0.0)), rtol=0, atol=1e-6)
    history = json.loads((run.path_of("train") / "history.json").read_text())
    p_last = reference.predict(xgb.DMatrix(vx, missing=0.0))
    weighted = -np.average(vy * np.log(p_last) + (1 - vy) * np.log(1 - p_last), weights=vw)
    assert history["validation"]["logloss"][-1] == pytest.approx(weighted, rel=1e-5)
