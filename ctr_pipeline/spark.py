"""The one place that creates a SparkSession: local by default, spark:// or yarn on request.

Under ``spark-submit`` (EMR steps) the master and interpreter come from spark-submit and are left
alone; elsewhere workers are pinned to this interpreter and bind to loopback.
"""
from __future__ import annotations

import contextlib
import os
import sys
from pathlib import Path
from typing import Optional

from .errors import ConfigError
from .javacheck import check_java
from .schema import SparkConfig

LOG4J_FILE = Path(__file__).with_name("log4j2.properties")


def under_spark_submit() -> bool:
    """True when this Python driver was launched by spark-submit (which owns the JVM and master)."""
    return "PYSPARK_GATEWAY_PORT" in os.environ


def check_master(master: str, where: str = "spark.master") -> None:
    ok = (master.startswith(("local", "spark://", "k8s://")) or master == "yarn")
    if not ok:
        raise ConfigError(f"{where}: {master!r} is not a Spark master; use local[N], spark://HOST:PORT or yarn")


def session_conf(cfg: SparkConfig, master: str) -> dict[str, str]:
    """Spark properties for a session outside spark-submit (pure: testable without a JVM)."""
    log4j = f"-Dlog4j.configurationFile={LOG4J_FILE.as_uri()}"
    conf = {
        "spark.master": master,
        "spark.app.name": cfg.app_name,
        "spark.driver.memory": cfg.driver_memory,
        "spark.driver.extraJavaOptions": log4j,
        "spark.executor.extraJavaOptions": log4j,
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
    if master.startswith("local") or "127.0.0.1" in master or "localhost" in master:
        conf["spark.driver.host"] = cfg.local_ip
        conf["spark.driver.bindAddress"] = cfg.local_ip
    conf.update({str(k): str(v) for k, v in cfg.conf.items()})
    return conf


def get_session(cfg: SparkConfig, master: Optional[str] = None, extra_conf: Optional[dict[str, str]] = None):
    """Create (or reuse) the SparkSession for ``cfg``; ``master`` overrides ``cfg.master``;
    ``extra_conf`` (e.g. the S3A endpoint settings) goes under ``cfg.conf``, which may override it.

    Checks Java first so a missing JVM is one clear line, not a py4j traceback.
    """
    from pyspark.sql import SparkSession

    builder = SparkSession.builder
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
        for key, value in session_conf(cfg, master).items():
            builder = builder.config(key, value)
    spark = builder.getOrCreate()
    spark.sparkContext.setLogLevel(cfg.log_level)
    if spark.sparkContext.master.startswith("local"):
        quiet_task_failures(spark)
    return spark


# A failed task reaches the pipeline as the exception it receives (one line on the console, the whole Java
# and Python trace in the run's log file); with a local master the executor runs in the driver's JVM and
# these loggers would print the same trace again on the console. Executors of a cluster keep theirs.
LOCAL_TASK_LOGGERS = ("org.apache.spark.scheduler.TaskSetManager", "org.apache.spark.executor.Executor",
                      "org.apache.spark.sql.execution.python")


def quiet_task_failures(spark) -> None:
    jvm = spark.sparkContext._jvm
    fatal = jvm.org.apache.logging.log4j.Level.FATAL
    for name in LOCAL_TASK_LOGGERS:
        jvm.org.apache.logging.log4j.core.config.Configurator.setLevel(name, fatal)


def task_slots(spark) -> int:
    """Concurrent task slots the session has now: cores / spark.task.cpus, at least 1.

    Local mode reads the core count from the master string; cluster modes use defaultParallelism,
    which Spark sets to the total cores of the registered executors.
    """
    sc = spark.sparkContext
    cpus = int(sc.getConf().get("spark.task.cpus", "1"))
    cores = local_cores(sc.master) if sc.master.startswith("local") else sc.defaultParallelism
    return max(1, cores // cpus)


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
