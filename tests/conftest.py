"""Shared fixtures: one local Spark session for the whole run, demo data, the shared data sets."""
from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
SHARED_DATA = REPO.parent / "shared" / "data"


def pytest_configure(config):
    os.environ["PYSPARK_PYTHON"] = sys.executable
    os.environ["PYSPARK_DRIVER_PYTHON"] = sys.executable
    os.environ["SPARK_LOCAL_IP"] = "127.0.0.1"


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


def run_outputs(run: Path) -> dict:
    """What a disturbed run (killed and rerun, an executor lost) must reproduce of an undisturbed one:
    the sets, the vector width, the trees and the test metrics."""
    import json

    manifest = json.loads((run / "manifest.json").read_text())
    metrics = json.loads((run / "evaluation" / "metrics.json").read_text())
    return {"sets": {k: v["digest"] for k, v in manifest["stages"]["sample"]["details"]["sets"].items()},
            "width": manifest["stages"]["features"]["details"]["vector_width"],
            "trees": json.loads((run / "model" / "booster.json").read_text())["learner"]["gradient_booster"],
            "test": {k: metrics["test"][k] for k in ("rows", "mxe", "auc", "calibration")}}


# ---------------------------------------------------------------------------------------------- AWS (moto)

@pytest.fixture(scope="session")
def moto_server() -> str:
    """moto's server on 127.0.0.1 over real HTTP, one per test run; yields its URL.

    It runs in this process (a thread), so a test can also reach moto's backends, e.g. to move an
    EMR step to COMPLETED (moto's steps never finish on their own).
    """
    import socket

    from moto.server import ThreadedMotoServer

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    server.start()
    yield f"http://127.0.0.1:{port}"
    server.stop()


FAKE_AWS_ENV = {"AWS_ACCESS_KEY_ID": "AKIAFAKEFAKEFAKE0000", "AWS_SECRET_ACCESS_KEY": "fake-secret-for-moto",
                "AWS_DEFAULT_REGION": "us-east-1"}


@pytest.fixture
def aws(moto_server, monkeypatch):
    """Fake credentials and moto's endpoint in the environment, moto's state reset; yields AwsSettings."""
    import urllib.request

    from ctr_pipeline import aws as aws_mod

    for key, value in {**FAKE_AWS_ENV, "AWS_ENDPOINT_URL": moto_server}.items():
        monkeypatch.setenv(key, value)
    for key in ("AWS_PROFILE", "AWS_SESSION_TOKEN", "AWS_ENDPOINT_URL_S3", "AWS_REGION"):
        monkeypatch.delenv(key, raising=False)
    urllib.request.urlopen(urllib.request.Request(f"{moto_server}/moto-api/reset", method="POST"), timeout=10)
    aws_mod.client.cache_clear()
    yield aws_mod.AwsSettings(region="us-east-1", endpoint_url=moto_server)
    aws_mod.client.cache_clear()


BUCKET = "ctr-test-runs"


@pytest.fixture(params=["local", "s3"])
def root(request, tmp_path):
    """A fresh directory: local, or a prefix in a moto bucket."""
    from ctr_pipeline.storage import Location

    if request.param == "local":
        return Location.of(tmp_path / "store")
    settings = request.getfixturevalue("aws")
    from ctr_pipeline.aws import client

    client("s3", settings).create_bucket(Bucket=BUCKET)
    return Location.of(f"s3://{BUCKET}/store", settings)


def copy_of_sampled_run(reference: Path, where: Path) -> Path:
    """The reference run's manifest and sample stage only: the features stage is to run again."""
    import json
    import shutil

    run = where / "run"
    shutil.copytree(reference / "splits", run / "splits")
    manifest = json.loads((reference / "manifest.json").read_text())
    manifest["stages"] = {"sample": manifest["stages"]["sample"]}
    (run / "manifest.json").write_text(json.dumps(manifest))
    return run
