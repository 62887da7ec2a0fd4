"""ScalableSRS on Spark: same keys and sets as the pure core, any partitioning, strata, errors."""
import json
from pathlib import Path

import numpy as np
import pytest
from pyspark.sql import functions as F

from ctr_pipeline.config import build_config, flag_layer, parse_set_option
from ctr_pipeline.errors import InputDataError
from ctr_pipeline.pipeline import run_stage
from ctr_pipeline.rowsample import key_column
from ctr_pipeline.runs import RunDir
from ctr_pipeline.schema import SPLIT_NAMES, SamplingConfig
from ctr_pipeline.spark import temporary_conf
from sampling import srs
from sampling.driver import draw_arrays
from sampling.spark_srs import draw

pytestmark = pytest.mark.spark


def ids_frame(spark, ids, partitions, labels=None):
    rows = [(int(i), int(labels[j]) if labels is not None else 0) for j, i in enumerate(ids)]
    return spark.createDataFrame(rows, "row_id long, label int").repartition(partitions)


def sets_of(spark, out_dir):
    return {p.name: [r[0] for r in spark.read.parquet(str(p)).select("row_id").collect()]
            for p in sorted(out_dir.iterdir()) if p.is_dir()}


def test_spark_keys_equal_python_keys(spark):
    ids = [0, 1, -1, 2**62, -(2**63), 2**63 - 1, 12345 << 40 | 77]
    df = spark.createDataFrame([(i,) for i in ids], "row_id long")
    with temporary_conf(spark, "spark.sql.ansi.enabled", "false"):
        got = [r[0] for r in df.select(key_column(31, F.col("row_id"))).collect()]
    assert got == [srs.key(31, i) for i in ids]


@pytest.fixture(params=["driver", "spark"])
def candidates_by(request, monkeypatch):
    """Who counts and splits the Spark engine's candidate files: the driver (a local run directory and
    master, the default here) or Spark jobs (as on a cluster or S3)."""
    if request.param == "spark":
        monkeypatch.setattr("sampling.spark_srs.driver_reads", lambda spark, where: False)
    return request.param


@pytest.mark.parametrize("seed, test_rows", [(0, 500), (1, 500), (7, 1700), (12345, 0.1)])
def test_spark_draw_equals_reference_under_any_partitioning(spark, seed, test_rows, tmp_path, candidates_by):
    """test_rows 1700 makes the sets take every row: the last cut is at n. The driver engine's draw on
    arrays gives the same sets."""
    ids = np.random.default_rng(seed).choice(10**9, size=3000, replace=False)
    cfg = SamplingConfig(seed=seed, train=1000, validation=0.1, test=test_rows)
    test_k = srs.resolve_size(test_rows, 3000)
    reference, used, _ = srs.draw_in_memory({None: list(map(int, ids))},
                                            {None: {"train": 1000, "validation": 300, "test": test_k}}, seed,
                                            cfg.delta)
    for partitions in (1, 3, 8):
        out = tmp_path / f"p{partitions}"
        with temporary_conf(spark, "spark.sql.ansi.enabled", "false"):
            drawn = draw(spark, ids_frame(spark, ids, partitions), cfg, None, len(ids), out)
        got = sets_of(spark, out)
        assert sorted(p.name for p in out.iterdir()) == ["test", "train", "validation"]
        assert drawn.seed == used
        assert {k: len(v) for k, v in got.items()} == {"train": 1000, "validation": 300, "test": test_k}
        assert {k: srs.digest(v) for k, v in got.items()} == {k: srs.digest(v) for k, v in reference.items()}
    in_driver, chosen = draw_arrays(ids.astype(np.int64), None, cfg)
    assert in_driver.seed == used and in_driver.targets == drawn.targets
    assert {name: srs.digest(ids[chosen == i].tolist()) for i, name in enumerate(SPLIT_NAMES) if name in got} == \
        {k: srs.digest(v) for k, v in reference.items()}


def test_stratified_negative_downsampling_is_exact(spark, tmp_path, candidates_by):
    rng = np.random.default_rng(3)
    ids = rng.choice(10**9, size=4000, replace=False)
    labels = (rng.random(4000) < 0.1).astype(int)
    cfg = SamplingConfig(seed=5, train=0.8, validation=0.1, test=0.1, stratify_by="label",
                         strata_rates={"0": 0.25})
    with temporary_conf(spark, "spark.sql.ansi.enabled", "false"):
        df = ids_frame(spark, ids, 4, labels)
        drawn = draw(spark, df, cfg, F.col("label").cast("string"), 4000, tmp_path / "sets")
    counts = {}
    for name in ("train", "validation", "test"):
        for r in spark.read.parquet(str(tmp_path / "sets" / name)).groupBy("label").count().collect():
            counts[(name, r["label"])] = r["count"]
    for stratum, per_set in drawn.targets.items():
        for name, k in per_set.items():
            assert counts.get((name, int(stratum)), 0) == k
    n0, n1 = drawn.counts["0"], drawn.counts["1"]
    assert drawn.targets["0"]["train"] == int(round(drawn.targets["0"]["train"]))
    assert abs(counts[("train", 0)] / n0 - 0.25 * 0.8) < 0.01 and abs(counts[("train", 1)] / n1 - 0.8) < 0.01
    assert abs(counts[("test", 0)] / n0 - 0.1) < 0.01           # test keeps the natural rate
    in_driver, chosen = draw_arrays(ids.astype(np.int64), labels.astype(str), cfg)
    assert (in_driver.targets, in_driver.counts, in_driver.seed) == (drawn.targets, drawn.counts, drawn.seed)
    for i, name in enumerate(SPLIT_NAMES):
        got = spark.read.parquet(str(tmp_path / "sets" / name)).select("row_id").collect()
        assert srs.digest(r[0] for r in got) == srs.digest(ids[chosen == i].tolist())


def run_sample(spark, tmp_path, demo_tsv, *sets):
    cfg = build_config([parse_set_option(s) for s in sets] + [flag_layer("--input", "input.path", str(demo_tsv))])
    run = RunDir(tmp_path / "run")
    return run, run_stage("sample", cfg, run, lambda: spark, force=True)


def test_sample_stage_writes_sets_and_report(spark, tmp_path, demo_tsv):
    run, rec = run_sample(spark, tmp_path, demo_tsv, "sampling.train=3000", "sampling.validation=0.1",
                          "sampling.test=1000")
    assert rec["rows"] == {"train": 3000, "validation": 500, "test": 1000}
    report = json.loads((run.path_of("sample") / "sample_report.json").read_text())
    assert report["method"] == "scalable_srs" and report["n"] == 5000 and report["attempts"] >= 1
    assert {k: v["obtained"] for k, v in report["sets"].items()} == rec["rows"]
    ids = {name: [r[0] for r in spark.read.parquet(str(run.path_of("sample") / name)).select("row_id").collect()]
           for name in rec["rows"]}
    assert {k: srs.digest(v) for k, v in ids.items()} == {k: v["digest"] for k, v in report["sets"].items()}
    assert not set(ids["train"]) & set(ids["test"]) and not set(ids["validation"]) & set(ids["test"])
    assert sorted(p.name for p in run.path_of("sample").iterdir()) == \
        ["sample_report.json", "test", "train", "validation"]


def test_sample_stage_errors(spark, tmp_path, demo_tsv):
    with pytest.raises(InputDataError, match="add up to 6,000 rows but the input has only 5,000 good rows"):
        run_sample(spark, tmp_path, demo_tsv, "sampling.train=5000", "sampling.test=1000", "sampling.validation=0")
    with pytest.raises(InputDataError, match="stratify_by column 'clicked' is not in the input"):
        run_sample(spark, tmp_path, demo_tsv, "sampling.stratify_by=clicked")


def test_out_of_time_split(spark, tmp_path):
    """test = the last 6 hours; train/validation are exact samples of the earlier rows."""
    path = tmp_path / "clicks.csv"
    start = 1_510_000_000
    lines = ["ip,click_time,y"]
    for i in range(2000):
        t = start + i * 60                      # one row a minute: the last 6h hold 360 rows
        lines.append(f"{i % 50},{t},{int(i % 17 == 0)}")
    lines.append("7,,0")                        # no time: never in the out-of-time test set
    path.write_text("\n".join(lines) + "\n")
    sets = ["input.format=csv", "input.label=y", "input.categorical=[ip]", "input.time=click_time",
            "input.time_format=epoch", "sampling.out_of_time=6h", "sampling.train=0.5", "sampling.validation=100"]
    run, rec = run_sample(spark, tmp_path, path, *sets)
    same_sample(run, run_sample(spark, tmp_path / "spark", path, *sets, "sampling.engine=spark")[0])
    report = json.loads((run.path_of("sample") / "sample_report.json").read_text())
    assert rec["rows"] == {"train": 821, "validation": 100, "test": 360}
    assert report["out_of_time"]["rows_without_time"] == 1 and report["out_of_time"]["test_rows"] == 360
    test_times = [r[0] for r in spark.read.parquet(str(run.path_of("sample") / "test")).select("click_time").collect()]
    train_times = [r[0] for r in spark.read.parquet(str(run.path_of("sample") / "train"))
                   .select("click_time").collect() if r[0] is not None]
    assert min(test_times) > max(train_times) and max(test_times) == start + 1999 * 60


MRJOB_SETS = ["sampling.train=2000", "sampling.validation=0.1", "sampling.test=0.2", "sampling.seed=17",
              "sampling.stratify_by=label"]


@pytest.fixture(scope="module")
def spark_engine_sample(spark, tmp_path_factory, demo_tsv):
    """The Spark engine's sets that the driver engine and every mrjob runner must reproduce."""
    return run_sample(spark, tmp_path_factory.mktemp("spark-engine"), demo_tsv, *MRJOB_SETS, "sampling.engine=spark")


def same_sample(driver_run, spark_run):
    """The driver engine's sets hold the Spark engine's rows, every column, and the reports agree."""
    import pyarrow.parquet as pq

    a, b = (json.loads((r.path_of("sample") / "sample_report.json").read_text()) for r in (driver_run, spark_run))
    assert (a.pop("engine"), b.pop("engine")) == ("driver", "spark") and a == b
    for name in a["sets"]:
        x, y = (pq.read_table(str(r.path_of("sample") / name)).sort_by("row_id") for r in (driver_run, spark_run))
        assert x.schema == y.schema and x.equals(y)


def test_the_driver_engine_draws_the_spark_engine_s_sample(spark, tmp_path, demo_tsv, spark_engine_sample, caplog):
    """sampling.engine auto on a local master and run directory: the driver engine, same sets and report
    (stratified, seed 17); it says so, and how many lines it has parsed."""
    import logging

    with caplog.at_level(logging.INFO, logger="ctr_pipeline"):
        run, rec = run_sample(spark, tmp_path, demo_tsv, *MRJOB_SETS, "spark.progress_seconds=0.000001")
    assert "sample: the driver reads the input and draws the sets (sampling.engine auto)" in caplog.text
    assert "input: 5,000 lines parsed in the driver (file 1 of 1), 0s" in caplog.text
    assert rec["rows"] == spark_engine_sample[1]["rows"]
    same_sample(run, spark_engine_sample[0])


# mrjob's spark runner (a spark-submit of its own, about a minute here) runs in `make test-all`
@pytest.mark.parametrize("runner", ["inline", "local", pytest.param("spark", marks=pytest.mark.slow)])
def test_mrjob_engine_selects_the_same_rows_as_spark(spark, tmp_path, demo_tsv, spark_engine_sample, runner):
    sets = MRJOB_SETS
    import tempfile

    def mrjob_leftovers():
        return {p.name for p in Path(tempfile.gettempdir()).iterdir() if p.name.startswith(("mr_srs.", "wrapper.lock"))}

    spark_run, spark_rec = spark_engine_sample
    before = mrjob_leftovers()
    mr_run, mr_rec = run_sample(spark, tmp_path / "mr", demo_tsv, *sets, "sampling.engine=mrjob",
                                f"sampling.mrjob_runner={runner}")
    assert mrjob_leftovers() <= before          # mrjob's scratch files stayed in the stage's work directory
    a = json.loads((spark_run.path_of("sample") / "sample_report.json").read_text())
    b = json.loads((mr_run.path_of("sample") / "sample_report.json").read_text())
    assert b["engine"] == "mrjob" and b["mrjob_runner"] == runner
    for report in (a, b):                       # obtained per stratum equals what was planned
        for facts in report["strata"].values():
            assert facts["obtained"] == {k: v for k, v in facts["requested"].items() if k in facts["obtained"]}
        assert set(report["strata"]) == {"0", "1"}
    assert mr_rec["rows"] == spark_rec["rows"] == {"train": 2000, "validation": 500, "test": 1000}
    assert {k: v["digest"] for k, v in a["sets"].items()} == {k: v["digest"] for k, v in b["sets"].items()}
    assert spark.read.parquet(str(mr_run.path_of("sample") / "train")).columns == \
        spark.read.parquet(str(spark_run.path_of("sample") / "train")).columns


def test_spark_digest_is_the_pure_digest_at_the_edges(spark, tmp_path):
    """One Spark aggregate, and the driver's read of a local set's files, give :func:`sampling.srs.digest`:
    ids whose SplitMix64 sums wrap past 2**64, the largest id, and no rows at all."""
    from ctr_pipeline.rowsample import id_digest
    from ctr_pipeline.spark import temporary_conf
    from ctr_pipeline.storage import Location
    from sampling.spark_job import local_digest

    ids = [0, 1, 7, (1 << 63) - 1, (1 << 62) + 12345, *range(1000, 3000)]
    df = spark.createDataFrame([(i,) for i in ids], "row_id long").repartition(3)
    df.write.parquet(str(tmp_path / "set"))
    df.limit(0).write.parquet(str(tmp_path / "empty"))
    with temporary_conf(spark, "spark.sql.ansi.enabled", "false"):
        assert id_digest(df) == local_digest(Location.of(tmp_path / "set")) == srs.digest(ids)
        assert id_digest(df.limit(0)) == local_digest(Location.of(tmp_path / "empty")) == srs.digest([])
    assert srs.digest_array(np.array(ids[::-1], dtype=np.int64)) == srs.digest(ids)


def test_auto_draws_in_the_driver_only_where_it_can(spark, tmp_path, demo_tsv, monkeypatch):
    import bz2
    import gzip

    from ctr_pipeline.errors import UserError
    from ctr_pipeline.readers import local
    from ctr_pipeline.readers.spark import open_input
    from ctr_pipeline.storage import Location
    from sampling.spark_job import engine_for

    def choice(path, *sets, out=tmp_path / "run"):
        cfg = build_config([parse_set_option(s) for s in sets] + [flag_layer("--input", "input.path", str(path))])
        return engine_for(cfg, spark, Location.of(out), open_input(spark, cfg))

    packed = tmp_path / "x.tsv.bz2"
    packed.write_bytes(bz2.compress(gzip.decompress(demo_tsv.read_bytes())))
    assert choice(demo_tsv) == "driver" and choice(demo_tsv, "sampling.engine=spark") == "spark"
    assert choice(demo_tsv, out="s3://bucket/run") == "spark"        # the run directory is not on this machine
    assert choice(packed) == "spark"                                   # a codec the driver does not read
    assert choice(demo_tsv, "sampling.stratify_by=I1") == "spark"      # a double's text is Spark's formatting
    assert choice(demo_tsv, "sampling.stratify_by=C1") == "driver"
    with pytest.raises(UserError, match="sampling.engine is driver but sampling.stratify_by 'I1' is a numeric column"):
        choice(demo_tsv, "sampling.engine=driver", "sampling.stratify_by=I1")
    monkeypatch.setattr(local, "physical_memory", lambda: 1 << 20)
    assert choice(demo_tsv) == "spark"                                 # over a quarter of the machine's memory
