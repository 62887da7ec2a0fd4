"""Batch scoring: the evaluate stage's predictions, recalibration, quarantine, drift, the command line."""
import gzip
import json

import numpy as np
import pytest

from ctr_pipeline.config import Layer, build_config, flag_layer, parse_set_option
from ctr_pipeline.pipeline import run_stages
from ctr_pipeline.registry.bundle import from_run, resolve
from ctr_pipeline.registry.store import Registry
from ctr_pipeline.runs import STAGES, RunDir
from ctr_pipeline.storage import Location
from evaluation.scoring import REPORT, prepare_output, publish, score
from features.spark_io import read_features

from .conftest import REPO, cli, cli_env

pytestmark = pytest.mark.spark

SETTINGS = ["training.n_estimators=10", "evaluation.baselines=[]", "evaluation.bootstrap=0",
            "sampling.stratify_by=label", "sampling.strata_rates={'0': 0.5}", "features.min_count=3"]


@pytest.fixture(scope="module")
def trained(spark, demo_tsv, tmp_path_factory):
    """A finished run on negative-downsampled train (so scores are recalibrated), and a registry with it."""
    base = tmp_path_factory.mktemp("scoring")
    run = RunDir(base / "run")
    cfg = build_config([parse_set_option(s) for s in SETTINGS] + [flag_layer("--input", "input.path", str(demo_tsv))])
    run_stages(STAGES, cfg, run, lambda: spark)
    reg = Registry.open(str(base / "registry"), create=True)
    reg.promote(reg.register(from_run(run.root)))
    return run, reg, base


def scoring_config(bundle, path, *sets):
    return build_config([Layer("model", bundle.config), *[parse_set_option(s) for s in sets],
                         flag_layer("--input", "input.path", str(path))])


def evaluate_predictions(spark, run, split):
    """The evaluate stage's own way of scoring a split: the Spark model on the split's features."""
    from pyspark.ml.functions import vector_to_array
    from xgboost.spark import SparkXGBClassifierModel

    model = SparkXGBClassifierModel.load(str(run.path_of("train") / "spark_model"))
    df = read_features(spark, str(run.path_of("features") / split))
    return {r["row_id"]: r["p"] for r in
            model.transform(df).select("row_id", vector_to_array("probability")[1].alias("p")).collect()}


def test_scores_equal_the_evaluate_stage_and_are_recalibrated(spark, trained, demo_tsv, tmp_path):
    run, reg, _ = trained
    bundle = resolve(f"{reg.root}@champion")
    cfg = scoring_config(bundle, demo_tsv)
    out = Location.of(tmp_path / "scores")
    doc = score(spark, bundle, cfg, out)
    got = {r["row_id"]: r for r in spark.read.parquet(str(out / "predictions")).collect()}
    assert len(got) == doc["rows_scored"] == 5_000 and doc["input"]["rows_quarantined"] == 0
    for split in ("validation", "test"):
        want = evaluate_predictions(spark, run, split)
        ids = sorted(want)
        diff = np.abs(np.array([got[i]["p_ctr"] for i in ids]) - np.array([want[i] for i in ids]))
        assert diff.max() <= 1e-6, f"{split}: scores differ from evaluate by up to {diff.max()}"
    p = np.array([r["p_ctr"] for r in got.values()])
    recal = np.array([r["p_ctr_recalibrated"] for r in got.values()])
    assert doc["negative_rate"] == 0.5
    np.testing.assert_allclose(recal, p / (p + (1 - p) / 0.5), rtol=1e-12)
    assert recal.mean() < p.mean()                 # negatives were halved in train: true CTR is lower
    assert doc["mean_prediction"] == pytest.approx(p.mean(), rel=1e-9)
    labels = np.array([r["label"] for r in got.values()])
    assert doc["rows_with_label"] == 5_000 and doc["observed_ctr"] == pytest.approx(labels.mean())
    assert 0 < doc["metrics"]["mxe"] < 1 and 0.5 < doc["metrics"]["auc"] <= 1
    assert doc["model_info"]["version"] == "v1" and doc["model_info"]["lineage"]["method"] == "full_train"


def test_drift_is_the_out_of_vocabulary_share_and_bad_rows_are_quarantined(spark, trained, demo_tsv, tmp_path):
    run, _, _ = trained
    bundle = from_run(run.root)
    lines = gzip.open(demo_tsv, "rt").read().splitlines()[:300]
    fields = [line.split("\t") for line in lines]
    for f in fields[:100]:
        f[16] = "never-seen-value"          # C3 (fields: label, I1-I13, C1-C26) of the first 100 rows
    bad = ["1\tnot\tenough\tfields", "0\tabc" + "\t" * 38]
    path = tmp_path / "new_window.tsv"
    path.write_text("\n".join(["\t".join(f) for f in fields] + bad) + "\n")
    cfg = scoring_config(bundle, path)
    out = Location.of(tmp_path / "scores")
    doc = score(spark, bundle, cfg, out)
    assert doc["input"]["rows_read"] == 302 and doc["input"]["rows_quarantined"] == 2 and doc["rows_scored"] == 300
    quarantined = spark.read.json(str(out / "quarantine")).collect()
    assert {r["line"] for r in quarantined} == {301, 302}
    c3 = doc["vocabulary_drift"]["C3"]
    values = [f[16] for f in fields]
    from features.state import FittedTransform

    known = set(FittedTransform.load(bundle.transform).vocab["C3"])
    present = [v for v in values if v]
    assert c3["rows_with_value"] == len(present)
    assert c3["out_of_vocabulary"] == sum(v not in known for v in present) >= 100
    assert c3["oov_share"] == pytest.approx(c3["out_of_vocabulary"] / len(present))


def test_unlabeled_logs_are_scored_like_the_same_rows_with_labels(spark, trained, demo_tsv, tmp_path):
    run, _, _ = trained
    bundle = from_run(run.root)
    lines = gzip.open(demo_tsv, "rt").read().splitlines()[:400]
    labeled, unlabeled = tmp_path / "labeled.tsv", tmp_path / "unlabeled.tsv"
    labeled.write_text("\n".join(lines) + "\n")
    unlabeled.write_text("\n".join(line.split("\t", 1)[1] for line in lines) + "\n")   # the DAC test layout
    with_labels = score(spark, bundle, scoring_config(bundle, labeled), Location.of(tmp_path / "a"))
    doc = score(spark, bundle, scoring_config(bundle, unlabeled), Location.of(tmp_path / "b"), labeled=False)
    assert doc["rows_scored"] == 400 and doc["rows_with_label"] == 0 and "metrics" not in doc
    assert doc["mean_prediction"] == pytest.approx(with_labels["mean_prediction"], abs=1e-12)
    a = {r["row_id"]: r for r in spark.read.parquet(str(tmp_path / "a" / "predictions")).collect()}
    b = {r["row_id"]: r for r in spark.read.parquet(str(tmp_path / "b" / "predictions")).collect()}
    assert a.keys() == b.keys() and all(b[i]["label"] is None and b[i]["p_ctr"] == a[i]["p_ctr"] for i in a)
    assert doc["vocabulary_drift"] == with_labels["vocabulary_drift"]
    with pytest.raises(Exception, match="expected 39 fields, found 40"):     # labeled rows read as unlabeled
        score(spark, bundle, scoring_config(bundle, labeled), Location.of(tmp_path / "c"), labeled=False)


def test_output_is_published_whole_and_not_overwritten_by_mistake(tmp_path):
    from ctr_pipeline.errors import UserError

    out = Location.of(tmp_path / "scores")
    staging = prepare_output(out, force=False)
    assert staging != out and not out.exists()
    (staging / "predictions" / "part-0").write_text("x")
    (staging / REPORT).write_text("{}")
    publish(staging, out)
    assert (out / REPORT).exists() and not staging.exists()
    with pytest.raises(UserError, match="already holds scores"):
        prepare_output(out, force=False)
    (tmp_path / "other").mkdir()
    (tmp_path / "other" / "x").write_text("x")
    with pytest.raises(UserError, match="exists and is not empty"):
        prepare_output(Location.of(tmp_path / "other"), force=False)
    (out / "logs" / "1.log").write_text("first")                  # the invocation logs stay with the output
    again = prepare_output(out, force=True)
    (again / REPORT).write_text("{}")
    publish(again, out)
    assert not (out / "predictions").exists() and sorted(p.name for p in tmp_path.iterdir()) == ["other", "scores"]
    assert (out / "logs" / "1.log").read_text() == "first"
    (tmp_path / "only-logs" / "logs").mkdir(parents=True)          # an earlier failed scoring's log alone
    assert prepare_output(Location.of(tmp_path / "only-logs"), force=False) != Location.of(tmp_path / "only-logs")


def test_score_command_line_mistakes_are_one_line(trained, demo_tsv, tmp_path):
    """(A successful `ctr-pipeline score` runs in tests/test_s3_pipeline.py, on S3.)"""
    import subprocess

    _, reg, _ = trained
    run_cli = lambda *a: subprocess.run(cli(*a), capture_output=True, text=True, cwd=REPO, env=cli_env(),
                                        timeout=600)
    (tmp_path / "s" / REPORT).parent.mkdir()
    (tmp_path / "s" / REPORT).write_text("{}")             # an earlier scoring output
    for args, message in [(("--model", f"{reg.root}@champion", "--out", str(tmp_path / "t")), "needs --input"),
                          (("--model", f"{reg.root}@v5", "--input", str(demo_tsv), "--out", str(tmp_path / "t")),
                           "no version 'v5'"),
                          (("--model", str(reg.root), "--input", str(demo_tsv), "--out", str(tmp_path / "t")),
                           "@champion"),
                          (("--model", f"{reg.root}@v1", "--input", str(demo_tsv), "--out", str(tmp_path / "s")),
                           "already holds scores")]:
        proc = run_cli("score", *args)
        lines = proc.stderr.strip().splitlines()
        assert proc.returncode == 2 and len(lines) == 1 and message in lines[0], proc.stderr
    [log] = (tmp_path / "s" / "logs").iterdir()                    # the refusal is in the output's log
    assert "already holds scores" in log.read_text() and not (tmp_path / ".s.lock").exists()


def test_a_gbdt_lr_model_is_shipped_through_evaluation_scoring_and_the_registry(spark, trained, demo_tsv, tmp_path):
    """training.model gbdt_lr on a copy of the trained run: the trees train on train less a held-out share and
    the logistic regression on that share; the evaluate stage, batch scoring of a registry version and the
    driver-side model give the same predictions; the refresh refuses it, in one line at the command line."""
    import shutil
    import subprocess

    import xgboost

    from ctr_pipeline.errors import ConfigError, UserError
    from ctr_pipeline.pipeline import run_stage
    from ctr_pipeline.refresh.job import check_champion
    from evaluation import gbdt_lr
    from evaluation.core import mxe
    from features.spark_io import collect_csr, vector_width
    from training.gbdt_lr_spark import held_out

    reference, _, base = trained
    shutil.copytree(reference.root.path, tmp_path / "run")
    run = RunDir(tmp_path / "run")
    cfg = build_config([parse_set_option(s) for s in (*SETTINGS, "training.model=gbdt_lr")]
                       + [flag_layer("--input", "input.path", str(demo_tsv))])
    for stage in ("train", "evaluate"):
        run_stage(stage, cfg, run, lambda: spark, force=True)
    model_dir = run.path_of("train")
    meta = json.loads((model_dir / "metadata.json").read_text())
    train_rows = reference.stage_record("features")["rows"]["train"]
    g = meta["gbdt_lr"]
    assert meta["model"] == "gbdt_lr" and g["share"] == 0.2 and g["fit_rows"] == g["rows_of"]
    assert meta["data"]["rows"]["train"] == train_rows == g["tree_rows"] + g["rows_of"]
    assert 0.1 < g["rows_of"] / train_rows < 0.3
    train = read_features(spark, str(run.path_of("features") / "train"))
    parts = [[{r[0] for r in part.select("row_id").collect()} for part in held_out(df, 0.2, 0)]
             for df in (train, train.repartition(3))]
    assert parts[0] == parts[1] and not (parts[0][0] & parts[0][1]) and len(parts[0][1]) == g["rows_of"]

    raw = (model_dir / "booster.ubj").read_bytes()
    hybrid = gbdt_lr.from_bytes(raw, (model_dir / "gbdt_lr.npz").read_bytes())
    test = read_features(spark, str(run.path_of("features") / "test"))
    x, cols = collect_csr(test, vector_width(test), ("label", "row_id"))
    p = hybrid.predict(x)
    booster = xgboost.Booster()
    booster.load_model(bytearray(raw))
    trees_only = booster.predict(xgboost.DMatrix(x, missing=0.0))
    metrics = json.loads((run.path_of("evaluate") / "metrics.json").read_text())
    assert metrics["model"] == "gbdt_lr" and list(metrics["baselines"]) == ["trees"]
    assert metrics["test"]["mxe"] == pytest.approx(mxe(cols["label"], p), abs=1e-9)
    assert metrics["baselines"]["trees"]["test"]["mxe"] == pytest.approx(mxe(cols["label"], trees_only), abs=1e-6)
    assert not np.allclose(p, trees_only, atol=1e-3)
    report = (run.path_of("evaluate") / "report.md").read_text()
    assert "Shipped model: GBDT leaves + LR" in report and "test: gbdt_lr vs trees: MXE improvement" in report

    reg = Registry.open(str(tmp_path / "registry"), create=True)
    reg.promote(reg.register(from_run(run.root)))
    bundle = resolve(f"{reg.root}@champion")
    assert bundle.linear is not None and (tmp_path / "registry" / "versions" / "v1" / "gbdt_lr.npz").exists()
    doc = score(spark, bundle, scoring_config(bundle, demo_tsv), Location.of(tmp_path / "scores"))
    got = {r["row_id"]: r["p_ctr"] for r in spark.read.parquet(str(tmp_path / "scores" / "predictions")).collect()}
    assert doc["rows_scored"] == 5_000
    np.testing.assert_allclose([got[i] for i in cols["row_id"]], p, rtol=0, atol=1e-9)

    with pytest.raises(UserError, match=r"is a GBDT leaves \+ LR model \(training.model: gbdt_lr\)"):
        check_champion(bundle, cfg)
    with pytest.raises(ConfigError, match="training.model: the refresh job builds and judges boosters only"):
        check_champion(from_run(reference.root), cfg)
    proc = subprocess.run(cli("refresh", "--registry", str(reg.root), "--input", str(demo_tsv)), capture_output=True,
                          text=True, cwd=REPO, env=cli_env(), timeout=600)
    lines = proc.stderr.strip().splitlines()
    assert proc.returncode == 2 and len(lines) == 1 and "retrain it with 'ctr-pipeline run'" in lines[0], proc.stderr
