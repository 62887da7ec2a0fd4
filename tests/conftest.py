"""Shared fixtures: one local Spark session for the whole run, demo data, the shared data sets."""
from __future__ import annotations

import os
import sys
import tempfile
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
SHARED_DATA = REPO.parent / "shared" / "data"


def pytest_configure(config):
    os.environ["PYSPARK_PYTHON"] = sys.executable
    os.environ["PYSPARK_DRIVER_PYTHON"] = sys.executable
    os.environ["SPARK_LOCAL_IP"] = "127.0.0.1"
    os.environ.setdefault("SPARK_LOCAL_DIRS", tempfile.mkdtemp(prefix="ctr-spark-local-"))


@pytest.fixture(scope="session")
def spark():
    """One local[2] session shared by every Spark test (UI off, few shuffle partitions)."""
    from ctr_pipeline.schema import SparkConfig
    from ctr_pipeline.spark import get_session

    cfg = SparkConfig(master="local[2]", driver_memory="2g", log_level="ERROR",
                      conf={"spark.ui.enabled": "false", "spark.sql.shuffle.partitions": "4",
                            "spark.task.maxFailures": "1"})
    session = get_session(cfg)
    yield session
    session.stop()


@pytest.fixture(scope="session")
def demo_tsv(tmp_path_factory) -> Path:
    """5,000 demo rows in the Criteo DAC layout (gzip), made once per test run."""
    from ctr_pipeline.demo_data import generate

    path = tmp_path_factory.mktemp("demo") / "demo_5k.tsv.gz"
    generate(5_000, path, seed=11)
    return path


@pytest.fixture(scope="session")
def shared_data() -> Path:
    """../shared/data, or a skip that says why (the data may not be redistributed with the repo)."""
    if not (SHARED_DATA / "README.md").exists():
        pytest.skip(f"real data sets not found at {SHARED_DATA} (they live outside the repository)")
    return SHARED_DATA


def cli_env() -> dict[str, str]:
    """Environment for running the ctr-pipeline CLI as a subprocess."""
    env = dict(os.environ)
    env["PYTHONUNBUFFERED"] = "1"
    return env


def cli(*args: str) -> list[str]:
    return [sys.executable, "-m", "ctr_pipeline.cli", *args]
