"""Spark adapter of the training stage: fit SparkXGBClassifier on features/train.

Writes ``model/spark_model/`` (Spark ML persistence, for Spark scoring), ``model/booster.ubj`` and
``model/booster.json`` (native XGBoost, loadable with ``xgboost.Booster(model_file=...)``).
"""
from __future__ import annotations

import contextlib
import json
import logging
import shutil
import subprocess

from pyspark.sql import functions as F

from ctr_pipeline.errors import ConfigError
from ctr_pipeline.spark import task_slots, temporary_conf
from ctr_pipeline.stage import StageContext, StageResult
from features.spark_io import read_features

from .core import VALIDATION_FLAG, check_workers, cuda_problem, estimator_params

log = logging.getLogger("ctr_pipeline.training")


def visible_gpus() -> int:
    """GPUs that nvidia-smi lists on the driver host (0 when it is absent)."""
    if shutil.which("nvidia-smi") is None:
        return 0
    try:
        out = subprocess.run(["nvidia-smi", "-L"], capture_output=True, text=True, timeout=30)
    except (OSError, subprocess.TimeoutExpired):
        return 0
    return sum(1 for line in out.stdout.splitlines() if line.startswith("GPU "))


def check_environment(ctx: StageContext, params: dict) -> None:
    import xgboost

    check_workers(params["num_workers"], task_slots(ctx.spark), ctx.cfg.source_of("training.num_workers"))
    problem = cuda_problem(params["device"], bool(xgboost.build_info().get("USE_CUDA")),
                           visible_gpus() if params["device"] == "cuda" else 0)
    if problem:
        raise ConfigError(f"{ctx.cfg.source_of('training.device')}: {problem}")


@contextlib.contextmanager
def whole_partition_batches(spark, enabled: bool):
    """Hand each XGBoost worker its partition as one Arrow batch while ``enabled``.

    xgboost 3.2's sparse reader fails on a batch that holds no validation rows (or no training rows):
    ``np.concatenate`` of an empty list (dmlc/xgboost PR #12532). With no batch size limit every
    partition is one batch that holds both kinds of rows.
    """
    if not enabled:
        yield
        return
    with temporary_conf(spark, "spark.sql.execution.arrow.maxRecordsPerBatch", "0"):
        yield


def run(ctx: StageContext) -> StageResult:
    from xgboost.spark import SparkXGBClassifier

    params = estimator_params(ctx.cfg)
    check_environment(ctx, params)
    feats = ctx.run.path_of("features")
    data = read_features(ctx.spark, str(feats / "train"))
    if "weight" in data.columns:
        params["weight_col"] = "weight"
    rows = {"train": data.count()}
    if "validation_indicator_col" in params:
        valid = read_features(ctx.spark, str(feats / "validation"))
        rows["validation"] = valid.count()
        data = (data.withColumn(VALIDATION_FLAG, F.lit(False))
                .unionByName(valid.withColumn(VALIDATION_FLAG, F.lit(True))))
    log.info("train: %s rows, %d trees of depth %d, %s on %d worker(s)", f"{rows['train']:,}",
             params["n_estimators"], params["max_depth"], params["tree_method"], params["num_workers"])
    with whole_partition_batches(ctx.spark, enabled="validation_indicator_col" in params):
        model = SparkXGBClassifier(**params).fit(data)
    model.write().save(str(ctx.out / "spark_model"))
    summary = getattr(model, "training_summary", None)
    history = {"training": dict(getattr(summary, "train_objective_history", {}) or {}),
               "validation": dict(getattr(summary, "validation_objective_history", {}) or {})}
    (ctx.out / "history.json").write_text(json.dumps(history) + "\n", encoding="utf-8")
    booster = model.get_booster()
    booster.save_model(str(ctx.out / "booster.ubj"))
    booster.save_model(str(ctx.out / "booster.json"))
    best = getattr(booster, "best_iteration", None)
    details = {"params": {k: v for k, v in params.items() if k not in ("features_col", "label_col")},
               "trees": booster.num_boosted_rounds(), "best_iteration": best}
    return StageResult(rows=rows, details=details,
                       summary=[f"model: {booster.num_boosted_rounds()} trees ({params['tree_method']}, "
                                f"{params['device']}, {params['num_workers']} worker(s))"])
