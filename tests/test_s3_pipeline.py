"""The whole pipeline with its input, config and run directory on S3 (moto's server, real HTTP), Spark
included through the S3A connector; a second identical command skips every stage."""
import json
import subprocess

import pytest

from .conftest import cli, cli_env
from .s3a_jars import s3a_jars

pytestmark = pytest.mark.spark

BUCKET = "ctr-e2e"


def run_cli(args, env, cwd):
    done = subprocess.run(cli(*args), capture_output=True, text=True, env=env, cwd=cwd, timeout=900)
    assert done.returncode == 0, done.stderr[-5000:]
    return done


def test_run_on_s3_completes_then_skips(aws, demo_tsv, tmp_path):
    from ctr_pipeline.aws import client
    from ctr_pipeline.runs import STAGES, RunDir

    s3 = client("s3", aws)
    s3.create_bucket(Bucket=BUCKET)
    s3.upload_file(str(demo_tsv), BUCKET, "logs/day=1/demo.tsv.gz")
    jars = ",".join(str(p) for p in s3a_jars())
    config = {"sampling": {"train": 3000, "validation": 0.1, "test": 0.1},
              "training": {"n_estimators": 8, "checkpoint_every": 4},
              "evaluation": {"bootstrap": 10},
              "aws": {"endpoint_url": aws.endpoint_url},
              "spark": {"master": "local[2]", "driver_memory": "2g",
                        "conf": {"spark.jars": jars, "spark.sql.shuffle.partitions": 4, "spark.ui.enabled": False}}}
    s3.put_object(Bucket=BUCKET, Key="configs/run.yaml", Body=json.dumps(config).encode())  # JSON is YAML
    args = ["run", "--config", f"s3://{BUCKET}/configs/run.yaml", "--input", f"s3://{BUCKET}/logs/day=1/",
            "--out", f"s3://{BUCKET}/runs/r1"]
    env = cli_env()
    first = run_cli(args, env, tmp_path)
    assert list(tmp_path.iterdir()) == []                       # nothing written to the local disk

    run = RunDir.at(f"s3://{BUCKET}/runs/r1", aws)
    manifest = run.manifest()
    assert [s for s in STAGES if run.is_complete(s)] == list(STAGES)
    assert manifest["stages"]["sample"]["rows"] == {"train": 3000, "validation": 500, "test": 500}
    for stage, files in {"sample": ["sample_report.json", "train/"], "features": ["feature_map.tsv", "transform/"],
                         "train": ["booster.ubj", "metadata.json", "spark_model/"],
                         "evaluate": ["metrics.json", "report.html", "plots/roc.png"]}.items():
        where = run.path_of(stage)
        assert where.uri.startswith(f"s3://{BUCKET}/runs/r1/{manifest['stages'][stage]['location']}")
        for name in files:
            assert (where / name.rstrip("/")).exists(), f"{stage}: {where / name} missing"
    metrics = json.loads((run.path_of("evaluate") / "metrics.json").read_text())
    assert metrics["test"]["rows"] == 500 and 0.5 < metrics["test"]["auc"] <= 1.0
    # written by the training task (rank 0) through pyarrow's S3 client; the last round is not checkpointed
    assert [c.name for c in (run.root / "checkpoints" / "train").iterdir()] == ["round-000004.ubj"]
    assert f"report: s3://{BUCKET}/runs/r1/evaluation/v-" in first.stdout
    listing = {o["Key"] for o in s3.list_objects_v2(Bucket=BUCKET, Prefix="runs/r1/")["Contents"]}
    assert not [k for k in listing if "/.staging/" in k or k.endswith(".tmp")]

    second = run_cli(args, env, tmp_path)
    assert second.stderr.count("already complete") == len(STAGES)
    assert run.manifest()["stages"] == manifest["stages"]
