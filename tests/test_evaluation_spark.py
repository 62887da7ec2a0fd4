"""Evaluation metrics on Spark and on the driver (a collected set) against scikit-learn on the same rows
(to 1e-9), both paths against each other, the rounded-score path within its bound, segments, reliability,
and the paired bootstrap's reproducibility."""
from functools import partial

import numpy as np
import pytest
from pyspark.sql import functions as F
from sklearn.metrics import average_precision_score, log_loss, roc_auc_score

from ctr_pipeline.errors import InputDataError
from evaluation import local_metrics as lm
from evaluation import spark_metrics as sm

pytestmark = pytest.mark.spark


@pytest.fixture(scope="module")
def scored(spark):
    rng = np.random.default_rng(5)
    n = 3000
    x = rng.normal(size=n)
    y = (rng.random(n) < 1 / (1 + np.exp(-(x - 2)))).astype(int)
    p_a = np.round(1 / (1 + np.exp(-(x - 2))), 3)                      # rounded: many ties
    p_b = np.round(1 / (1 + np.exp(-(0.5 * x - 2))), 2)
    w = rng.integers(1, 4, size=n).astype(float)
    seg = rng.choice(["a", "b", "c"], size=n)
    rows = [(i, int(y[i]), float(w[i]), float(p_a[i]), float(p_b[i]), str(seg[i])) for i in range(n)]
    df = spark.createDataFrame(rows, "row_id long, label int, w double, p_a double, p_b double, seg string")
    return df.repartition(3), dict(y=y, w=w, p_a=p_a, p_b=p_b, seg=seg)


@pytest.fixture(params=["spark", "driver"])
def path(request, scored):
    """(metrics module, its input): the Spark DataFrame, or the same rows collected to pandas."""
    df, a = scored
    return (sm, df, a) if request.param == "spark" else (lm, df.toPandas(), a)


def test_metrics_match_sklearn_with_weights_and_ties(path):
    mm, df, a = path
    m, table = mm.metrics(df, "p_a", "test", bins=5, exact_limit=10_000)
    y, w, p = a["y"], a["w"], a["p_a"]
    assert m["auc_exact"] and m["auc_error_bound"] == 0.0
    assert m["auc"] == pytest.approx(roc_auc_score(y, p, sample_weight=w), abs=1e-9)
    assert m["pr_auc"] == pytest.approx(average_precision_score(y, p, sample_weight=w), abs=1e-9)
    assert m["mxe"] == pytest.approx(log_loss(y, p, sample_weight=w), abs=1e-9)
    rate = np.sum(w * y) / np.sum(w)
    assert m["ne"] == pytest.approx(m["mxe"] / -(rate * np.log(rate) + (1 - rate) * np.log(1 - rate)), abs=1e-12)
    assert m["calibration"] == pytest.approx(np.sum(w * p) / np.sum(w * y), abs=1e-9)
    rel = m["reliability"]
    assert sum(b["rows"] for b in rel) == len(y) and 3 <= len(rel) <= 5
    assert [b["mean_prediction"] for b in rel] == sorted(b["mean_prediction"] for b in rel)


def test_rounded_scores_stay_within_the_reported_bound(scored):
    df, a = scored
    exact, _ = sm.metrics(df, "p_b", "test", bins=5, exact_limit=10_000)
    df_fine = df.withColumn("p_b", F.col("p_b") + F.col("row_id") * 1e-9)   # more distinct scores than the limit
    rounded, _ = sm.metrics(df_fine, "p_b", "test", bins=5, exact_limit=1000)
    assert not rounded["auc_exact"] and rounded["auc_error_bound"] > 0
    truth = roc_auc_score(a["y"], a["p_b"] + np.arange(len(a["y"])) * 1e-9, sample_weight=a["w"])
    assert abs(rounded["auc"] - truth) <= rounded["auc_error_bound"] + 1e-12
    assert exact["auc"] == pytest.approx(roc_auc_score(a["y"], a["p_b"], sample_weight=a["w"]), abs=1e-9)


def test_segments_by_hand(path):
    mm, df, a = path
    segs = {s["segment"]: s for s in mm.segment_metrics(df, "p_a", "seg")}
    assert set(segs) == {"a", "b", "c"}
    for name, s in segs.items():
        k = a["seg"] == name
        assert s["rows"] == int(k.sum()) and s["positives"] == int(a["y"][k].sum())
        assert s["mxe"] == pytest.approx(log_loss(a["y"][k], a["p_a"][k], sample_weight=a["w"][k]), abs=1e-9)
        assert s["auc"] == pytest.approx(roc_auc_score(a["y"][k], a["p_a"][k], sample_weight=a["w"][k]), abs=1e-9)


def test_one_class_split_is_a_clear_error(spark):
    df = spark.createDataFrame([(1, 0, 1.0, 0.2), (2, 0, 1.0, 0.3)], "row_id long, label int, w double, p double")
    for mm, data in ((sm, df), (lm, df.toPandas())):
        with pytest.raises(InputDataError, match="split test has only one class"):
            mm.metrics(data, "p", "test", bins=5, exact_limit=1000)


def test_driver_and_spark_paths_agree(scored):
    """On a set this small Spark's quantiles are exact, so every record is the same on both paths but the
    distinct-score count (the segment AUCs too: Spark rounds segment scores to 7 digits, these have 3)."""
    df, a = scored
    local = df.toPandas().sample(frac=1.0, random_state=3)          # row order must not matter
    for p in ("p_a", "p_b"):
        (ms, ts), (ml, tl) = sm.metrics(df, p, "test", 7, 10_000), lm.metrics(local, p, "test", 7, 10_000)
        assert ms.keys() == ml.keys()
        for k in ms:
            if k == "reliability":
                assert [b["bin"] for b in ms[k]] == [b["bin"] for b in ml[k]]
                for bs, bl in zip(ms[k], ml[k]):
                    assert bs == pytest.approx(bl, rel=1e-9)
            elif k == "distinct_scores":                    # Spark's is approximate (HyperLogLog)
                assert ms[k] == pytest.approx(ml[k], rel=0.05) and ml[k] == len(np.unique(local[p]))
            else:
                assert ms[k] == pytest.approx(ml[k], rel=1e-9), k
        np.testing.assert_allclose(ts.pos, tl.pos) and np.testing.assert_allclose(ts.score, tl.score)
    seg_s = {s["segment"]: s for s in sm.segment_metrics(df, "p_a", "seg")}
    seg_l = {s["segment"]: s for s in lm.segment_metrics(local, "p_a", "seg")}
    assert seg_s.keys() == seg_l.keys()
    for name in seg_s:
        assert seg_s[name].pop("segment") == seg_l[name].pop("segment") == name
        assert seg_s[name] == pytest.approx(seg_l[name], rel=1e-9)
    bs, bl = sm.bootstrap(df, "p_a", "p_b", 40, 11), lm.bootstrap(local, "p_a", "p_b", 40, 11)
    for key in ("mxe_difference", "relative_mxe_improvement", "auc_difference"):
        assert bs[key]["interval"] == pytest.approx(bl[key]["interval"], rel=1e-9, abs=1e-12)
        assert bs[key]["std"] == pytest.approx(bl[key]["std"], rel=1e-9, abs=1e-12)
    got = lm.with_recalibrated(local, "p_a", 0.1)["p_a"].to_numpy()
    want = [r[1] for r in df.select("row_id", sm.recalibrated(F.col("p_a"), 0.1)).orderBy("row_id").collect()]
    assert np.sort(got) == pytest.approx(np.sort(want), abs=1e-15)


def test_driver_quantiles_are_spark_exact_ranks():
    x = np.array([5.0, 1.0, np.nan, 3.0, 3.0, 2.0])
    assert lm.quantiles(x, [0.2, 0.5, 0.6, 0.99]).tolist() == [1.0, 3.0, 3.0, 5.0]   # ranks 1, 3, 3, 5 of 5
    assert lm.quantiles(np.array([np.nan]), [0.5]).size == 0


def test_paired_bootstrap_reproducible_and_partition_free(scored):
    df, a = scored
    one = sm.bootstrap(df, "p_a", "p_b", replicates=50, seed=11)
    two = sm.bootstrap(df.repartition(7), "p_a", "p_b", replicates=50, seed=11)
    for key in ("mxe_difference", "relative_mxe_improvement", "auc_difference"):
        assert one[key]["interval"] == pytest.approx(two[key]["interval"], abs=1e-12)
    small_chunks = lm.bootstrap(df.toPandas(), "p_a", "p_b", replicates=50, seed=11)
    for key in ("mxe_difference", "relative_mxe_improvement", "auc_difference"):
        assert one[key]["interval"] == pytest.approx(small_chunks[key]["interval"], abs=1e-12)
    other = sm.bootstrap(df, "p_a", "p_b", replicates=50, seed=12)
    assert other["mxe_difference"]["interval"] != one["mxe_difference"]["interval"]
    lo, hi = one["mxe_difference"]["interval"]
    diff = log_loss(a["y"], a["p_a"], sample_weight=a["w"]) - log_loss(a["y"], a["p_b"], sample_weight=a["w"])
    assert lo < diff < hi and hi - lo < 0.05
    alo, ahi = one["auc_difference"]["interval"]
    auc_diff = roc_auc_score(a["y"], a["p_a"], sample_weight=a["w"]) - roc_auc_score(a["y"], a["p_b"],
                                                                                     sample_weight=a["w"])
    assert alo - 0.01 < auc_diff < ahi + 0.01


def test_logistic_baseline_from_the_driver_read_equals_spark_s(spark, tmp_path):
    """With a local features directory on a local master the driver reads the capped train rows and the
    validation split itself: the same fit, grid choice and validation MXE as from Spark's collection."""
    from pyspark.ml.linalg import Vectors

    from ctr_pipeline.config import Layer, build_config
    from ctr_pipeline.storage import Location
    from evaluation import baselines

    rng = np.random.default_rng(5)
    rows = [(i * 7919, int(rng.random() < 0.2 + 0.6 * (i % 2)),
             Vectors.sparse(4, {0: float(i % 2), 1 + i % 3: rng.random()})) for i in range(600)]
    frame = spark.createDataFrame(rows, ["row_id", "label", "features"])
    train, validation = frame.filter("row_id % 5 != 0").repartition(3), frame.filter("row_id % 5 = 0")
    train.write.parquet(str(tmp_path / "features" / "train"))
    validation.write.parquet(str(tmp_path / "features" / "validation"))
    cfg = build_config([Layer("t", {"evaluation": {"baseline_rows": 300}})])
    fits = {how: baselines.fit("logistic_regression", cfg, lambda: train, lambda: validation,
                               held=Location.of(tmp_path / "features") if how == "driver" else None)
            for how in ("spark", "driver")}
    (a, sa), (b, sb) = fits["spark"], fits["driver"]
    assert (sa["fit_rows"], sa["train_rows"]) == (sb["fit_rows"], sb["train_rows"]) == (300, 480)
    assert sa["regParam"] == sb["regParam"] and sa["iterations"] == sb["iterations"]
    assert sb["validation_mxe"] == pytest.approx(sa["validation_mxe"], rel=1e-9)
    np.testing.assert_allclose(b.coef, a.coef, rtol=0, atol=1e-7)
    assert b.intercept == pytest.approx(a.intercept, abs=1e-7)


def test_recalibrated_column_formula(spark):
    df = spark.createDataFrame([(0.5,), (0.2,)], "p double")
    got = [r[0] for r in df.select(sm.recalibrated(F.col("p"), 0.1)).collect()]
    assert got == pytest.approx([0.5 / (0.5 + 0.5 / 0.1), 0.2 / (0.2 + 0.8 / 0.1)], abs=1e-15)


@pytest.mark.parametrize("name", ["logistic_regression", "gbt"])
def test_baselines_fit_and_score(spark, name):
    from pyspark.ml.linalg import Vectors

    from ctr_pipeline.config import Layer, build_config
    from evaluation import baselines

    rng = np.random.default_rng(1)
    rows = [(i, int(rng.random() < 0.2 + 0.6 * (i % 2)), Vectors.sparse(3, {0: float(i % 2), 2: rng.random()}))
            for i in range(200)]
    train = spark.createDataFrame(rows, ["row_id", "label", "features"])
    cfg = build_config([Layer("t", {"training": {"n_estimators": 3, "max_depth": 2}})])
    model, settings = baselines.fit(name, cfg, lambda: train,
                                    validation=(lambda: train) if name == "logistic_regression" else None)
    assert settings.get("regParam", 1e-3) in baselines.LR_REG_GRID
    if name == "logistic_regression":   # linear models are scored with the boosters, in one Arrow pass
        from evaluation.logistic import LinearModel
        from evaluation.scoring import predict_features

        assert isinstance(model, LinearModel) and baselines.add_probabilities({name: model}, train) is train
        out = predict_features(spark, {}, train, 3, linear={name: model})
        assert out.columns == ["row_id", "label", "w", f"p_{name}"]
    else:
        out = baselines.add_probabilities({name: model}, train)
    assert f"p_{name}" in out.columns and not any(c.startswith(f"_{name}") for c in out.columns)
    got = {r["row_id"]: r[f"p_{name}"] for r in out.collect()}
    assert all(0 < p < 1 for p in got.values())
    assert np.mean([got[i] for i in range(1, 200, 2)]) > np.mean([got[i] for i in range(0, 200, 2)])


def test_gbt_baseline_warns_on_wide_vectors():
    from evaluation.baselines import GBT_WIDE, gbt_cost_warning

    assert gbt_cost_warning(GBT_WIDE) is None
    assert "evaluation.baselines: gbt on 108,000 feature columns will be slow" in gbt_cost_warning(108_000)


def test_negative_rate_from_sampling_config():
    from ctr_pipeline.config import Layer, build_config
    from evaluation.spark_job import negative_rate

    def cfg(**sampling):
        return build_config([Layer("t", {"sampling": sampling})])

    assert negative_rate(cfg()) is None
    assert negative_rate(cfg(stratify_by="label", strata_rates={"0": 0.05})) == 0.05
    assert negative_rate(cfg(stratify_by="label", strata_rates={"0": 0.1, "1": 0.5})) == pytest.approx(0.2)
    assert negative_rate(cfg(stratify_by="C1", strata_rates={"0": 0.05})) is None


def test_downsampled_run_reports_recalibrated_test_metrics(spark, demo_tsv, tmp_path):
    """Negatives kept at rate 0.25 in train: the test report shows raw and recalibrated predictions."""
    from ctr_pipeline.config import build_config, flag_layer, parse_set_option
    from ctr_pipeline.pipeline import run_stages
    from ctr_pipeline.runs import STAGES, RunDir

    settings = ["sampling.stratify_by=label", "sampling.strata_rates={'0': 0.25}", "training.n_estimators=10",
                "evaluation.baselines=[]", "features.categorical_encoding=hash", "features.hash_buckets=256"]
    cfg = build_config([parse_set_option(s) for s in settings] + [flag_layer("--input", "input.path", str(demo_tsv))])
    run = RunDir(tmp_path / "run")
    run_stages(STAGES, cfg, run, lambda: spark)
    import json

    m = json.loads((run.path_of("evaluate") / "metrics.json").read_text())
    assert m["negative_rate"] == 0.25
    raw, recal = m["test"], m["test"]["recalibrated"]
    assert raw["calibration"] > 1.5                     # trained on 4x fewer negatives: over-predicts
    assert abs(recal["calibration"] - 1) < abs(raw["calibration"] - 1)
    assert recal["mxe"] < raw["mxe"] and recal["auc"] == pytest.approx(raw["auc"], abs=1e-9)  # same ranking


def test_capped_sample_is_the_exact_smallest_keys(spark):
    from ctr_pipeline.rowsample import capped_sample
    from sampling.srs import keys

    ids = np.arange(1, 20_001, dtype=np.int64) * 7919
    df = spark.createDataFrame([(int(i), int(i % 2)) for i in ids], "row_id long, label int").repartition(4)
    sample, rows, total = capped_sample(df, 1234, seed=29)
    got = sorted(r["row_id"] for r in sample.collect())
    expected = sorted(ids[np.argsort(keys(29, ids), kind="stable")[:1234]].tolist())
    assert (rows, total) == (1234, 20_000)
    assert got == expected
    assert sample.columns == df.columns
    whole, rows, total = capped_sample(df, 0, seed=29)
    assert whole is df and rows == total == 20_000
    small, rows, _ = capped_sample(df, 50_000, seed=29)
    assert small is df and rows == 20_000


def test_capped_rows_are_capped_sample_collected_in_one_pass(spark, tmp_path):
    """On Spark and read by the driver from the split's files (a local master's path): the same rows."""
    from pyspark.ml.linalg import Vectors

    from ctr_pipeline.errors import UserError
    from ctr_pipeline.rowsample import capped_rows, capped_sample
    from ctr_pipeline.storage import Location
    from features.arrow_io import read_capped

    rows = [(int(i) * 7919, int(i % 3 == 0), Vectors.sparse(5, {int(i % 5): float(i)})) for i in range(1, 3001)]
    df = spark.createDataFrame(rows, ["row_id", "label", "features"]).repartition(3)
    df.write.parquet(str(tmp_path / "split"))
    naming = ("evaluation.baseline_rows", "the logistic regression baseline is fit")
    sample, n, total = capped_sample(df, 700, seed=3)
    want = {r["row_id"]: (r["label"], r["features"].toArray().tolist()) for r in sample.collect()}
    for how in ("spark", "driver"):
        capped = partial(capped_rows, df) if how == "spark" else partial(read_capped, Location.of(tmp_path / "split"), 5)
        x, cols, n2, total2 = capped(700, 3, ("row_id", "label"), 10_000, "evaluation.baseline_rows", *naming)
        assert (n, total) == (n2, total2) == (700, 3000) and x.dtype == np.float64
        got = {int(rid): (int(lab), x[i].toarray().ravel().tolist())
               for i, (rid, lab) in enumerate(zip(cols["row_id"], cols["label"]))}
        assert got == want, how
        x, cols, n_all, total_all = capped(0, 3, ("label",), 10_000, "evaluation.baseline_rows", *naming)
        assert x.shape == (3000, 5) and n_all == total_all == 3000 and cols["label"].sum() == 1000
        with pytest.raises(UserError, match=r"evaluation.baseline_rows: .* at most 2,000 rows; this run would use 3,000"):
            capped(0, 3, ("label",), 2000, "evaluation.baseline_rows", *naming)
