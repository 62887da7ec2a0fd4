"""The whole pipeline with its input, config and run directory on S3 (moto's server, real HTTP), Spark
included through the S3A connector; a second identical command skips every stage; then the model goes
into a registry on S3, is refreshed on a second window and scores it, all on S3."""
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


def test_run_on_s3_completes_then_skips_then_registry_refresh_and_scoring(aws, demo_tsv, tmp_path):
    from ctr_pipeline.aws import client
    from ctr_pipeline.runs import STAGES, RunDir

    s3 = client("s3", aws)
    s3.create_bucket(Bucket=BUCKET)
    s3.upload_file(str(demo_tsv), BUCKET, "logs/day=1/demo.tsv.gz")
    jars = ",".join(str(p) for p in s3a_jars())
    config = {"sampling": {"train": 3000, "validation": 0.1, "test": 0.1},
              "training": {"n_estimators": 8, "checkpoint_every": 4},
              "evaluation": {"bootstrap": 10, "baselines": []},   # the LR baseline is storage-blind
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

    # The registry, the refresh job (its work directory, lock, logs, decision) and scoring on S3.
    from ctr_pipeline.demo_data import generate
    from ctr_pipeline.registry.store import Registry

    day2 = tmp_path.parent / "day2.tsv.gz"
    generate(5_000, day2, seed=11, day=2, drift=0.4)
    s3.upload_file(str(day2), BUCKET, "logs/day=2/demo.tsv.gz")
    models = f"s3://{BUCKET}/models"
    run_cli(["models", "register", f"s3://{BUCKET}/runs/r1", "--registry", models, "--promote", "champion"],
            env, tmp_path)
    refreshed = run_cli(["refresh", "--registry", models, "--input", f"s3://{BUCKET}/logs/day=2/",
                         "--set", "refresh.extra_trees=0", "--set", "refresh.bootstrap=20"], env, tmp_path)
    assert "decision record: " + models in refreshed.stdout
    registry = Registry.open(models, aws)
    assert [v["version"] for v in registry.versions()] == ["v1", "v2"]
    assert registry.alias_doc("challenger")["version"] == "v2"
    assert registry.versions()[1]["lineage"]["parent"] == "v1"
    assert len((registry.root / "refresh" / "windows").iterdir()) == 1
    assert len((registry.root / "refresh" / "logs").iterdir()) == 1
    assert not (registry.root / "refresh" / "refresh.lock").exists()
    scored = run_cli(["score", "--model", f"{models}@v2", "--input", f"s3://{BUCKET}/logs/day=2/",
                      "--out", f"s3://{BUCKET}/scores/day2"], env, tmp_path)
    assert "scored 5,000 rows" in scored.stdout
    report = json.loads(s3.get_object(Bucket=BUCKET, Key="scores/day2/report.json")["Body"].read())
    assert report["rows_scored"] == 5_000 and report["model_info"]["version"] == "v2"
    [log] = [o["Key"] for o in s3.list_objects_v2(Bucket=BUCKET, Prefix="scores/day2/logs/")["Contents"]]
    assert f"log: s3://{BUCKET}/{log}" in scored.stdout                 # one log per score invocation
    assert not s3.list_objects_v2(Bucket=BUCKET, Prefix="scores/.day2.lock").get("Contents")
    assert list(tmp_path.iterdir()) == []                       # still nothing on the local disk
