"""The four stages in-process on the shared local session: outputs, manifest, skip/force/stale rules."""
import json
import logging

import numpy as np
import pytest

from ctr_pipeline.config import build_config, flag_layer, parse_set_option
from ctr_pipeline.errors import ConfigError, StageError
from ctr_pipeline.pipeline import run_stage, run_stages
from ctr_pipeline.runs import STAGES, RunDir
from evaluation.core import auc, mxe
from features.spark_io import read_features

pytestmark = pytest.mark.spark

SETTINGS = ["training.n_estimators=15", "features.categorical_encoding=hash", "features.hash_buckets=1024",
            "evaluation.splits=[validation, test]", "evaluation.segment_by=C9"]


def make_cfg(demo_tsv, *extra):
    return build_config([parse_set_option(s) for s in (*SETTINGS, *extra)]
                        + [flag_layer("--input", "input.path", str(demo_tsv))])


@pytest.fixture(scope="module")
def finished(spark, demo_tsv, tmp_path_factory):
    run = RunDir(tmp_path_factory.mktemp("runs") / "run")
    cfg = make_cfg(demo_tsv)
    records = run_stages(STAGES, cfg, run, lambda: spark)
    return run, cfg, records


def test_all_stages_complete_with_counts(finished):
    run, _, records = finished
    assert all(run.is_complete(s) for s in STAGES)
    splits = records["sample"]["rows"]
    assert sum(splits.values()) == 5_000 and splits["train"] > splits["test"] > 0
    assert records["features"]["rows"] == splits
    assert records["features"]["details"]["vector_width"] == 13 + 1024
    manifest = json.loads(run.manifest_path.read_text())
    assert manifest["stages"]["sample"]["details"]["input"]["rows_read"] == 5_000
    assert manifest["config"]["training"]["n_estimators"] == 15
    assert all(manifest["stages"][s]["seconds"] > 0 for s in STAGES)
    assert not list((run.root / ".staging").iterdir())


def test_splits_are_disjoint_and_keep_row_ids(spark, finished):
    run, _, _ = finished
    ids = {name: {r[0] for r in spark.read.parquet(str(run.path_of("sample") / name)).select("row_id").collect()}
           for name in ("train", "validation", "test")}
    assert not (ids["train"] & ids["test"]) and not (ids["train"] & ids["validation"])
    assert len(ids["train"] | ids["validation"] | ids["test"]) == 5_000


def scored(spark, run, split):
    from pyspark.ml.functions import vector_to_array
    from xgboost.spark import SparkXGBClassifierModel

    model = SparkXGBClassifierModel.load(str(run.path_of("train") / "spark_model"))
    df = read_features(spark, str(run.path_of("features") / split))
    rows = (model.transform(df).select("row_id", "label", "features", vector_to_array("probability")[1].alias("p"))
            .orderBy("row_id").collect())
    return rows


def test_metrics_match_reference_on_collected_predictions(spark, finished):
    run, _, _ = finished
    metrics = json.loads((run.path_of("evaluate") / "metrics.json").read_text())
    for split in ("validation", "test"):
        rows = scored(spark, run, split)
        y = np.array([r["label"] for r in rows])
        p = np.array([r["p"] for r in rows])
        assert metrics[split]["rows"] == len(rows) and metrics[split]["positives"] == int(y.sum())
        assert metrics[split]["mxe"] == pytest.approx(mxe(y, p), abs=1e-9)
        assert metrics[split]["auc"] == pytest.approx(auc(y, p), abs=1e-9)
        assert 0.55 < metrics[split]["auc"] < 1.0


def test_native_booster_round_trip(spark, finished):
    import xgboost as xgb
    from scipy.sparse import csr_matrix

    run, _, _ = finished
    rows = scored(spark, run, "test")
    width = rows[0]["features"].size
    data, indices, indptr = [], [], [0]
    for r in rows:
        v = r["features"].toArray() if not hasattr(r["features"], "indices") else r["features"]
        indices += list(v.indices)
        data += list(v.values)
        indptr.append(len(indices))
    dmat = xgb.DMatrix(csr_matrix((data, indices, indptr), shape=(len(rows), width)), missing=0.0)
    for name in ("booster.ubj", "booster.json"):
        booster = xgb.Booster(model_file=str(run.path_of("train") / name))
        np.testing.assert_allclose(booster.predict(dmat), [r["p"] for r in rows], atol=1e-6)


def test_rerun_skips_finished_stages(spark, finished, caplog):
    run, cfg, records = finished
    with caplog.at_level(logging.INFO, logger="ctr_pipeline"):
        again = run_stages(STAGES, cfg, run, lambda: pytest.fail("no Spark work expected"))
    assert {s: r["token"] for s, r in again.items()} == {s: r["token"] for s, r in records.items()}
    assert "sample: already complete" in caplog.text


def test_changed_settings_need_force(finished, demo_tsv):
    run, _, _ = finished
    with pytest.raises(StageError, match=r"train is already complete .* \(training.max_depth: 6 -> 3\); add --force"):
        run_stage("train", make_cfg(demo_tsv, "training.max_depth=3"), run, lambda: None, force=False)


def test_upstream_missing_is_named(spark, tmp_path, demo_tsv):
    with pytest.raises(StageError, match=r"evaluate needs a complete, current 'features' stage .* 'ctr-pipeline "
                                         r"features --out"):
        run_stage("evaluate", make_cfg(demo_tsv), RunDir(tmp_path / "new"), lambda: spark, force=False)


def test_a_split_file_removed_after_sampling_stops_the_next_stage_unpublished(spark, finished, tmp_path):
    """Rows are never lost silently: with rows of train removed from the run (its first part file cut to
    half), features stops."""
    import pyarrow.parquet as pq

    from ctr_pipeline.errors import StageError

    from .conftest import copy_of_sampled_run

    reference, cfg, records = finished
    copy = copy_of_sampled_run(reference.root.path, tmp_path)
    part = sorted((copy / "splits" / "train").glob("*.parquet"))[0]
    rows = pq.read_table(part)
    pq.write_table(rows.slice(0, rows.num_rows // 2), part)
    run = RunDir(copy)
    want = records["sample"]["rows"]["train"]
    with pytest.raises(StageError, match=f"the sample stage's train split .* holds [0-9,]+ rows, but that stage "
                                         f"recorded writing {want:,}: files of the run directory were removed"):
        run_stage("features", cfg, run, lambda: spark, force=False)
    assert not run.is_complete("features") and not (copy / "features").exists()


def test_vocab_encoding_and_forced_redo_makes_downstream_stale(spark, finished, demo_tsv):
    run, _, records = finished
    cfg = make_cfg(demo_tsv, "features.categorical_encoding=vocab")
    rec = run_stage("features", cfg, run, lambda: spark, force=True)
    assert rec["token"] != records["features"]["token"]
    assert rec["details"]["vector_width"] > 13 + 26              # one-hot vocabularies + unseen slots
    assert not run.is_complete("train") and not run.is_complete("evaluate")
    run_stages(("train", "evaluate"), cfg, run, lambda: spark)
    assert run.is_complete("evaluate")


def test_too_many_workers_fails_before_training(spark, finished, demo_tsv):
    run, _, _ = finished
    with pytest.raises(ConfigError, match="training.num_workers is 3 but Spark has only 2 task slot"):
        run_stage("train", make_cfg(demo_tsv, "training.num_workers=3"), run, lambda: spark, force=True)
    assert not list((run.root / ".staging").iterdir())


@pytest.mark.parametrize("sets, message", [
    (("training.params={max_delta_stp: 1}",),
     r"--set training.params: training.params: XGBoost does not use \"max_delta_stp\""),
    (("training.search_space={subsample: [0.5, 1.5]}",),
     r"training.search_space: candidate \{\"subsample\": 1.5\}: XGBoost refuses them: value 1.5 for Parameter "
     r"subsample exceed bound"),
])
def test_bad_booster_parameters_fail_before_training(spark, finished, demo_tsv, sets, message):
    run, _, _ = finished
    with pytest.raises(ConfigError, match=message):
        run_stage("train", make_cfg(demo_tsv, *sets), run, lambda: spark, force=True)


def test_cuda_without_gpu_fails_clearly(spark, finished, demo_tsv):
    import xgboost

    from training.spark_job import visible_gpus

    if xgboost.build_info().get("USE_CUDA") and visible_gpus():
        pytest.skip("a GPU is visible here: the CUDA path is exercised by the device checks instead")
    run, _, _ = finished
    with pytest.raises(ConfigError, match="training.device is cuda but"):
        run_stage("train", make_cfg(demo_tsv, "training.device=cuda"), run, lambda: spark, force=True)


def test_evaluation_report_embeds_every_plot(finished):
    import base64
    import io
    from html.parser import HTMLParser

    from PIL import Image

    run, _, _ = finished
    ev = run.path_of("evaluate")
    pngs = sorted((ev / "plots").glob("*.png"))
    assert {p.stem for p in pngs} >= {"roc", "precision_recall", "reliability", "learning_curves", "importances",
                                      "importances_by_column"}
    for p in pngs:
        with Image.open(p) as im:
            assert im.size == (640, 480) and im.format == "PNG"

    class Images(HTMLParser):
        def __init__(self):
            super().__init__()
            self.srcs, self.tables = [], 0

        def handle_starttag(self, tag, attrs):
            if tag == "img":
                self.srcs.append(dict(attrs)["src"])
            self.tables += tag == "table"

    parser = Images()
    parser.feed((ev / "report.html").read_text())
    assert len(parser.srcs) == len(pngs) and parser.tables >= 3
    embedded = {base64.b64decode(s.split(",", 1)[1]) for s in parser.srcs if s.startswith("data:image/png;base64,")}
    assert embedded == {p.read_bytes() for p in pngs}
    with Image.open(io.BytesIO(next(iter(embedded)))) as im:
        assert im.size == (640, 480)
    md = (ev / "report.md").read_text()
    assert "| split | model |" in md and "XGBoost vs logistic_regression: MXE improvement" in md
    metrics = json.loads((ev / "metrics.json").read_text())
    boot = metrics["comparison"]["test"]["logistic_regression"]["bootstrap"]
    lo, hi = boot["relative_mxe_improvement"]["interval"]
    assert boot["replicates"] == 200 and lo <= hi
    assert metrics["baselines"]["logistic_regression"]["test"]["rows"] == metrics["test"]["rows"]
    top = metrics["importances"]["top"]
    assert top and all(t["name"] for t in top) and metrics["importances"]["by_column"][0]["share"] > 0
    segments = metrics["test"]["segments"]
    assert sum(seg["rows"] for seg in segments) == metrics["test"]["rows"] and len(segments) >= 2
    assert "Segments by C9" in (ev / "report.html").read_text()
    history = json.loads((run.path_of("train") / "history.json").read_text())
    assert len(history["training"]["logloss"]) == 15


def test_compare_runs_side_by_side(finished, tmp_path):
    from ctr_pipeline.cli import main

    run, _, _ = finished
    out = tmp_path / "cmp.md"
    assert main(["compare", str(run.root), str(run.root), "--out", str(out)]) == 0
    table = json.loads(out.with_suffix(".json").read_text())
    assert len(table) == 2 * 2 * 2      # 2 runs x 2 splits x (XGBoost + logistic regression)
    assert all(r["mxe_vs_first"] == 0.0 for r in table)
    assert out.read_text().startswith("| run | split | model |")
    assert main(["compare", str(tmp_path / "nope")]) == 2


def test_gbdt_leaves_with_logistic_regression_is_reported_beside_the_others(spark, finished, demo_tsv, tmp_path):
    """The gbdt_lr baseline on a copy of the finished run: fit on validation, scored and compared on test
    with the same bootstrap, its settings and the fitting rows in the report's note."""
    import shutil

    reference, _, records = finished
    copy = tmp_path / "run"
    shutil.copytree(reference.root.path, copy)
    run = RunDir(copy)
    cfg = make_cfg(demo_tsv, "evaluation.baselines=[logistic_regression, gbdt_lr]", "evaluation.splits=[test]")
    run_stage("evaluate", cfg, run, lambda: spark, force=True)
    metrics = json.loads((copy / "evaluation" / "metrics.json").read_text())
    hybrid = metrics["baselines"]["gbdt_lr"]["test"]
    assert hybrid["rows"] == metrics["test"]["rows"] and 0.5 < hybrid["auc"] < 1 and hybrid["mxe"] > 0
    settings = metrics["baseline_settings"]["gbdt_lr"]
    trees = json.loads((copy / "model" / "metadata.json").read_text())["trees"]   # the model evaluated
    assert settings["trees"] == trees and settings["fit_rows"] == records["sample"]["rows"]["validation"]
    assert settings["regParam"] in (1e-4, 1e-3, 1e-2, 1e-1, 1.0) and len(settings["grid"]) == 5
    assert "bootstrap" in metrics["comparison"]["test"]["gbdt_lr"]
    report = (copy / "evaluation" / "report.md").read_text()
    assert "GBDT leaves + LR" in report and "XGBoost vs gbdt_lr: MXE improvement" in report
    html = (copy / "evaluation" / "report.html").read_text()
    assert f"of the {settings['validation_rows']:,} validation rows (the trees never saw them)" in html


def test_gbdt_lr_without_a_validation_split_is_a_config_error(demo_tsv):
    from ctr_pipeline.errors import ConfigError

    with pytest.raises(ConfigError, match="gbdt_lr fits its logistic regression on the validation split"):
        make_cfg(demo_tsv, "evaluation.baselines=[gbdt_lr]", "sampling.validation=0", "evaluation.splits=[test]")


def test_shipping_gbdt_lr_and_reporting_it_as_a_baseline_is_a_config_error(demo_tsv):
    with pytest.raises(ConfigError, match="gbdt_lr is the model this run ships"):
        make_cfg(demo_tsv, "training.model=gbdt_lr", "evaluation.baselines=[gbdt_lr]")
    with pytest.raises(ConfigError, match="training.gbdt_lr_share"):
        make_cfg(demo_tsv, "training.model=gbdt_lr", "training.gbdt_lr_share=1.0")


def test_the_evaluate_stage_scores_in_the_driver_as_spark_scores(spark, demo_tsv, finished):
    """The driver's scoring of a local split (read with pyarrow, no Spark job) gives Spark's rows and
    predictions: the model, a logistic regression and a GBDT+LR baseline, and a shipped GBDT+LR."""
    import pandas as pd

    from ctr_pipeline.stage import StageContext
    from evaluation import baselines
    from evaluation import spark_job as ej

    run, _, _ = finished
    cfg = make_cfg(demo_tsv, "evaluation.segment_by=null")
    ctx = StageContext(cfg=cfg, run=run, out=run.path_of("evaluate"), spark=spark)
    raw = (run.path_of("train") / "booster.ubj").read_bytes()
    feats = run.path_of("features")
    train, valid = (read_features(spark, str(feats / s)) for s in ("train", "validation"))
    fitted = {name: baselines.fit(name, cfg, lambda: train, lambda: valid, raw, held=feats)[0]
              for name in ("logistic_regression", "gbdt_lr")}
    for split in ("validation", "test"):
        got = ej.scored_in_driver(ctx, raw, fitted, split).sort_values("row_id").reset_index(drop=True)
        want = ej.scored_split(ctx, raw, fitted, split).toPandas().sort_values("row_id").reset_index(drop=True)
        assert list(got.columns) == ["row_id", "label", "w", "p_xgboost", "p_logistic_regression", "p_gbdt_lr"]
        pd.testing.assert_frame_equal(got, want)
    shipped = fitted["gbdt_lr"]   # a run that ships GBDT+LR scores it as p_xgboost and its trees as p_trees
    got = ej.scored_in_driver(ctx, raw, {}, "test", shipped).sort_values("row_id").reset_index(drop=True)
    want = ej.scored_split(ctx, raw, {}, "test", shipped).toPandas().sort_values("row_id").reset_index(drop=True)
    pd.testing.assert_frame_equal(got, want)
    assert ej.scored_in_driver(StageContext(cfg=make_cfg(demo_tsv), run=run, out=ctx.out, spark=spark), raw, {},
                               "test") is None                       # segments: Spark joins them
