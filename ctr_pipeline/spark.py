"""The one place that creates a SparkSession: local by default, spark:// or yarn on request.

Under ``spark-submit`` (EMR steps) the master and interpreter come from spark-submit and are left
alone; elsewhere workers are pinned to this interpreter and bind to loopback.
"""
from __future__ import annotations

import contextlib
import logging
import os
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Optional

from .errors import ConfigError
from .javacheck import check_java
from .schema import SparkConfig
from .scratch import JVM_LOG, process_scratch

LOG4J_FILE = Path(__file__).with_name("log4j2.properties")


def under_spark_submit() -> bool:
    """True when this Python driver was launched by spark-submit (which owns the JVM and master)."""
    return "PYSPARK_GATEWAY_PORT" in os.environ


def check_master(master: str, where: str = "spark.master") -> None:
    ok = (master.startswith(("local", "spark://", "k8s://")) or master == "yarn")
    if not ok:
        raise ConfigError(f"{where}: {master!r} is not a Spark master; use local[N], spark://HOST:PORT or yarn")


JAVA_OPTIONS = ("spark.driver.extraJavaOptions", "spark.executor.extraJavaOptions")


def on_this_machine(master: str) -> bool:
    return master.startswith("local") or "127.0.0.1" in master or "localhost" in master


def session_conf(cfg: SparkConfig, master: str, tmpdir: Optional[Path] = None) -> dict[str, str]:
    """Spark properties for a session outside spark-submit (pure: testable without a JVM).

    ``tmpdir`` becomes ``java.io.tmpdir`` of the driver and, when the executors run on this machine,
    of theirs (Spark's local directories default to it). Java options from ``cfg.conf`` are appended
    to the pipeline's, so a user's ``-D`` of the same name wins.
    """
    driver = [f"-Dlog4j.configurationFile={LOG4J_FILE.as_uri()}"]
    executor = list(driver)
    if tmpdir is not None:
        driver += [f"-Djava.io.tmpdir={tmpdir}", f"-Dctr.jvm.log={tmpdir / JVM_LOG}"]
        if on_this_machine(master):
            executor.append(f"-Djava.io.tmpdir={tmpdir}")
    conf = {
        "spark.master": master,
        "spark.app.name": cfg.app_name,
        "spark.driver.memory": cfg.driver_memory,
        "spark.driver.extraJavaOptions": " ".join(driver),
        "spark.executor.extraJavaOptions": " ".join(executor),
        "spark.sql.session.timeZone": "UTC",
        "spark.ui.showConsoleProgress": "false",
        "spark.sql.execution.arrow.pyspark.enabled": "true",
        "spark.pyspark.python": sys.executable,
        "spark.pyspark.driver.python": sys.executable,
    }
    if master.startswith("local"):
        # Spark's 200 shuffle partitions are for clusters; a cached shuffle result keeps all of them (AQE
        # does not coalesce cached plans), and each later scan then runs 200 tasks: 3 s for a 26-row
        # group-by of the features stage's value tallies on 2 cores, against 0.3 s.
        conf["spark.sql.shuffle.partitions"] = str(4 * local_cores(master))
    if on_this_machine(master):
        conf["spark.driver.host"] = cfg.local_ip
        conf["spark.driver.bindAddress"] = cfg.local_ip
    for key, value in cfg.conf.items():
        key, value = str(key), str(value)
        conf[key] = f"{conf[key]} {value}" if key in JAVA_OPTIONS else value
    return conf


def get_session(cfg: SparkConfig, master: Optional[str] = None, extra_conf: Optional[dict[str, str]] = None):
    """Create (or reuse) the SparkSession for ``cfg``; ``master`` overrides ``cfg.master``;
    ``extra_conf`` (e.g. the S3A endpoint settings) goes under ``cfg.conf``, which may override it.

    Checks Java first so a missing JVM is one clear line, not a py4j traceback.
    """
    import tempfile

    from pyspark.sql import SparkSession

    builder = SparkSession.builder
    scratch = None
    for key, value in (extra_conf or {}).items():
        builder = builder.config(key, value)
    if under_spark_submit():
        for key, value in cfg.conf.items():
            builder = builder.config(str(key), str(value))
    else:
        check_java()
        master = master or cfg.master
        check_master(master)
        os.environ["PYSPARK_PYTHON"] = sys.executable
        os.environ["PYSPARK_DRIVER_PYTHON"] = sys.executable
        if master.startswith("local") or "127.0.0.1" in master:
            os.environ.setdefault("SPARK_LOCAL_IP", cfg.local_ip)
        scratch = process_scratch()
        for key, value in session_conf(cfg, master, scratch).items():
            builder = builder.config(key, value)
    # pyspark hands the JVM's port over through a temporary directory it removes once the JVM answers: made
    # in the scratch directory, a process killed while its JVM starts leaves nothing the next one won't sweep
    before = tempfile.tempdir
    if scratch is not None:
        tempfile.tempdir = str(scratch)
    try:
        spark = builder.getOrCreate()
    finally:
        tempfile.tempdir = before
    spark.sparkContext.setLogLevel(cfg.log_level)
    if spark.sparkContext.master.startswith("local"):
        quiet_task_failures(spark)
    return spark


# A failed task reaches the pipeline as the exception it receives (one line on the console, the whole Java
# and Python trace in the run's log file); with a local master the executor runs in the driver's JVM and
# these loggers would print the same trace again on the console, so there they write only to the JVM's
# error file (read back when the JVM dies). Executors of a cluster keep theirs in their own logs.
LOCAL_TASK_LOGGERS = ("org.apache.spark.scheduler.TaskSetManager", "org.apache.spark.executor.Executor",
                      "org.apache.spark.sql.execution.python",
                      "org.apache.spark.sql.execution.datasources.FileFormatWriter",   # a failed write job
                      "org.apache.spark.util.SparkUncaughtExceptionHandler")           # e.g. an OutOfMemoryError
# Loggers that say other things worth seeing: only the message that precedes a rethrown task failure goes.
LOCAL_TASK_MESSAGES = {"org.apache.spark.util.Utils": "Aborting task.*"}


def quiet_task_failures(spark) -> None:
    log4j = spark.sparkContext._jvm.org.apache.logging.log4j
    context = log4j.LogManager.getContext(False)
    config = context.getConfiguration()

    def own_config(name: str, level):
        logger = config.getLoggerConfig(name)
        if logger.getName() != name:           # only an ancestor's config exists: give this logger its own
            logger = log4j.core.config.LoggerConfig(name, level, True)
            config.addLogger(name, logger)
        return logger

    jvm_file = config.getAppender("jvmfile")
    for name in LOCAL_TASK_LOGGERS:
        logger = own_config(name, log4j.Level.ERROR)
        logger.setAdditive(False)
        if jvm_file is not None:
            logger.addAppender(jvm_file, log4j.Level.ERROR, None)
    result = log4j.core.Filter.Result
    for name, pattern in LOCAL_TASK_MESSAGES.items():
        own_config(name, config.getLoggerConfig(name).getLevel()).addFilter(
            log4j.core.filter.RegexFilter.createFilter(pattern, None, True, result.DENY, result.NEUTRAL))
    context.updateLoggers()


def stop_session(spark, drain_seconds: float = 10.0) -> None:
    """Stop ``spark`` once the tasks still running have ended (up to ``drain_seconds``).

    After a failed job, Spark lets the job's other running tasks finish on their own; stopping under them
    makes each fail noisily (a missing broadcast block, a null SparkEnv) on the console. A JVM that
    already died (its cause is what the user must see) is not a second error.
    """
    try:
        sc = spark.sparkContext
        sc.cancelAllJobs()
        tracker = sc._jsc.sc().statusTracker()
        deadline = time.monotonic() + drain_seconds
        while time.monotonic() < deadline and any(e.numRunningTasks() for e in tracker.getExecutorInfos()):
            time.sleep(0.1)
        spark.stop()
    except Exception as exc:   # noqa: BLE001 - py4j raises plain connection errors once the JVM is gone
        logging.getLogger("ctr_pipeline.trace").info("stopping Spark: %s", exc)


class LazySession:
    """A command's Spark session, started by ``factory`` on first use: every attribute but those below is the
    session's own (``.read``, ``.sparkContext``, ...), which starts it. Until then, with the configuration
    ``cfg`` of a local master outside spark-submit, :func:`shape` answers from the configuration, so that
    stages that work in the driver (the sample, features, train and evaluate stages' driver engines on a
    local run directory) start no JVM: about 2.5 s and half a GiB of a small run. Without ``cfg`` (a
    session the caller already holds) any question starts it."""

    def __init__(self, factory, cfg: Optional[SparkConfig] = None):
        self._factory, self._cfg, self._spark = factory, cfg, None

    @property
    def started(self):
        """The session, or None while it has not been started."""
        return self._spark

    def get(self):
        """The session, started now if it was not."""
        if self._spark is None:
            self._spark = self._factory()
        return self._spark

    def configured(self) -> Optional[dict[str, str]]:
        """The properties the session will have, while it is not started and they are known without it."""
        if self._spark is not None or self._cfg is None or under_spark_submit() \
                or not self._cfg.master.startswith("local"):
            return None
        return session_conf(self._cfg, self._cfg.master)

    def __getattr__(self, name: str):
        if name.startswith("_"):
            raise AttributeError(name)
        return getattr(self.get(), name)


def started(spark):
    """The running session of ``spark`` (a SparkSession or :class:`LazySession`), or None when not started."""
    return spark.started if isinstance(spark, LazySession) else spark


@dataclass(frozen=True)
class Shape:
    """What the driver engines ask of a session: its master, spark.task.cpus and default parallelism."""
    master: str
    task_cpus: int
    parallelism: int

    @property
    def local(self) -> bool:
        return self.master.startswith("local")

    @property
    def slots(self) -> int:
        """Concurrent task slots: cores / spark.task.cpus, at least 1. Local mode reads the core count from the
        master string; cluster modes use defaultParallelism, which Spark sets to the total cores of the
        registered executors."""
        return max(1, (local_cores(self.master) if self.local else self.parallelism) // self.task_cpus)


def shape(spark) -> Shape:
    """:class:`Shape` of ``spark`` (a SparkSession, or a :class:`LazySession` not started: from its
    configuration, as Spark would set it, when that is known without a JVM)."""
    conf = spark.configured() if isinstance(spark, LazySession) else None
    if conf is not None:
        master = conf["spark.master"]
        return Shape(master, int(conf.get("spark.task.cpus", "1")),
                     int(conf.get("spark.default.parallelism", local_cores(master))))
    sc = spark.sparkContext
    return Shape(sc.master, int(sc.getConf().get("spark.task.cpus", "1")), sc.defaultParallelism)


def task_slots(spark) -> int:
    """Concurrent task slots the session has now (:attr:`Shape.slots`)."""
    return shape(spark).slots


def spark_version(spark) -> str:
    """Spark's version: the running session's, else this pyspark's (a local session runs its own jars)."""
    import pyspark

    running = started(spark)
    return running.version if running is not None else pyspark.__version__


def local_cores(master: str) -> int:
    """Cores of a local master: local (1), local[N], local[*] (all), local[N,F] (N)."""
    inside = master[master.find("[") + 1:master.find("]")].split(",")[0] if "[" in master else "1"
    return (os.cpu_count() or 1) if inside == "*" else int(inside)


@contextlib.contextmanager
def temporary_conf(spark, key: str, value: str):
    """Set a runtime SQL property for the duration of a block, then restore it."""
    before = spark.conf.get(key, None)
    spark.conf.set(key, value)
    try:
        yield
    finally:
        if before is None:
            spark.conf.unset(key)
        else:
            spark.conf.set(key, before)


def driver_reads(spark, where) -> bool:
    """Whether the driver reads and writes the files under ``where`` (a :class:`~ctr_pipeline.storage.Location`)
    itself, without Spark jobs: a local master (the driver is the machine) and a local directory."""
    return where.is_local and shape(spark).local


def engine_choice(cfg, key: str, problem: Optional[str], work: str, log: logging.Logger) -> str:
    """A stage's ``auto`` / ``driver`` setting ``key`` (e.g. ``features.engine``) resolved, given why the driver
    cannot do the stage's ``work`` (``problem``; None when it can): ``auto`` is the driver where it can run,
    else Spark, and ``log`` says which and why; ``driver`` fails with the reason when it cannot."""
    from .errors import UserError

    section, name = key.split(".")
    stage = {"sampling": "sample"}.get(section, section)
    setting = getattr(getattr(cfg, section), name)
    if problem is None:
        log.info("%s: the driver %s (%s %s)", stage, work, key, setting)
        return "driver"
    if setting == "driver":
        raise UserError(f"{cfg.source_of(key)}: {key} is driver but {problem}; set it to auto or spark")
    log.info("%s: Spark %s (%s)", stage, work, problem)
    return "spark"
