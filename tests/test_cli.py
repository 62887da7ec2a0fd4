"""The CLI as a user runs it: end to end on demo data, and one-line exit-2 errors for mistakes."""
import json
import os
import re
import stat
import subprocess
import sys
from pathlib import Path

import pytest

from ctr_pipeline.javacheck import parse_java_major

from .conftest import REPO, cli, cli_env, copy_of_sampled_run, run_outputs


def run_cli(*args, env=None, timeout=600):
    return subprocess.run(cli(*args), capture_output=True, text=True, cwd=REPO, env=env or cli_env(),
                          timeout=timeout)


def assert_user_error(proc, *fragments):
    assert proc.returncode == 2, proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("ctr-pipeline: error: "), proc.stderr
    assert "Traceback" not in proc.stderr
    for fragment in fragments:
        assert fragment in lines[0]


RUN_ARGS = ["--set", "training.n_estimators=20", "--set", "spark.driver_memory=1g", "--master", "local[2]"]


# What a JVM leaves in its temporary directory (Java ignores TMPDIR) when nothing redirects it.
JVM_LEFTOVERS = ("spark-", "blockmgr-", "liblz4-java", "snappy-", "ctr-pipeline-")


def jvm_leftovers() -> set[str]:
    return {p.name for p in Path("/tmp").iterdir() if p.name.startswith(JVM_LEFTOVERS)}


@pytest.fixture(scope="module")
def demo_run(tmp_path_factory):
    """8,000 demo rows made by the CLI and one uninterrupted `run` on them (fake secrets planted), with
    its own TMPDIR; returns what the run left there and in /tmp too. Its java passes the version check but
    cannot start a JVM: a default run on a local master and run directory works in the driver throughout."""
    where = tmp_path_factory.mktemp("cli-run")
    data, run, tmp = where / "demo.tsv.gz", where / "run", where / "tmp"
    tmp.mkdir()
    made = run_cli("demo-data", "--rows", "8000", "--seed", "3", "--out", str(data))
    assert made.returncode == 0 and "wrote 8,000 rows" in made.stdout
    env = {**cli_env(), **PLANTED_ENV, "TMPDIR": str(tmp),   # fake credentials: none may be written or printed
           "JAVA_HOME": str(fake_java(where, "17.0.15"))}
    before = jvm_leftovers()
    proc = run_cli("run", "--input", str(data), "--out", str(run), *RUN_ARGS,
                   "--set", f"spark.conf={{'{SECRET_CONF_KEY}': '{PLANTED_CONF}'}}", env=env)
    proc.left_behind = sorted(p.name for p in tmp.iterdir()) + sorted(jvm_leftovers() - before)
    return data, run, proc


@pytest.mark.spark
def test_demo_data_then_run_end_to_end(demo_run):
    data, run, proc = demo_run
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert_no_planted_secret(proc.stdout + proc.stderr, run)
    assert "test: AUC 0." in proc.stdout and "MXE (log loss) 0." in proc.stdout
    for stage in ("sample", "features", "train", "evaluate"):
        assert f"{stage}: started" in proc.stderr and f"{stage}: done in" in proc.stderr
    assert re.search(r"^  train +[0-9.]+ +[0-9,]+  train 6,400, validation 800$", proc.stdout, re.M), \
        proc.stdout                                                        # rows/s; validation for early stopping
    assert re.search(r"^  model: \d+ trees \(hist, cpu, the driver, 2 thread\(s\)\), best iteration \d+$", proc.stdout,
                     re.M)
    for noise in ("training-logloss", "XGBoost-PySpark", "SparkStringUtils", "All paths were ignored"):
        assert noise not in proc.stderr, noise
    manifest = json.loads((run / "manifest.json").read_text())
    assert set(manifest["stages"]) == {"sample", "features", "train", "evaluate"}
    assert manifest["stages"]["sample"]["details"]["input"]["rows_read"] == 8_000
    metrics = json.loads((run / "evaluation" / "metrics.json").read_text())
    assert metrics["test"]["auc"] > 0.6
    assert manifest["config"]["spark"]["conf"][SECRET_CONF_KEY] == "*** (redacted)"
    [log] = (run / "logs").iterdir()
    assert f"  log: {log}" in proc.stdout and "train: done in" in log.read_text()
    assert not (run / "run.lock").exists() and not (run / ".staging").exists()   # nothing left half-done
    assert proc.left_behind == []                        # no Spark, JVM or mrjob files outside the run
    again = run_cli("run", "--out", str(run))            # the run's recorded config; everything is done
    assert again.returncode == 0 and again.stderr.count("already complete") == 4


# SIGKILL of the whole process group (driver, JVM, Python workers) while one stage runs, then the same
# command again: the stale lock is taken over, the killed stage's staging swept, and the outputs equal the
# uninterrupted run's. Each stage is made to work on Spark (its driver engine would finish 8,000 rows within
# the wait): the Spark sample and features engines give the driver engines' outputs, so the demo run is
# their reference; xgboost.spark's model and Spark-scored segments get an uninterrupted run of their own.
# Killing during features runs by default; the other stages in `make test-all`.
ON_SPARK = {"sample": ["--set", "sampling.engine=spark"], "features": ["--set", "features.engine=spark"],
            "train": ["--set", "training.engine=spark"], "evaluate": ["--set", "evaluation.segment_by=C9"]}


@pytest.mark.spark
@pytest.mark.parametrize("stage", [pytest.param("sample", marks=pytest.mark.slow), "features",
                                   pytest.param("train", marks=pytest.mark.slow),
                                   pytest.param("evaluate", marks=pytest.mark.slow)])
def test_killed_during_a_stage_then_rerun_gives_the_same_outputs(demo_run, tmp_path, stage):
    import signal
    import time

    data, reference, proc = demo_run
    assert proc.returncode == 0, proc.stderr[-3000:]
    run, err_path, tmp = tmp_path / "run", tmp_path / "first.err", tmp_path / "tmp"
    tmp.mkdir()
    env = {**cli_env(), "TMPDIR": str(tmp)}
    args = ["run", "--input", str(data), "--out", str(run), *RUN_ARGS, *ON_SPARK[stage]]
    if stage in ("train", "evaluate"):
        own = run_cli("run", "--input", str(data), "--out", str(tmp_path / "reference"), *RUN_ARGS, *ON_SPARK[stage])
        assert own.returncode == 0, own.stderr[-3000:]
        reference = tmp_path / "reference"
    with open(err_path, "w") as err:
        first = subprocess.Popen(cli(*args), cwd=REPO, env=env, stdout=subprocess.DEVNULL, stderr=err,
                                 start_new_session=True)
    try:
        deadline = time.time() + 300
        while f"{stage}: started" not in err_path.read_text():
            assert first.poll() is None and time.time() < deadline, err_path.read_text()[-2000:]
            time.sleep(0.2)
        time.sleep(2.0)                                         # into the stage's Spark work
        assert first.poll() is None, err_path.read_text()[-2000:]
    finally:
        os.killpg(first.pid, signal.SIGKILL)
        first.wait()
    assert (run / "run.lock").exists()                          # left by the killed command
    manifest = json.loads((run / "manifest.json").read_text()) if (run / "manifest.json").exists() else {}
    assert manifest.get("stages", {}).get(stage, {}).get("status") != "complete"
    assert [p.name for p in tmp.iterdir()] != []                 # the killed JVMs' scratch, left for now
    again = run_cli(*args, env=env)
    assert again.returncode == 0, again.stderr[-3000:]
    assert "removing a stale lock" in again.stderr
    assert run_outputs(run) == run_outputs(reference)
    assert not (run / "run.lock").exists() and not (run / ".staging").exists()
    assert [p.name for p in tmp.iterdir()] == []                 # swept by the rerun, its own removed


@pytest.mark.spark
def test_java_out_of_memory_kills_the_driver_and_is_named_with_the_setting(demo_run, tmp_path):
    """A real OutOfMemoryError: a Parquet batch of 1e8 rows cannot fit in a 512m heap. Spark's handler
    ends the JVM; the user sees one line with the cause and the setting, not py4j's 'Connection refused'."""
    data, reference, proc = demo_run
    run = copy_of_sampled_run(reference, tmp_path)
    again = run_cli("features", "--out", str(run), "--master", "local[2]", "--set", "spark.driver_memory=512m",
                    "--set", "features.engine=spark",
                    "--set", "spark.conf={'spark.sql.parquet.columnarReaderBatchSize': 100000000}")
    assert again.returncode == 1, again.stderr[-3000:]
    [line] = [x for x in again.stderr.splitlines() if x.startswith("ctr-pipeline:")] or [again.stderr[-3000:]]
    assert line.startswith("ctr-pipeline: failed: features stage failed: Spark's driver JVM died: Java ran out of "
                           "memory (OutOfMemoryError: Java heap space): raise spark.driver_memory"), line
    assert "Traceback" not in again.stderr and "ERROR" not in again.stderr and "Connection refused" not in line, \
        again.stderr
    [log] = (run / "logs").iterdir()
    assert f"(full trace: {log})" in line and "java.lang.OutOfMemoryError" in log.read_text()
    assert not (run / "run.lock").exists() and not (run / ".staging").exists() and not (run / "features").exists()


PLANTED_ENV = {"AWS_ACCESS_KEY_ID": "AKIAPLANTEDFAKEKEY01", "AWS_SECRET_ACCESS_KEY": "planted/Fake+Secret/0123456789",
               "AWS_SESSION_TOKEN": "PlantedFakeSessionToken0123456789"}
SECRET_CONF_KEY = "spark.hadoop.fs.s3a.secret.key"
PLANTED_CONF = "PlantedConfSecret42"


def assert_no_planted_secret(output: str, run: Path) -> None:
    """Neither the console nor any file of the run directory (manifest, logs, reports, outputs) holds a
    planted secret."""
    planted = [*PLANTED_ENV.values(), PLANTED_CONF]
    assert not [s for s in planted if s in output]
    for path in run.rglob("*"):
        if path.is_file():
            raw = path.read_bytes()
            assert not [s for s in planted if s.encode() in raw], path


def test_unknown_config_key_exits_2_naming_it(tmp_path):
    cfg = tmp_path / "bad.yaml"
    cfg.write_text("training:\n  max_depth: 4\n  num_trees: 10\n")
    proc = run_cli("run", "--config", str(cfg), "--input", "x.tsv", "--out", str(tmp_path / "run"))
    assert_user_error(proc, f"{cfg} line 3", "unknown key 'training.num_trees'")


@pytest.mark.parametrize("args, fragment", [
    (["run", "--out"], "argument --out: expected one argument"),
    (["trian", "--out", "x"], "invalid choice: 'trian'"),
    (["run", "--out", "RUN", "--set", "training.max_depth=0"], "training.max_depth: must be >= 1"),
    (["run", "--out", "RUN", "--input", "/nonexistent/file.tsv"], "input '/nonexistent/file.tsv' does not exist"),
    (["run", "--out", "RUN"], "no input: pass --input PATH"),
    (["run", "--out", "RUN", "--input", "x", "--master", "mesos://x"], "is not a Spark master"),
    (["run", "--out", "RUN", "--set", "spark.driver_memory=48m"], "below the 512m Spark needs"),
    (["run", "--out", "RUN", "--set", "spark.driver_memory=4gig"], "'4gig' is not a JVM memory size"),
    (["demo-data", "--rows", "0", "--out", "x.tsv"], "--rows must be at least 1"),
    (["sample", "--out", "RUN", "--sizes", "train=10,tset=5"], "expected SET=SIZE items"),
    (["sample", "--out", "RUN", "--sizes", "train=lots"], "'lots' is neither a row count nor a fraction"),
    (["sample", "--out", "RUN", "--sizes", "train=0.9,test=0.2"], "sum to 1.2, more than 1"),
])
def test_user_mistakes_exit_2_with_one_line(tmp_path, args, fragment):
    args = [a.replace("RUN", str(tmp_path / "run")) for a in args]
    assert_user_error(run_cli(*args), fragment)


def test_clicks_counted_not_flagged_exits_2_naming_label_and_file(tmp_path):
    data = tmp_path / "log.csv"
    data.write_text("clicks,site\n" + "".join(f"{i % 3},s{i % 5}\n" for i in range(40)))
    proc = run_cli("run", "--out", str(tmp_path / "run"), "--input", str(data), "--set", "input.format=csv",
                   "--set", "input.label=clicks", "--set", "input.categorical=[site]")
    assert proc.returncode == 2 and "Traceback" not in proc.stderr
    last = proc.stderr.strip().splitlines()[-1]  # after the stage's progress lines
    assert last.startswith("ctr-pipeline: error: ") and proc.stderr.count("error:") == 1
    assert f"{data}: label column 'clicks' has values other than 0/1 on 13 row(s) (first: line 4" in last


def fake_java(tmp_path, version):
    home = tmp_path / "jdk"
    (home / "bin").mkdir(parents=True)
    java = home / "bin" / "java"
    java.write_text(f'#!/bin/sh\necho \'openjdk version "{version}" 2020-01-01\' >&2\n')
    java.chmod(java.stat().st_mode | stat.S_IEXEC)
    return home


def test_old_java_is_one_line_before_spark(tmp_path, demo_tsv):
    env = cli_env()
    env["JAVA_HOME"] = str(fake_java(tmp_path, "1.8.0_392"))
    proc = run_cli("run", "--input", str(demo_tsv), "--out", str(tmp_path / "run"), env=env)
    assert_user_error(proc, "java 8 found at", "need 17 or newer", "install Java 17")
    shell = subprocess.run(["sh", "scripts/check-java.sh"], cwd=REPO, env=env, capture_output=True, text=True)
    assert shell.returncode == 2 and "need 17 or newer" in shell.stderr


def test_missing_java_is_one_line(tmp_path, demo_tsv):
    env = cli_env()
    env.pop("JAVA_HOME", None)
    env["PATH"] = str(tmp_path)                          # no java anywhere
    proc = run_cli("run", "--input", str(demo_tsv), "--out", str(tmp_path / "run"), env=env)
    assert_user_error(proc, "java not found", "install Java 17")
    shell = subprocess.run(["/bin/sh", "scripts/check-java.sh"], cwd=REPO, env=env, capture_output=True, text=True)
    assert shell.returncode == 2 and "java not found" in shell.stderr


@pytest.mark.parametrize("output, major", [('openjdk version "17.0.15" 2025-04-15', 17),
                                           ('java version "1.8.0_392"', 8), ('openjdk version "21" 2023', 21),
                                           ("garbage", None)])
def test_parse_java_major(output, major):
    assert parse_java_major(output) == major


def test_sampling_flags_become_config(tmp_path):
    proc = run_cli("config", "--set", "sampling.seed=1")
    assert proc.returncode == 0
    from ctr_pipeline.cli import build_parser, config_from_args

    args = build_parser().parse_args(["sample", "--out", str(tmp_path / "r"), "--sizes",
                                      "train=100000,validation=0.1,test=0.5", "--seed", "9", "--delta", "1e-6",
                                      "--stratify-by", "label", "--engine", "mrjob"])
    cfg = config_from_args(args, None)
    assert (cfg.sampling.train, cfg.sampling.validation, cfg.sampling.test) == (100000, 0.1, 0.5)
    assert isinstance(cfg.sampling.train, int) and isinstance(cfg.sampling.test, float)
    assert (cfg.sampling.seed, cfg.sampling.delta, cfg.sampling.stratify_by) == (9, 1e-6, "label")
    assert cfg.source_of("sampling.train") == "--sizes" and cfg.sampling.engine == "mrjob"


def test_config_command_shows_sources(tmp_path):
    cfg = tmp_path / "c.yaml"
    cfg.write_text("training:\n  max_depth: 4\n")
    proc = run_cli("config", "--config", str(cfg), "--set", "sampling.seed=9")
    assert proc.returncode == 0
    assert f"max_depth: 4  # {cfg} line 2" in proc.stdout and "seed: 9  # --set sampling.seed" in proc.stdout


@pytest.mark.spark
def test_spark_submit_entry_point(tmp_path, demo_tsv):
    """EMR steps call spark-submit on ctr_pipeline/spark_submit.py: the master comes from spark-submit."""
    submit = Path(sys.executable).parent / "spark-submit"
    script = REPO / "ctr_pipeline" / "spark_submit.py"
    env = cli_env()
    env["PYTHONPATH"] = str(REPO) + os.pathsep + env.get("PYTHONPATH", "")
    proc = subprocess.run([str(submit), "--master", "local[1]", "--driver-memory", "1g",
                           f"--driver-java-options=-Djava.io.tmpdir={tmp_path}", str(script), "sample",
                           "--input", str(demo_tsv), "--out", str(tmp_path / "run")],
                          capture_output=True, text=True, cwd=REPO, env=env, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    manifest = json.loads((tmp_path / "run" / "manifest.json").read_text())
    assert manifest["stages"]["sample"]["status"] == "complete"
    assert sum(manifest["stages"]["sample"]["rows"].values()) == 5_000
