"""Each input reader on Spark, with bad rows: quarantine with file and line, threshold, layout errors."""
import gzip
import json
import os

import pytest

from ctr_pipeline.config import build_config, parse_set_option
from ctr_pipeline.errors import InputDataError
from ctr_pipeline.readers.spark import read_input

pytestmark = pytest.mark.spark


def cfg_with(*sets):
    return build_config([parse_set_option(s) for s in sets])


def dac_line(label, i1="3", c1="a1"):
    return "\t".join([label, i1] + [""] * 12 + [c1] + [""] * 25)


def quarantine(path):
    rows = []
    for part in sorted(path.glob("part-*.json")):
        rows += [json.loads(line) for line in part.read_text().splitlines()]
    return rows


def read(spark, cfg, tmp_path):
    report = read_input(spark, cfg, str(tmp_path / "quarantine"))
    rows = sorted(report.good.collect(), key=lambda r: r["row_id"])
    report.release()
    return report, rows


def test_criteo_dac_gzip_with_bad_rows(spark, tmp_path):
    lines = [dac_line("1" if i % 10 == 0 else "0", str(i)) for i in range(300)]
    lines[4] = dac_line("0", "x")     # line 5: non-numeric I1
    lines[9] = "1\t2\t3"              # line 10: wrong field count
    lines[19] = dac_line("0", "")     # line 20: missing I1 is fine
    path = tmp_path / "in.tsv.gz"
    with gzip.open(path, "wt") as fh:
        fh.write("\n".join(lines) + "\n")
    report, rows = read(spark, cfg_with(f"input.path={path}", "input.max_bad_share=0.02"), tmp_path)
    assert (report.rows_read, report.rows_bad, len(rows)) == (300, 2, 298)
    assert rows[0]["label"] == 1 and rows[0]["I1"] == 0.0 and rows[0]["C1"] == "a1" and rows[0]["I2"] is None
    bad = sorted(quarantine(tmp_path / "quarantine"), key=lambda r: r["line"])
    assert [(r["line"], r["field"]) for r in bad] == [(5, "I1"), (10, "record")]
    assert bad[0]["file"] == str(path) and bad[0]["reason"] == "not a number: 'x'" and bad[1]["text"] == "1\t2\t3"


def test_too_many_bad_rows_fails_naming_first_lines(spark, tmp_path):
    path = tmp_path / "in.tsv"
    path.write_text("\n".join([dac_line("0")] * 50 + ["0\tx"] * 2) + "\n")
    with pytest.raises(InputDataError, match=r"2 of 52 input rows are malformed \(3.85% > input.max_bad_share "
                                             rf"1.00%\); first: {path} line 51: record: expected 40 fields"):
        read_input(spark, cfg_with(f"input.path={path}"), str(tmp_path / "q"))


def test_label_other_than_0_1_stops_naming_column_and_file(spark, tmp_path):
    lines = [dac_line("0", str(i)) for i in range(300)]
    lines[19] = dac_line("7")         # one row is enough: the label column is not what it should be
    path = tmp_path / "in.tsv"
    path.write_text("\n".join(lines) + "\n")
    with pytest.raises(InputDataError, match=rf"{path}: label column 'label' has values other than 0/1 on 1 "
                                             r"row\(s\) \(first: line 20, label must be 0 or 1, got '7'\)"):
        read_input(spark, cfg_with(f"input.path={path}", "input.max_bad_share=0.5"), str(tmp_path / "q"))


def test_mostly_non_numeric_column_stops_naming_column_and_file(spark, tmp_path):
    good = tmp_path / "logs" / "a.csv"
    good.parent.mkdir()
    good.write_text("y,n,c\n" + "".join(f"{i % 2},{i},x\n" for i in range(10)))
    words = tmp_path / "logs" / "b.csv"
    words.write_text("y,n,c\n" + "".join(f"{i % 2},{'abc' if i % 4 else i},x\n" for i in range(12)))
    sets = [f"input.path={tmp_path / 'logs'}", "input.format=csv", "input.label=y", "input.numeric=[n]",
            "input.categorical=[c]", "input.max_bad_share=0.9"]
    with pytest.raises(InputDataError, match=rf"{words}: numeric column 'n' is mostly not numbers \(9 of 12 rows; "
                                             r"first line 3: not a number: 'abc'\); declare it in input.categorical"):
        read_input(spark, cfg_with(*sets), str(tmp_path / "q"))


def test_csv_header_layout_time_and_bad_rows(spark, tmp_path):
    path = tmp_path / "td.csv"
    path.write_text("ip,app,click_time,attributed_time,is_attributed\n"
                    "1,12,2017-11-07 09:30:38,,0\n"
                    "2,13,2017-11-07 10:00:00,2017-11-07 10:01:00,1\n"
                    "3,13,yesterday,,0\n")
    sets = [f"input.path={path}", "input.format=csv", "input.label=is_attributed",
            "input.categorical=[ip, app]", "input.time=click_time", "input.drop=[attributed_time]",
            "input.max_bad_share=0.5"]
    report, rows = read(spark, cfg_with(*sets), tmp_path)
    assert [(r["label"], r["ip"], r["app"], r["click_time"]) for r in rows] == \
        [(0, "1", "12", 1510047038), (1, "2", "13", 1510048800)]
    assert [(r["line"], r["field"]) for r in quarantine(tmp_path / "quarantine")] == [(4, "click_time")]
    assert set(rows[0].asDict()) == {"row_id", "label", "ip", "app", "click_time"}


def test_csv_undeclared_column_is_an_error(spark, tmp_path):
    path = tmp_path / "a.csv"
    path.write_text("click,site,secret\n1,a,9\n")
    with pytest.raises(InputDataError, match=r"a.csv: column\(s\) secret are neither used nor dropped"):
        read_input(spark, cfg_with(f"input.path={path}", "input.format=csv", "input.label=click",
                                   "input.categorical=[site]"), str(tmp_path / "q"))


def test_parquet_reader(spark, tmp_path):
    df = spark.createDataFrame([(1, 2.0, "a", "z"), (0, None, "b", "z"), (0, float("inf"), "c", "z")],
                               "y int, n double, c string, junk string")
    df.coalesce(1).write.parquet(str(tmp_path / "pq"))
    sets = [f"input.path={tmp_path / 'pq'}", "input.format=parquet", "input.label=y", "input.numeric=[n]",
            "input.categorical=[c]", "input.drop=[junk]", "input.max_bad_share=0.5"]
    report, rows = read(spark, cfg_with(*sets), tmp_path)
    assert [(r["label"], r["n"], r["c"]) for r in rows] == [(1, 2.0, "a"), (0, None, "b")]
    bad = quarantine(tmp_path / "quarantine")
    assert [(r["line"], r["field"]) for r in bad] == [(3, "n")] and bad[0]["file"].endswith(".parquet")


def test_libsvm_reader_builds_sparse_vectors(spark, tmp_path):
    path = tmp_path / "a.svm"
    path.write_text("1 0:1.5 7:2\n0 3:1\n0 3:x\n")
    report, rows = read(spark, cfg_with(f"input.path={path}", "input.format=libsvm", "input.max_bad_share=0.5"),
                        tmp_path)
    assert report.num_features == 8 and report.rows_bad == 1
    assert rows[0]["features"].size == 8 and list(rows[0]["features"].indices) == [0, 7]
    with pytest.raises(InputDataError, match="input.num_features is 4 but the data has index 7"):
        read_input(spark, cfg_with(f"input.path={path}", "input.format=libsvm", "input.max_bad_share=0.5",
                                   "input.num_features=4"), str(tmp_path / "q2"))


def test_directory_of_files_and_empty_input(spark, tmp_path):
    d = tmp_path / "logs"
    d.mkdir()
    (d / "a.tsv").write_text(dac_line("1") + "\n")
    (d / "b.tsv").write_text(dac_line("0") + "\n" + dac_line("0") + "\n")
    (d / "_SUCCESS").write_text("")
    report, rows = read(spark, cfg_with(f"input.path={d}"), tmp_path)
    assert len(report.files) == 2 and len(rows) == 3
    assert len({r["row_id"] for r in rows}) == 3
    empty = tmp_path / "empty.tsv"
    empty.write_text("")
    with pytest.raises(InputDataError, match="input is empty"):
        read_input(spark, cfg_with(f"input.path={empty}"), str(tmp_path / "q"))
    with pytest.raises(InputDataError, match="no input files found"):
        read_input(spark, cfg_with(f"input.path={tmp_path / 'missing*'}"), str(tmp_path / "q"))


NUMBERS = ["3", "0", "-0", "12.5", "", "1e3", " 5", "+2", "nan", "inf", "x", "007", "-1.25", "9" * 400]
CATEGORIES = ["a1", "", " a", "b ", "é", "x y", "68fd1e64", "\u00a0c", "-"]
TIMES = ["2017-11-06 16:00:00", "2017-02-30 01:00:00", "2017-1-6 01:00:00", "", "2017-11-06 23:59:59", "bad"]


def _mixed_lines(rng, n, header_fields=None):
    lines = []
    for i in range(n):
        label = rng.choice(["0", "1", "1", "0", "0.0", " 1", "2"], p=[.4, .4, .05, .05, .04, .03, .03])
        nums = [rng.choice(NUMBERS) for _ in range(2)]
        cats = [rng.choice(CATEGORIES) for _ in range(2)]
        if header_fields:                       # csv: label,I1,C1,I2,C2,ts
            ts = rng.choice(TIMES)
            fields = [label, nums[0], cats[0], nums[1], cats[1], ts]
            line = ",".join(fields)
            if i % 97 == 0:
                line = f'{label},{nums[0]},"q,{cats[0]}",{nums[1]},{cats[1]},{ts}'
        else:
            fields = [label, nums[0]] + [""] * 12 + [cats[0]] + [""] * 24 + [cats[1]]
            line = "\t".join(fields)
        if i % 211 == 0:
            line += "\textra" if not header_fields else ",extra"
        lines.append(line)
    return lines


def _parsed_both_ways(spark, cfg, monkeypatch):
    """(rows of the Arrow parse on Spark, of the Python parse on Spark), after checking that the driver's
    reader (:mod:`ctr_pipeline.readers.local`, chunks of 4 KiB) gives the Arrow parse's rows in row-id order."""
    from ctr_pipeline.readers import arrow, local
    from ctr_pipeline.readers.spark import open_input, parse_input
    from ctr_pipeline.spark import temporary_conf

    source = open_input(spark, cfg)
    with temporary_conf(spark, "spark.sql.files.maxPartitionBytes", "4096"):
        fast = sorted(parse_input(spark, source).collect(), key=lambda r: r["row_id"])
    monkeypatch.setattr(local, "CHUNK_BYTES", 4096)
    in_driver = [tuple(r.values()) for _, batch in local._parsed_batches(spark, source, 2) for r in batch.to_pylist()]
    assert in_driver == [tuple(r) for r in fast]
    monkeypatch.setattr(arrow, "supported", lambda layout, headers: "forced for the test")
    slow = sorted(parse_input(spark, source).collect(), key=lambda r: r["row_id"])
    return fast, slow


def test_arrow_reader_equals_python_reader_on_dac(spark, tmp_path, monkeypatch):
    import numpy as np

    rng = np.random.default_rng(3)
    folder = tmp_path / "in"
    folder.mkdir()
    (folder / "a.tsv").write_text("\n".join(_mixed_lines(rng, 1500)) + "\n")     # several blocks of 4 KiB
    with gzip.open(folder / "b.tsv.gz", "wt") as fh:
        fh.write("\n".join(_mixed_lines(rng, 700)) + "\r\n")
    fast, slow = _parsed_both_ways(spark, cfg_with(f"input.path={folder}", "input.numeric=[I1]",
                                                   "input.categorical=[C1,C26]"), monkeypatch)
    assert len(fast) == 2200 and fast == slow
    assert sum(r["_reason"] is None for r in fast) > 1000 and sum(r["_reason"] is not None for r in fast) > 100


def test_arrow_reader_equals_python_reader_on_csv_with_time(spark, tmp_path, monkeypatch):
    import numpy as np

    rng = np.random.default_rng(4)
    header = "label,I1,C1,I2,C2,ts"
    for name in ("x.csv", "y.csv"):
        (tmp_path / name).write_text("\n".join([header, *_mixed_lines(rng, 900, header.split(","))]) + "\n")
    cfg = cfg_with(f"input.path={tmp_path}/*.csv", "input.format=csv", "input.numeric=[I1,I2]",
                   "input.categorical=[C1,C2]", "input.time=ts")
    fast, slow = _parsed_both_ways(spark, cfg, monkeypatch)
    assert len(fast) == 1800 and fast == slow
    assert {r["row_id"] & 0xFFFFFFFFFF for r in fast} == set(range(2, 902))
    assert any(r["ts"] == 1509984000 for r in fast)


@pytest.mark.parametrize("text_bytes, checkpointed", [(1000, True), (10 ** 15, False)])
def test_parsed_rows_are_kept_once_and_released(spark, text_bytes, checkpointed):
    """Small input on a local master: a local checkpoint; input too large for the heap: a cache. Either
    way the rows are computed once and release() frees them."""
    from ctr_pipeline.readers.spark import keep_rows

    before = set(dict(spark.sparkContext._jsc.getPersistentRDDs()))
    calls = spark.sparkContext.accumulator(0)

    def counted(batches):
        for b in batches:
            calls.add(b.num_rows)
            yield b

    df = spark.range(0, 500, numPartitions=2).mapInArrow(counted, "id long")
    kept_df, kept = keep_rows(spark, df, text_bytes)
    assert kept.checkpointed is checkpointed
    assert kept_df.count() == 500 and kept_df.agg({"id": "sum"}).first()[0] == sum(range(500))
    assert calls.value == 500                      # computed once, then read from the kept blocks
    assert set(dict(spark.sparkContext._jsc.getPersistentRDDs())) != before   # kept until released
    kept.release()
    assert set(dict(spark.sparkContext._jsc.getPersistentRDDs())) == before


def test_local_paths_are_listed_by_python_as_hadoop_lists_them(spark, tmp_path):
    """Files, directories (recursively, hidden ones too), globs of * and ?, file: URIs and relative paths: the
    same files and sizes as Hadoop's listing; Hadoop-only glob syntax and other schemes are left to Hadoop."""
    from ctr_pipeline.readers.local import local_files
    from ctr_pipeline.readers.spark import hadoop_files

    logs = tmp_path / "logs"
    for name, size in (("day1.tsv", 3), ("day2.tsv.gz", 5), ("_SUCCESS", 0), (".part.crc", 1), ("sub/day3.tsv", 7),
                       (".hidden/day4.tsv", 2), ("day10.tsv", 4)):
        (logs / name).parent.mkdir(parents=True, exist_ok=True)
        (logs / name).write_bytes(b"x" * size)
    for uri in (str(logs), f"{logs}/", f"file:{logs}", f"file://{logs}", f"{logs}/day?.tsv", f"{logs}/*",
                f"{logs}/*.tsv*", os.path.relpath(logs / "day1.tsv"), f"{tmp_path}/*/sub", f"{logs}/missing*",
                f"{logs}/missing.tsv"):   # (relative: to the working directory, where the JVM started too)
        assert sorted(local_files(uri)) == sorted(hadoop_files(spark, uri)), uri
    for uri in (f"{logs}/day{{1,2}}.tsv", f"{logs}/day[12].tsv", "s3a://bucket/logs", "hdfs:///logs"):
        assert local_files(uri) is None, uri


def test_codecs_from_the_suffix_table_match_hadoop(spark):
    """A session not started answers the codec question from Hadoop's suffixes, as Hadoop itself does."""
    from ctr_pipeline.readers import arrow
    from ctr_pipeline.schema import SparkConfig
    from ctr_pipeline.spark import LazySession

    def never():
        raise AssertionError("no session should start")

    uris = [f"file:/x/a{suffix}" for suffix in ("", ".tsv", ".gz", ".GZ", ".tar.gz", ".bz2", ".deflate", ".lz4",
                                                 ".snappy", ".zst", ".zstd", ".xz", ".lzo", ".br")]
    assert arrow.codecs(LazySession(never, SparkConfig(master="local[2]")), uris) == arrow.codecs(spark, uris)
