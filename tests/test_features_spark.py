"""The feature stage on Spark: equal to the pure core, summary by hand, vectors XGBoost reads the same way
at training and at scoring time, LIBSVM output, save/load on new data, clear errors."""
import json

import numpy as np
import pandas as pd
import pytest
from pyspark.sql import functions as F

from ctr_pipeline.config import build_config, flag_layer, parse_set_option
from ctr_pipeline.errors import InputDataError
from ctr_pipeline.pipeline import run_stages
from ctr_pipeline.runs import STAGES, RunDir
from features import spark_job as fj
from features.encode import ZERO, encode
from features.hashing import fold_of
from features.spark_io import WIDTH_KEY, read_features
from features.spec import FeatureSpec
from features.state import FittedTransform
from ctr_pipeline.rowsample import key_column

pytestmark = pytest.mark.spark

SPEC = FeatureSpec(numeric=(("I1", "raw"), ("I2", "quantile")), categorical=(("C1", "vocab"), ("C2", "hash")),
                   raw_numeric=("I1", "I2"), raw_categorical=("C1", "C2"), counts=("C2",), target_encoding=("C1",),
                   crosses=(("C1", "C2"),), time="ts", time_features=("hour", "weekday"), quantile_buckets=4,
                   min_count=2, hash_buckets=32, cross_buckets=16, smoothing=1.0, folds=3, seed=5, top_values=2)


def tiny_frame() -> pd.DataFrame:
    return pd.DataFrame({
        "row_id": np.arange(1, 9, dtype=np.int64),
        "label": [1, 0, 0, 1, 0, 0, 0, 1],
        "I1": [0.0, 1.0, None, 3.0, 4.0, None, 6.0, 7.0],
        "I2": [10.0, 20.0, 30.0, 40.0, 50.0, 60.0, 70.0, 80.0],
        "C1": ["a", "a", "a", "b", "b", "c", None, "a"],
        "C2": ["x", "y", "x", None, "x", "y", "z", "x"],
        "ts": [0, 3600, 7200, 86400, 90000, None, 200000, 300000],
    })


def to_spark(spark, frame):
    schema = "row_id long, label int, I1 double, I2 double, C1 string, C2 string, ts long"
    return spark.createDataFrame(frame.astype(object).where(frame.notna(), None), schema=schema)


@pytest.fixture(scope="module")
def fitted_tiny(spark):
    train = to_spark(spark, tiny_frame())
    return (train, *fj.fit(spark, train, SPEC))


def collect_rows(df):
    return {r["row_id"]: dict(zip(r["indices"], r["values"])) for r in df.collect()}


def test_summary_statistics_by_hand(fitted_tiny):
    _, t, summary, _ = fitted_tiny
    cols = {c["column"]: c for c in summary["columns"]}
    assert summary["rows"] == 8 and summary["clicks"] == 3
    assert cols["I1"]["coverage"] == 6 / 8 and cols["I1"]["cardinality"] == 6
    assert cols["I2"]["quantiles"]["p00"] == 10.0 and cols["I2"]["quantiles"]["p100"] == 80.0
    assert cols["C1"]["coverage"] == 7 / 8 and cols["C1"]["cardinality"] == 3
    assert cols["C1"]["top"] == [{"value": "a", "count": 4, "ctr": 0.5}, {"value": "b", "count": 2, "ctr": 0.5}]
    assert cols["C2"]["top"][0] == {"value": "x", "count": 4, "ctr": 0.5}  # rows 1, 3, 5, 8; clicks 1, 8
    assert cols["ts"]["kind"] == "time" and cols["ts"]["coverage"] == 7 / 8
    assert list(t.vocab["C1"]) == ["a", "b"]          # c occurs once < min_count 2
    assert t.counts["C2"].to_dict() == {"x": 4, "y": 2, "z": 1}
    assert t.target["C1"].loc["a", ["n", "clicks"]].tolist() == [4, 2]
    assert len(t.quantiles["I2"]) == 3
    assert summary["width"] == t.width == 6 + 3 + 32 + 16


def test_feature_map_names_hash_buckets_by_train_values(fitted_tiny):
    _, t, _, fmap = fitted_tiny
    assert len(fmap) == t.width
    name = dict(zip(fmap["index"], fmap["name"]))
    # buckets (pinned by test_features_core): C2 x->4, y->16, z->6 of 32; crosses a*x->0, a*y->1, b*x->9, c*y->2
    assert [name[t.hash_offset + b] for b in (4, 16, 6, 5)] == ["C2=x", "C2=y", "C2=z", "hash[5]"]
    assert [name[t.cross_offset + b] for b in (0, 1, 9, 2, 3)] == [
        "cross:C1*C2=a*x", "cross:C1*C2=a*y", "cross:C1*C2=b*x", "cross:C1*C2=c*y", "cross[3]"]
    assert dict(zip(fmap["name"], fmap["source"]))["cross:C1*C2=a*x"] == "C1*C2"


def test_spark_transform_equals_pure_core(spark, fitted_tiny):
    train, t, _, _ = fitted_tiny
    frame = tiny_frame()
    for oof in (True, False):
        got = collect_rows(fj.transform(spark, t, train.repartition(3), out_of_fold=oof))
        enc = encode(t, frame, out_of_fold=oof)
        want = {int(r): dict(zip(enc.indices[a:b].tolist(), enc.values[a:b].tolist()))
                for r, a, b in zip(frame["row_id"], enc.indptr[:-1], enc.indptr[1:])}
        assert got == want
    assert 0.0 not in [v for row in got.values() for v in row.values()]
    assert got[1][0] == ZERO  # I1 = 0 is a value; row 3's missing I1 is absent
    assert 0 not in got[3]


def test_spark_folds_equal_python_folds(spark):
    ids = [1, 2, 3, 10**12, 2**62, 7 << 40 | 5]
    df = spark.createDataFrame([(i,) for i in ids], "row_id long")
    got = [r[0] for r in df.select(F.pmod(key_column(9, F.col("row_id")), F.lit(5))).collect()]
    assert got == fold_of(np.array(ids), 5, 9).tolist()


def test_tallies_keep_four_partitions_per_core_under_spark_s_200(spark):
    """A cluster's 200 shuffle partitions do not reach the cached tallies (every later pass over them ran
    200 tasks); the tallies themselves are the same."""
    from ctr_pipeline.spark import temporary_conf

    train = to_spark(spark, tiny_frame())
    columns = {"C1": F.col("C1"), "C2": F.col("C2")}
    with temporary_conf(spark, "spark.sql.shuffle.partitions", "200"):
        values = fj._tallies(train, columns, F.col("label")).persist()   # as the fit keeps them
        try:
            got = {(r["column"], r["value"]): (r["n"], r["clicks"]) for r in values.collect()}
            assert values.rdd.getNumPartitions() <= 4 * spark.sparkContext.defaultParallelism
        finally:
            values.unpersist()
    frame = tiny_frame()
    expected = {(c, v): (int(len(g)), int(g["label"].sum())) for c in columns for v, g in frame.groupby(c)}
    assert got == expected


def test_unseen_values_at_transform_time(spark, fitted_tiny):
    _, t, _, _ = fitted_tiny
    new = pd.DataFrame({"row_id": [100], "label": [0], "I1": [5.0], "I2": [999.0], "C1": ["never"],
                        "C2": ["never"], "ts": [0]})
    row = collect_rows(fj.transform(spark, t, to_spark(spark, new)))[100]
    assert row[t.oov_index("C1")] == 1.0
    assert [s.name for s in t.slots][4:] == ["count(C2)", "ctr(C1)"]
    assert row[4] == ZERO                                   # count of an unseen value: 0, a value
    assert row[5] == pytest.approx(t.totals.ctr)            # target encoding of an unseen value: the prior
    assert row[1] == 4.0                                    # above every boundary: the last bucket


def test_read_features_vector_type_and_width(spark, fitted_tiny, tmp_path):
    from pyspark.ml.linalg import SparseVector, VectorUDT

    train, t, _, _ = fitted_tiny
    fj.write_features(fj.transform(spark, t, train), t.width, str(tmp_path / "f"))
    df = read_features(spark, str(tmp_path / "f"))
    assert isinstance(df.schema["features"].dataType, VectorUDT)
    assert df.schema["features"].metadata[WIDTH_KEY] == t.width
    v = df.filter("row_id = 1").first()["features"]
    assert isinstance(v, SparseVector) and v.size == t.width and v[0] == ZERO


def test_weight_column_passes_through_not_as_a_feature(spark, fitted_tiny, tmp_path):
    from ctr_pipeline.storage import Location
    from training import driver_fit

    train, _, _, _ = fitted_tiny
    spec = FeatureSpec(numeric=(("I1", "raw"),), raw_numeric=("I1",), weight="I2")
    t, _, fmap = fj.fit(spark, train, spec)
    out = fj.transform(spark, t, train)
    assert out.columns == ["row_id", "label", "weight", "indices", "values"]
    assert {r["row_id"]: r["weight"] for r in out.collect()} == {i: 10.0 * i for i in range(1, 9)}
    assert fmap["name"].tolist() == ["I1"]
    fj.write_features(out.repartition(3), t.width, str(tmp_path / "f"))   # the driver engine reads the weights
    rows = driver_fit.load(Location.of(tmp_path / "f"), t.width, True, 1)
    assert rows.row_id.tolist() == list(range(1, 9)) and rows.w.tolist() == [10.0 * i for i in range(1, 9)]
    assert rows.y.tolist() == [1, 0, 0, 1, 0, 0, 0, 1] and rows.x.shape == (8, t.width)


def test_missing_column_and_bad_weight_are_named(spark, fitted_tiny):
    train, _, _, _ = fitted_tiny
    with pytest.raises(InputDataError, match=r"splits/train: column\(s\) C2, ts named by the features config"):
        fj.check_columns(train.drop("C2", "ts").columns, SPEC, "splits/train")
    weighted = FeatureSpec(numeric=(("I2", "raw"),), weight="I1")
    with pytest.raises(InputDataError, match=r"features.weight column 'I1' is missing in 2 row"):
        fj.check_weight(train, weighted, "splits/train")


# ---------------------------------------------------------------------------------------------- whole stage

@pytest.fixture(scope="module")
def feature_run(spark, demo_tsv, tmp_path_factory):
    settings = ["training.n_estimators=8", "features.counts=[C3]", "features.target_encoding=[C4]",
                "features.crosses=[C5*C6]", "features.columns={C7: hash, I2: log1p, I3: quantile}",
                "features.hash_buckets=512", "features.cross_buckets=256", "features.libsvm=true"]
    cfg = build_config([parse_set_option(s) for s in settings] + [flag_layer("--input", "input.path", str(demo_tsv))])
    run = RunDir(tmp_path_factory.mktemp("feature-run") / "run")
    records = run_stages(STAGES[:3], cfg, run, lambda: spark)
    return run, cfg, records


def test_stage_outputs(feature_run):
    run, _, records = feature_run
    feats = run.path_of("features")
    details = records["features"]["details"]
    fmap = pd.read_csv(feats / "feature_map.tsv", sep="\t", keep_default_na=False)
    assert len(fmap) == details["vector_width"] and fmap["index"].tolist() == list(range(len(fmap)))
    assert {"count(C3)", "ctr(C4)", "I2:log1p", "I3:q32", "OOV(C1)"} <= set(fmap["name"])
    summary = json.loads((feats / "summary.json").read_text())
    assert len(summary["columns"]) == 39 and summary["width"] == details["vector_width"]
    assert FittedTransform.load(feats / "transform").spec.digest() == details["spec_hash"]
    assert records["features"]["rows"] == records["sample"]["rows"]


def test_training_and_scoring_read_the_vectors_the_same_way(spark, feature_run):
    """The Spark model's predictions on the stage's test vectors equal plain XGBoost's on (a) the pure
    encoder's rows of the raw test split and (b) the LIBSVM text: missing, zero and absent agree."""
    import xgboost as xgb
    from pyspark.ml.functions import vector_to_array
    from sklearn.datasets import load_svmlight_file
    from xgboost.spark import SparkXGBClassifierModel

    run, _, _ = feature_run
    feats, model_dir = run.path_of("features"), run.path_of("train")
    model = SparkXGBClassifierModel.load(str(model_dir / "spark_model"))
    test = read_features(spark, str(feats / "test"))
    spark_p = {r["row_id"]: r["p"] for r in model.transform(test).select(
        "row_id", vector_to_array("probability")[1].alias("p")).collect()}
    booster = xgb.Booster(model_file=str(model_dir / "booster.ubj"))
    raw = spark.read.parquet(str(run.path_of("sample") / "test")).toPandas().sort_values("row_id")
    t = FittedTransform.load(feats / "transform")
    native = booster.predict(xgb.DMatrix(encode(t, raw).to_scipy(), missing=0.0))
    want = np.array([spark_p[r] for r in raw["row_id"]])
    np.testing.assert_allclose(native, want, rtol=0, atol=1e-6)
    # LIBSVM text, in the order of the Parquet rows it was written from
    parts = sorted((feats / "test_libsvm").glob("part-*"))
    text = "".join(p.read_text() for p in parts)
    path = feats.parent / "test.libsvm"
    path.write_text(text)
    order = [r["row_id"] for r in spark.read.parquet(str(feats / "test")).select("row_id").collect()]
    x, y = load_svmlight_file(str(path), n_features=t.width, zero_based=False)  # plain LIBSVM, 1-based
    from_text = booster.predict(xgb.DMatrix(x, label=y, missing=0.0))
    np.testing.assert_allclose(from_text, [spark_p[r] for r in order], rtol=0, atol=1e-6)


def test_saved_transform_applies_to_new_data_identically(spark, feature_run, tmp_path):
    run, _, _ = feature_run
    feats = run.path_of("features")
    raw = spark.read.parquet(str(run.path_of("sample") / "validation"))
    again = fj.load_and_transform(spark, str(feats / "transform"), raw, str(tmp_path / "new"))
    stage = read_features(spark, str(feats / "validation"))
    a = {r["row_id"]: r["features"] for r in again.collect()}
    b = {r["row_id"]: r["features"] for r in stage.collect()}
    assert a == b and len(a) > 0


def test_the_driver_reads_a_split_as_spark_collects_it(spark, feature_run):
    """features.arrow_io reads the Parquet files without Spark: the same rows, values and labels as Spark's
    collection, in row_id order, float32; a row filter (a gbdt_lr model's tree rows) keeps what Spark's
    filter keeps."""
    from ctr_pipeline.storage import Location
    from features.arrow_io import read_csr
    from features.spark_io import collect_csr, vector_width
    from training import gbdt_lr_spark

    run, _, _ = feature_run
    split = run.path_of("features") / "train"
    df = read_features(spark, str(split))
    width = vector_width(df)
    want, cols = collect_csr(df, width, ("row_id", "label"))
    order = np.argsort(cols["row_id"])
    got, mine = read_csr(Location.of(split), width, ("row_id", "label"))
    assert got.dtype == np.float32 and got.shape == (df.count(), width)
    np.testing.assert_array_equal(mine["row_id"], cols["row_id"][order])
    np.testing.assert_array_equal(mine["label"], cols["label"][order])
    assert (got != want[order].astype(np.float32)).nnz == 0
    trees, _ = gbdt_lr_spark.held_out(df, 0.3, 5)
    kept, kept_cols = read_csr(Location.of(split), width, ("row_id",), gbdt_lr_spark.tree_rows_mask(0.3, 5))
    expected = sorted(r[0] for r in trees.select("row_id").collect())
    assert kept_cols["row_id"].tolist() == expected and 0 < len(expected) < df.count() and kept.shape[0] == len(expected)


# ---------------------------------------------------------------------------------------------- driver engine

DRIVER_SPEC = FeatureSpec(numeric=(("I1", "raw"), ("I2", "log1p")), categorical=(("C1", "vocab"), ("C2", "hash")),
                          raw_numeric=("I1", "I2"), raw_categorical=("C1", "C2"), counts=("C2",),
                          target_encoding=("C1",), crosses=(("C1", "C2"),), time="ts",
                          time_features=("hour", "weekday"), weight="I2", min_count=2, hash_buckets=32,
                          cross_buckets=16, smoothing=1.0, folds=3, seed=5, top_values=2)


def _same_transform(a: FittedTransform, b: FittedTransform) -> None:
    """Equal as transforms (a count table's row order is Spark's collect order, so it is compared as a map)."""
    assert (a.spec, a.width, a.slots, a.totals, a.quantiles, a.vocab_offsets) == \
        (b.spec, b.width, b.slots, b.totals, b.quantiles, b.vocab_offsets)
    assert (a.hash_offset, a.cross_offset) == (b.hash_offset, b.cross_offset)
    assert a.vocab.keys() == b.vocab.keys() and all(a.vocab[c].equals(b.vocab[c]) for c in a.vocab)
    assert {c: s.to_dict() for c, s in a.counts.items()} == {c: s.to_dict() for c, s in b.counts.items()}
    assert a.target.keys() == b.target.keys()
    for c in a.target:
        pd.testing.assert_frame_equal(a.target[c].sort_index(), b.target[c].sort_index())


def _vectors(path):
    import pyarrow.parquet as pq

    return pq.read_table(str(path)).sort_by("row_id")


def test_driver_fit_and_vectors_equal_spark_s_on_the_tiny_split(spark, tmp_path):
    from ctr_pipeline.storage import Location
    from features import driver

    frame = tiny_frame()
    to_spark(spark, frame).repartition(2).write.parquet(str(tmp_path / "train"))
    train = spark.read.parquet(str(tmp_path / "train"))
    t_spark, summary_spark, fmap_spark = fj.fit(spark, train, DRIVER_SPEC)
    t, summary, fmap = driver.fit_in_driver(Location.of(tmp_path / "train"), DRIVER_SPEC, 2, {})
    _same_transform(t, t_spark)
    pd.testing.assert_frame_equal(fmap, fmap_spark)
    assert summary == summary_spark   # 8 rows: Spark's approximate distinct counts and quantiles are exact here
    for oof in (True, False):
        fj.write_features(fj.transform(spark, t, train, out_of_fold=oof), t.width, str(tmp_path / f"spark{oof}"))
        rows = driver.encode_split(t, Location.of(tmp_path / "train"), Location.of(tmp_path / f"driver{oof}"), oof, 2)
        assert rows == 8
        assert _vectors(tmp_path / f"driver{oof}").equals(_vectors(tmp_path / f"spark{oof}"))
    to_spark(spark, frame.iloc[0:0]).write.parquet(str(tmp_path / "empty"))     # an empty set stays readable
    assert driver.encode_split(t, Location.of(tmp_path / "empty"), Location.of(tmp_path / "empty_f"), False, 2) == 0
    assert read_features(spark, str(tmp_path / "empty_f")).columns == ["row_id", "label", "weight", "features"]
    assert read_features(spark, str(tmp_path / "empty_f")).count() == 0
    back = read_features(spark, str(tmp_path / "driverTrue"))      # Spark reads the driver's vectors as ML vectors
    assert back.filter("row_id = 1").first()["features"][0] == ZERO
    assert {r["row_id"]: r["weight"] for r in back.collect()} == {i: 10.0 * i for i in range(1, 9)}


def test_driver_exact_summary_statistics():
    from features.driver import exact_quantiles, top_values

    values = np.array([5.0, 1.0, 3.0, 2.0, 4.0, np.nan])
    got = exact_quantiles(values, [0.0, 0.2, 0.5, 0.8, 1.0])
    assert got[0.0] == 1.0 and got[0.2] == 2.0 and got[0.5] == 3.0 and got[0.8] == 5.0 and np.isnan(got[1.0])
    finite = values[:5]
    for p in (0.0, 0.01, 0.25, 0.5, 0.75, 0.99, 1.0):
        assert exact_quantiles(finite, [p])[p] == np.quantile(finite, p, method="inverted_cdf")
    assert exact_quantiles(np.empty(0), [0.5]) == {0.5: None}
    tally = pd.DataFrame({"value": ["b", "a", "c", "d"], "n": [3, 3, 1, 5], "clicks": [1, 0, 0, 2]})
    assert top_values(tally, 2) == (12, 4, [("d", 5, 2), ("a", 3, 0)])
    assert top_values(tally, 9) == (12, 4, [("d", 5, 2), ("a", 3, 0), ("b", 3, 1), ("c", 1, 0)])


def test_driver_engine_only_where_it_gives_spark_s_transform():
    import pyarrow as pa

    from features.driver import driver_problem

    schema = pa.schema([("row_id", pa.int64()), ("label", pa.int32()), ("I1", pa.float64()), ("C1", pa.string()),
                        ("C2", pa.int64()), ("F", pa.float64())])
    base = FeatureSpec(numeric=(("I1", "raw"),), categorical=(("C1", "vocab"), ("C2", "hash")), raw_numeric=("I1",),
                       raw_categorical=("C1", "C2"))
    assert driver_problem(base, schema, 1 << 20, 1 << 30) is None
    quantile = FeatureSpec(numeric=(("I1", "quantile"),), raw_numeric=("I1",))
    assert "column I1 uses the quantile transform" in driver_problem(quantile, schema, 1, 1 << 30)
    double = FeatureSpec(categorical=(("F", "vocab"),), raw_categorical=("F",))
    assert "categorical column F is double" in driver_problem(double, schema, 1, 1 << 30)
    assert "over 1/4 of this machine's" in driver_problem(base, schema, 1 << 29, 1 << 30)


def test_driver_weight_check_names_the_split(spark, tmp_path):
    from ctr_pipeline.storage import Location
    from features.driver import check_weight

    to_spark(spark, tiny_frame()).write.parquet(str(tmp_path / "train"))
    check_weight(Location.of(tmp_path / "train"), "I2")
    with pytest.raises(InputDataError, match=r"train: features.weight column 'I1' is missing in 2 row\(s\) and "
                                             r"negative in 0"):
        check_weight(Location.of(tmp_path / "train"), "I1")


@pytest.fixture(scope="module")
def engine_runs(spark, demo_tsv, tmp_path_factory):
    settings = ["features.counts=[C3]", "features.target_encoding=[C4]", "features.crosses=[C5*C6]",
                "features.columns={C7: hash, I2: log1p}", "features.hash_buckets=512", "features.cross_buckets=256",
                "features.libsvm=true"]
    runs = {}
    for engine in ("driver", "spark"):
        cfg = build_config([parse_set_option(s) for s in [*settings, f"features.engine={engine}"]]
                           + [flag_layer("--input", "input.path", str(demo_tsv))])
        run = RunDir(tmp_path_factory.mktemp(f"features-{engine}") / "run")
        runs[engine] = (run, run_stages(STAGES[:2], cfg, run, lambda: spark))
    return runs


def test_the_driver_engine_writes_the_spark_engine_s_features(spark, engine_runs):
    (d_run, d_rec), (s_run, s_rec) = engine_runs["driver"], engine_runs["spark"]
    assert d_rec["features"]["details"]["engine"] == {"setting": "driver", "ran": "driver"}
    assert s_rec["features"]["details"]["engine"] == {"setting": "spark", "ran": "spark"}
    assert d_rec["features"]["rows"] == s_rec["features"]["rows"] == d_rec["sample"]["rows"]
    d, s = d_run.path_of("features"), s_run.path_of("features")
    _same_transform(FittedTransform.load(d / "transform"), FittedTransform.load(s / "transform"))
    assert (d / "feature_map.tsv").read_text() == (s / "feature_map.tsv").read_text()
    for split in ("train", "validation", "test"):
        assert _vectors(d / split).equals(_vectors(s / split))
        lines = [sorted(line for f in (p / f"{split}_libsvm").path.glob("part-*") for line in f.read_text().splitlines())
                 for p in (d, s)]
        assert len(lines[0]) == d_rec["features"]["rows"][split]
        assert lines[0] == lines[1]
    summaries = [json.loads((p / "summary.json").read_text()) for p in (d, s)]
    exact = [c for c in summaries[0]["columns"] if c["kind"] == "numeric"]
    train = pd.read_parquet(d_run.path_of("sample") / "train")
    for c in exact:   # the driver's distinct counts and quantiles are exact; Spark's approximate
        assert c["cardinality"] == train[c["column"]].nunique()
        assert c["quantiles"]["p50"] == np.quantile(train[c["column"]].dropna(), 0.5, method="inverted_cdf")
    for summary in summaries:
        for c in summary["columns"]:
            if c["kind"] == "numeric":
                c.pop("cardinality"), c.pop("quantiles")
    assert summaries[0] == summaries[1]


def test_auto_fits_features_in_the_driver_only_where_it_can(spark, engine_runs, monkeypatch):
    from ctr_pipeline.errors import UserError
    from ctr_pipeline.stage import StageContext

    run, _ = engine_runs["driver"]
    for setting, extra, want in (("auto", [], "driver"), ("auto", ["features.columns={I3: quantile}"], "spark")):
        cfg = build_config([parse_set_option(s) for s in [f"features.engine={setting}", *extra]])
        ctx = StageContext(cfg=cfg, run=run, out=run.path_of("features"), spark=spark, options={})
        assert fj.engine_for(ctx, fj.resolve_spec(cfg), run.path_of("sample")) == want
    cfg = build_config([parse_set_option("features.engine=driver"), parse_set_option("features.columns={I3: quantile}")])
    ctx = StageContext(cfg=cfg, run=run, out=run.path_of("features"), spark=spark, options={})
    with pytest.raises(UserError, match=r"features.engine is driver but column I3 uses the quantile transform"):
        fj.engine_for(ctx, fj.resolve_spec(cfg), run.path_of("sample"))
    import pyarrow.parquet as pq

    from features.driver import split_bytes

    held = pq.read_table(str(run.path_of("sample") / "train")).nbytes    # the memory rule's estimate of it
    assert 0.8 * held < split_bytes(run.path_of("sample") / "train") < 1.25 * held
    monkeypatch.setattr(fj, "physical_memory", lambda: 1 << 10)
    cfg = build_config([])
    ctx = StageContext(cfg=cfg, run=run, out=run.path_of("features"), spark=spark, options={})
    assert fj.engine_for(ctx, fj.resolve_spec(cfg), run.path_of("sample")) == "spark"
