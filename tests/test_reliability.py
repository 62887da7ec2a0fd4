"""Failures as a user meets them: one line naming the cause and the log file, the full trace in that log,
and one writer per run directory."""
import gzip
import json
import logging
import re

import pytest

from ctr_pipeline.errors import RunFailed, UserError
from ctr_pipeline.failures import explain
from ctr_pipeline.invocation import invocation_log, one_line_failures
from ctr_pipeline.storage import Location

from .conftest import REPO, cli, cli_env

SPARK_EOF = """An error occurred while calling o123.collectToPython.
: org.apache.spark.SparkException: Job aborted due to stage failure: Task 0 in stage 3.0 failed 1 times, most
recent failure: Lost task 0.0 in stage 3.0 (TID 7) (127.0.0.1 executor driver):
org.apache.spark.SparkException: Encountered error while reading file file:///data/logs/day%201.tsv.gz. Details:
\tat org.apache.spark.sql.errors.QueryExecutionErrors$.cannotReadFilesError(QueryExecutionErrors.scala:863)
Caused by: java.io.EOFException: Unexpected end of input stream
\tat org.apache.hadoop.io.compress.DecompressorStream.decompress(DecompressorStream.java:165)
"""


class FakeJavaError(Exception):
    pass


@pytest.mark.parametrize("text, fragments", [
    (SPARK_EOF, ["input file file:///data/logs/day%201.tsv.gz is truncated or corrupt",
                 "Unexpected end of input stream", "fetch the file again, or move it out of the input"]),
    ("java.io.IOException: No space left on device\n\tat java.io.FileOutputStream.writeBytes",
     ["out of disk space", "spark.local.dir"]),
    ("Caused by: java.lang.OutOfMemoryError: Java heap space\n\tat java.util.Arrays.copyOf",
     ["Java ran out of memory (OutOfMemoryError: Java heap space)", "spark.driver_memory"]),
    ("Job aborted due to stage failure: Task 1 in stage 4.0 failed 4 times, most recent failure: Lost task 1.3 "
     "in stage 4.0 (TID 19) (10.0.0.5 executor 2): ExecutorLostFailure (executor 2 exited caused by one of the "
     "running tasks) Reason: Remote RPC client disassociated.",
     ["executor was lost 4 times", "stage 4.0", "ExecutorLostFailure (executor 2 exited"]),
    ("org.apache.spark.SparkException: Job aborted due to stage failure: Master removed our application: FAILED",
     ["master removed the application (FAILED)", "check the workers' logs"]),
    ("Caused by: java.io.FileNotFoundException: File file:/data/x/part-0001.parquet does not exist\n\tat x",
     ["file /data/x/part-0001.parquet went missing"]),
    ("Traceback (most recent call last):\n  File \"x.py\", line 3, in f\nZeroDivisionError: division by zero",
     ["ZeroDivisionError: division by zero"]),
])
def test_known_causes_are_named_with_what_to_do(text, fragments):
    line = explain(FakeJavaError(text))
    assert "\n" not in line
    for fragment in fragments:
        assert fragment in line, line


def test_failure_becomes_one_line_and_the_trace_goes_to_the_log(tmp_path):
    with pytest.raises(RunFailed) as caught:
        with invocation_log(Location.of(tmp_path / "logs")) as path, one_line_failures(path):
            raise FakeJavaError(SPARK_EOF)
    message = str(caught.value)
    assert "\n" not in message and message.endswith(f"(full trace: {path})")
    assert "day%201.tsv.gz is truncated or corrupt" in message
    text = open(path).read()
    assert "Traceback (most recent call last)" in text and "FakeJavaError" in text and "EOFException" in text
    with pytest.raises(UserError):            # a user mistake passes through unchanged, and is logged
        with invocation_log(Location.of(tmp_path / "logs")) as path2, one_line_failures(path2):
            raise UserError("bad flag")
    assert "stopped: bad flag" in open(path2).read()
    assert not [h for h in logging.getLogger("ctr_pipeline.trace").handlers if isinstance(h, logging.FileHandler)]


def run_cli(*args):
    import subprocess

    return subprocess.run(cli(*args), capture_output=True, text=True, cwd=REPO, env=cli_env(), timeout=600)


def test_a_second_writer_on_the_same_run_directory_is_refused(tmp_path, demo_tsv):
    from ctr_pipeline.locks import Lock

    run = tmp_path / "run"
    with Lock(Location.of(run / "run.lock"), "run", heartbeat=0):    # held by this (live) process
        proc = run_cli("sample", "--input", str(demo_tsv), "--out", str(run))
    assert proc.returncode == 2, proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert lines[-1].startswith("ctr-pipeline: error: ") and "Traceback" not in proc.stderr
    assert f"run directory {run} is locked by" in lines[-1] and "(run, since" in lines[-1]
    assert not (run / "manifest.json").exists()


@pytest.mark.spark
def test_truncated_gzip_is_one_line_naming_the_file(spark, tmp_path, demo_tsv):
    """At the command line (the driver's reader) and in Spark's reader: one message naming the file."""
    from ctr_pipeline.config import build_config, flag_layer
    from ctr_pipeline.errors import InputDataError
    from ctr_pipeline.readers.spark import read_input

    raw = gzip.decompress(demo_tsv.read_bytes())
    packed = gzip.compress(raw[: 400_000])
    bad = tmp_path / "cut.tsv.gz"
    bad.write_bytes(packed[: len(packed) // 2])                     # cut mid-stream, as a failed copy leaves it
    good = tmp_path / "whole.tsv.gz"
    good.write_bytes(packed)
    run = tmp_path / "run"
    proc = run_cli("sample", "--input", str(tmp_path / "*.tsv.gz"), "--out", str(run), "--set",
                   "spark.driver_memory=1g")
    assert proc.returncode == 2, proc.stderr[-3000:]
    lines = proc.stderr.strip().splitlines()
    assert "Traceback" not in proc.stderr and "ERROR" not in proc.stderr, proc.stderr[-3000:]
    assert sum(line.startswith("ctr-pipeline:") for line in lines) == 1
    assert lines[-1].startswith("ctr-pipeline: error: 1 input file(s) cannot be read to their end, truncated or "
                                f"corrupt: {bad} (EOFError: Compressed file ended before the end-of-stream marker "
                                "was reached)")
    assert "The run stopped rather than drop their rows (input.max_bad_share counts" in lines[-1]
    logs = list((run / "logs").glob("*.log"))
    assert len(logs) == 1 and "stopped: 1 input file(s) cannot be read" in logs[0].read_text()
    assert sorted(p.name for p in run.iterdir()) == ["logs"]         # no lock, no staging, no manifest left
    cfg = build_config([flag_layer("--input", "input.path", str(tmp_path / "*.tsv.gz"))])
    with pytest.raises(InputDataError, match=re.escape(f"1 input file(s) cannot be read to their end, truncated or "
                                                       f"corrupt: {bad} (java.io.EOFException: Unexpected end of "
                                                       "input stream)")):
        read_input(spark, cfg, str(tmp_path / "q"))


def small_disk_available() -> str:
    """Why a small private file system cannot be mounted here ('' when it can): the disk-full test runs
    the CLI in a user and mount namespace (``unshare -rm``) on a tmpfs of a few hundred kilobytes."""
    import shutil
    import subprocess

    if not shutil.which("unshare"):
        return "no unshare(1) on this machine"
    probe = subprocess.run(["unshare", "-rm", "sh", "-c", "mount -t tmpfs -o size=64k tmpfs /mnt"],
                           capture_output=True, text=True)
    return "" if probe.returncode == 0 else f"unshare -rm cannot mount a tmpfs here: {probe.stderr.strip()}"


@pytest.mark.spark
def test_a_full_disk_is_one_line_naming_the_cause_and_the_setting(tmp_path, demo_tsv):
    """A real ENOSPC: the run directory on a 300 KB tmpfs fills while the sample stage writes its sets."""
    import shlex
    import subprocess

    why = small_disk_available()
    if why:
        pytest.skip(why)
    small, kept = tmp_path / "small", tmp_path / "kept"
    small.mkdir()
    kept.mkdir()
    run = small / "run"
    command = " ".join(shlex.quote(a) for a in cli("sample", "--input", str(demo_tsv), "--out", str(run),
                                                   "--master", "local[2]", "--set", "spark.driver_memory=1g"))
    script = (f"mount -t tmpfs -o size=300k tmpfs {small} && {{ {command}; echo $? > {kept}/rc; "
              f"ls -A {run} > {kept}/listing; cp -r {run}/logs {kept}/logs; }}")
    proc = subprocess.run(["unshare", "-rm", "sh", "-c", script], capture_output=True, text=True, cwd=REPO,
                          env=cli_env(), timeout=600)
    assert (kept / "rc").read_text().strip() == "1", proc.stderr[-3000:]
    lines = [x for x in proc.stderr.splitlines() if x.startswith("ctr-pipeline:")]
    assert len(lines) == 1 and "Traceback" not in proc.stderr and "ERROR" not in proc.stderr, proc.stderr[-3000:]
    assert lines[0].startswith("ctr-pipeline: failed: sample stage failed: out of disk space (No space left on "
                               "device)") and "spark.local.dir" in lines[0], lines[0]
    assert (kept / "listing").read_text().split() == ["logs"]        # no lock, no staging, nothing published
    [log] = (kept / "logs").iterdir()
    trace_at = lines[0].rsplit("(full trace: ", 1)[1]
    if trace_at.startswith(str(run / "logs")):                        # the log had room for the trace
        assert "No space left on device" in log.read_text()
    else:                                                             # it did not: the trace went elsewhere
        assert "could not be written" in trace_at


def test_an_unexpected_failure_exits_1_with_one_line_and_the_log(tmp_path, demo_tsv, monkeypatch, capsys):
    from ctr_pipeline import cli, pipeline

    def boom(*args, **kwargs):
        raise FakeJavaError("something deep\nValueError: the worker's real complaint")

    monkeypatch.setattr(pipeline, "run_stages", boom)
    run = tmp_path / "run"
    assert cli.main(["sample", "--input", str(demo_tsv), "--out", str(run)]) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("ctr-pipeline: failed: ValueError: the worker's real complaint")
    log_path = err[0].rsplit("(full trace: ", 1)[1].rstrip(")")
    text = open(log_path).read()
    assert "Traceback (most recent call last)" in text and "FakeJavaError" in text
    assert not (run / "run.lock").exists()


def test_secrets_are_redacted_from_config_records_and_text(monkeypatch):
    from ctr_pipeline.config import Layer, build_config, describe, section_hash, to_dict
    from ctr_pipeline.locks import Holder
    from ctr_pipeline.redact import REDACTED, RedactSecrets, redact_text, without_redacted

    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "envFakeSecret/0123456789")
    conf = {"spark.hadoop.fs.s3a.secret.key": "confFakeSecret", "spark.hadoop.fs.s3a.access.key": "AKIAFAKE",
            "spark.sql.shuffle.partitions": 8}
    cfg = build_config([Layer("t", {"spark": {"conf": conf}})])
    recorded = to_dict(cfg)["spark"]["conf"]
    assert recorded == {"spark.hadoop.fs.s3a.secret.key": REDACTED, "spark.hadoop.fs.s3a.access.key": REDACTED,
                        "spark.sql.shuffle.partitions": 8}
    assert "confFakeSecret" not in describe(cfg)
    rotated = build_config([Layer("t", {"spark": {"conf": {**conf, "spark.hadoop.fs.s3a.secret.key": "other"}}}),
                            Layer("u", {"training": {"max_depth": 3}})])
    assert section_hash(rotated, "spark") == section_hash(cfg, "spark")    # a rotated key changes no result
    assert without_redacted(to_dict(cfg))["spark"]["conf"] == {"spark.sql.shuffle.partitions": 8}
    text = "boto failed with envFakeSecret/0123456789; --set spark.conf={'fs.s3a.secret.key': 'confFakeSecret'}"
    assert "FakeSecret" not in redact_text(text) and "fs.s3a.secret.key" in redact_text(text)
    record = logging.LogRecord("ctr_pipeline", logging.ERROR, "x", 1, "key %s", ("envFakeSecret/0123456789",), None)
    assert RedactSecrets().filter(record) and "FakeSecret" not in record.getMessage()
    monkeypatch.setattr("sys.argv", ["ctr-pipeline", "run", "--set", "spark.conf={'x.password': 'pw-FakeSecret'}"])
    assert "FakeSecret" not in Holder.me("run").command


GOOD = "\t".join(["1"] + ["5"] * 13 + ["68fd1e64"] * 26)
CSV = {"format": "csv", "label": "click", "categorical": ["site"], "numeric": ["price"]}
# name: (files, input settings, expected: (rows read, quarantined) or a fragment of the one error line)
BAD_INPUTS = {
    "zero-byte gzip": ({"x.tsv.gz": b""}, {}, "input is empty (no data rows in 1 file(s))"),
    "empty gzip": ({"x.tsv.gz": gzip.compress(b"")}, {}, "input is empty (no data rows in 1 file(s))"),
    "CRLF line ends": ({"x.tsv": ((GOOD + "\r\n") * 3).encode()}, {}, (3, 0)),
    "byte order mark": ({"x.tsv": ("\ufeff" + GOOD + "\n" + GOOD + "\n").encode()}, {}, (2, 0)),
    "no final newline": ({"x.tsv": (GOOD + "\n" + GOOD).encode()}, {}, (2, 0)),
    "NUL byte in a field": ({"x.tsv": (GOOD + "\n" + GOOD.replace("68fd1e64", "68f\x00e64", 1)).encode()}, {},
                            (2, 0)),
    "not UTF-8 (latin-1)": ({"x.tsv": (GOOD + "\n").encode() + GOOD.replace("68fd1e64", "caf\xe9", 1).encode("latin-1")},
                            {}, (2, 0)),
    "2 MB line": ({"x.tsv": (GOOD + "\n" + GOOD.replace("68fd1e64", "x" * 2_000_000, 1)).encode()}, {}, (2, 0)),
    "short and long records": ({"x.tsv": (GOOD + "\n1\t2\n" + GOOD + "\tx\n" + GOOD).encode()}, {}, (4, 2)),
    "labels 1.0, -1, yes": ({"x.tsv": "\n".join("\t".join([lab] + ["5"] * 13 + ["68fd1e64"] * 26)
                                                 for lab in ["1.0", "-1", "yes", "0", "1"]).encode()}, {},
                            "label column 'label' has values other than 0/1 on 2 row(s) (first: line 2"),
    "DAC and CSV files in one directory": ({"a.tsv": (GOOD + "\n" + GOOD + "\n").encode(),
                                            "b.csv": b"click,site,price\n1,x,3\n"}, {}, (4, 2)),
    "CSV header only": ({"x.csv": b"click,site,price\n"}, CSV, "input is empty"),
    "CSV quoted delimiter and newline": ({"x.csv": b'click,site,price\n1,"a,b",3\n0,"multi\nline",4\n1,plain,5\n'},
                                         CSV, (4, 2)),
    "CSV column orders differ": ({"a.csv": b"click,site,price\n1,x,3\n", "b.csv": b"site,click,price\nz,0,4\n"},
                                 CSV, (2, 0)),
    "CSV file without a column": ({"a.csv": b"click,site,price\n1,x,3\n", "c.csv": b"click,site\n1,q\n"}, CSV,
                                  "c.csv: declared column(s) price not in the header"),
}


DEFAULT_CASES = {"zero-byte gzip", "CRLF line ends", "not UTF-8 (latin-1)", "short and long records",
                 "DAC and CSV files in one directory",
                 "labels 1.0, -1, yes", "CSV quoted delimiter and newline", "CSV file without a column"}


def _bad_input(tmp_path, case):
    from ctr_pipeline.config import Layer, build_config

    files, settings, expected = BAD_INPUTS[case]
    folder = tmp_path / "in"
    folder.mkdir()
    for name, data in files.items():
        (folder / name).write_bytes(data)
    return build_config([Layer("t", {"input": {"path": str(folder), "max_bad_share": 1.0, **settings}})]), expected


def _quarantined(folder):
    return sorted((json.loads(line) for p in folder.glob("part-*") for line in p.read_text().splitlines()),
                  key=lambda r: (r["file"], r["line"]))


@pytest.mark.spark
@pytest.mark.parametrize("case", [c if c in DEFAULT_CASES else pytest.param(c, marks=pytest.mark.slow)
                                  for c in BAD_INPUTS])
def test_bad_inputs_parse_quarantine_or_stop_with_one_message(spark, tmp_path, case):
    """Each kind of bad input either parses, is quarantined with file, line, field and reason (and the
    accounting holds: rows read = good + quarantined), or stops with one clear message; the driver's
    reader gives the same rows, quarantine records and messages."""
    from ctr_pipeline.errors import InputDataError
    from ctr_pipeline.readers.local import read_local
    from ctr_pipeline.readers.spark import open_input, read_input
    from ctr_pipeline.storage import Location

    cfg, expected = _bad_input(tmp_path, case)
    if isinstance(expected, str):
        with pytest.raises(InputDataError, match=re.escape(expected)):
            read_input(spark, cfg, str(tmp_path / "q"))
        return
    report = read_input(spark, cfg, str(tmp_path / "q"))
    try:
        good = sorted(tuple(r) for r in report.good.collect())
    finally:
        report.release()
    assert (report.rows_read, report.rows_bad) == expected and len(good) + report.rows_bad == report.rows_read
    if case == "CSV column orders differ":   # the driver's reader leaves these to Spark (the next test says why)
        return
    driver = read_local(spark, open_input(spark, cfg), Location.of(tmp_path / "dq"))
    assert (driver.rows_read, driver.rows_bad) == expected
    assert sorted(tuple(r.values()) for r in driver.good.to_pylist()) == good
    records = _quarantined(tmp_path / "q")
    assert records == _quarantined(tmp_path / "dq") and len(records) == report.rows_bad
    assert all(r["file"].startswith(str(cfg.input.path)) and r["line"] >= 1 and r["field"] and r["reason"]
               for r in records)


@pytest.mark.spark
@pytest.mark.parametrize("case", list(BAD_INPUTS))
def test_the_driver_reads_each_bad_input_as_expected(spark, tmp_path, case):
    """Every case of the table on the driver's reader alone (Spark's side of the slow-marked ones runs in
    ``make test-all``): the expected rows and quarantine, or the one message. Files whose CSV columns
    differ in order are left to Spark (the Arrow parser takes one layout)."""
    from ctr_pipeline.errors import InputDataError
    from ctr_pipeline.readers.local import local_problem, read_local
    from ctr_pipeline.readers.spark import open_input
    from ctr_pipeline.storage import Location

    cfg, expected = _bad_input(tmp_path, case)
    if isinstance(expected, str):
        with pytest.raises(InputDataError, match=re.escape(expected)):
            read_local(spark, open_input(spark, cfg), Location.of(tmp_path / "q"))
        return
    source = open_input(spark, cfg)
    if case == "CSV column orders differ":
        assert "CSV files with different column orders" in local_problem(spark, source)
        return
    assert local_problem(spark, source) is None
    report = read_local(spark, source, Location.of(tmp_path / "q"))
    assert (report.rows_read, report.rows_bad) == expected
    assert report.good.num_rows + report.rows_bad == report.rows_read
    assert len(_quarantined(tmp_path / "q")) == report.rows_bad


def test_scratch_of_a_gone_process_is_swept_and_a_live_ones_kept(tmp_path):
    import os
    import subprocess
    import sys

    from ctr_pipeline.scratch import owner_pid, sweep_stale

    gone = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True,
                          text=True, check=True)
    dead = tmp_path / f"ctr-pipeline-{gone.stdout.strip()}-abc"
    live = tmp_path / f"ctr-pipeline-{os.getppid()}-def"
    other = tmp_path / "ctr-pipeline-failure-x.log"              # a failure trace the user must read
    for path in (dead, live):
        (path / "spark-1").mkdir(parents=True)
        (path / "liblz4-java-1.so").write_bytes(b"\0")
    other.write_text("trace")
    assert owner_pid(dead.name) == int(gone.stdout) and owner_pid(other.name) is None
    assert sweep_stale(tmp_path) == [dead]
    assert not dead.exists() and live.is_dir() and other.is_file()


def test_jvms_of_a_session_use_its_scratch_directory(tmp_path):
    from ctr_pipeline.schema import SparkConfig
    from ctr_pipeline.spark import session_conf

    mine = SparkConfig(conf={"spark.driver.extraJavaOptions": "-Dmine=1"})
    local = session_conf(mine, "local[2]", tmp_path)
    assert local["spark.driver.extraJavaOptions"].endswith(f"-Djava.io.tmpdir={tmp_path} "
                                                           f"-Dctr.jvm.log={tmp_path / 'jvm-errors.log'} -Dmine=1")
    assert f"-Djava.io.tmpdir={tmp_path}" in local["spark.executor.extraJavaOptions"]
    remote = session_conf(SparkConfig(), "spark://10.0.0.1:7077", tmp_path)   # executors on other machines
    assert "java.io.tmpdir" not in remote["spark.executor.extraJavaOptions"]


def test_pysparks_hand_over_of_the_jvm_is_made_in_the_scratch_directory(monkeypatch):
    """pyspark passes the JVM's port through a temporary directory while the JVM starts: it is made in the
    process's scratch directory (swept after a kill), and Python's temporary directory is restored after."""
    import tempfile

    from pyspark.sql import SparkSession

    from ctr_pipeline.scratch import process_scratch
    from ctr_pipeline.schema import SparkConfig
    from ctr_pipeline.spark import get_session

    seen = []

    class Started:   # what get_session asks of the session it started (a cluster master: no local loggers)
        class sparkContext:
            master = "spark://10.0.0.1:7077"

            @staticmethod
            def setLogLevel(level):
                pass

    def start(builder):
        seen.append(tempfile.gettempdir())
        return Started

    monkeypatch.setattr(SparkSession.Builder, "getOrCreate", start)
    before = tempfile.gettempdir()
    assert get_session(SparkConfig(master="local[1]")) is Started
    assert seen == [str(process_scratch())] and tempfile.gettempdir() == before != seen[0]


@pytest.mark.spark
def test_a_file_removed_while_spark_reads_is_named(spark, tmp_path):
    """A real FileNotFoundException: Parquet listed when the plan was made, one file deleted before the scan."""
    from ctr_pipeline.failures import explain

    path = tmp_path / "set"
    spark.range(1000).repartition(2).write.parquet(str(path))
    df = spark.read.parquet(str(path))
    gone = sorted(path.glob("*.parquet"))[0]
    gone.unlink()
    with pytest.raises(Exception) as info:
        df.count()
    line = explain(info.value)
    assert line.startswith(f"file {gone} went missing"), line
    assert "run the same command again" in line


def test_a_dead_jvm_is_named_with_its_logged_cause_or_as_killed():
    from ctr_pipeline.failures import explain

    def py4j_call():
        exec(compile("raise ConnectionRefusedError(111, 'Connection refused')", "/x/py4j/clientserver.py", "exec"))

    with pytest.raises(ConnectionRefusedError) as info:
        py4j_call()
    oom = ("07:40:22 ERROR SparkUncaughtExceptionHandler: Uncaught exception in thread Thread[Executor task]\n"
           "java.lang.OutOfMemoryError: Java heap space\n\tat org.apache.spark.X.y(X.java:1)\n")
    assert explain(info.value, oom).startswith("Spark's driver JVM died: Java ran out of memory (OutOfMemoryError: "
                                               "Java heap space): raise spark.driver_memory")
    other = "07:40:22 ERROR Inbox: Ignoring error\njava.lang.IllegalStateException: odd\n"
    assert explain(info.value, other).startswith("Spark's driver JVM died after logging: Inbox: Ignoring error "
                                                 "java.lang.IllegalStateException: odd")
    assert "killed from outside" in explain(info.value, "")
    assert explain(ConnectionRefusedError(111, "Connection refused"), oom) == "[Errno 111] Connection refused"
