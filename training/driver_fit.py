"""The training stage's driver engine (``training.engine: driver``; ``auto`` on a local master): the final
model is trained by native XGBoost in the driver process, on all of train read straight from the features'
Parquet files (:mod:`features.arrow_io`), with one thread per core of the local master.

Why: on one machine xgboost.spark's workers are processes on the same cores, and each fit pays its data
path before the first round (a label count, a barrier stage's start, Arrow to pandas, then a per-row loop
to a DMatrix: about 10 s on the 1M demo's 800,000 train rows) and, with 2 workers, all-reduces every
histogram over the loopback. Measured there (93,005 columns, 100 trees of depth 6, 2 cores, one run each):
the final fit took about 36 s with xgboost.spark on 2 workers and 21 s here (reading the rows 2.5 s, 100
rounds 17 s). One process also gives the single-worker model, which does not depend on how Spark divides the
rows among workers (rows are ordered by ``row_id``).

The same :class:`training.callbacks.PipelineCallback` runs here (progress lines, checkpoints, the stopping
rules, the leaf-computed validation log), so resume, retries and early stopping behave as on Spark.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable, Optional

import numpy as np

from ctr_pipeline.spark import shape
from ctr_pipeline.storage import Location

from .core import booster_params


def threads(spark) -> int:
    """Cores of the session: task slots x spark.task.cpus (a local master's core count)."""
    got = shape(spark)
    return got.slots * got.task_cpus


@dataclass
class DriverRows:
    """Train rows held by the driver (CSR ``x``, labels, weights or None, row ids) and the threads to train
    with; ``valid``: the stopping sample (x, y, w) when XGBoost evaluates it itself (not from the leaves);
    ``dtrain``: their DMatrix once the first attempt built it (``x`` is then dropped)."""
    x: Any
    y: np.ndarray
    w: Optional[np.ndarray]
    row_id: np.ndarray
    threads: int
    valid: Optional[tuple] = None
    dtrain: Any = None

    def columns(self) -> dict[str, np.ndarray]:
        """{"row_id", "label"[, "weight"]: array}, as the search's sample takes them."""
        return {"row_id": self.row_id, "label": self.y, **({"weight": self.w} if self.w is not None else {})}


def load(split: Location, width: int, weighted: bool, nthread: int,
         keep: Optional[Callable[[np.ndarray], np.ndarray]] = None) -> DriverRows:
    """The rows of feature split ``split`` chosen by ``keep(row_ids)`` (all: None), in row_id order."""
    from features.arrow_io import read_csr

    x, cols = read_csr(split, width, ("row_id", "label", "weight") if weighted else ("row_id", "label"), keep)
    return DriverRows(x, cols["label"].astype(np.float32), cols["weight"].astype(np.float32) if weighted else None,
                      cols["row_id"].astype(np.int64), nthread)


def train(params: dict[str, Any], rows: DriverRows, rounds: int, callback, start=None):
    """``rounds`` more rounds of XGBoost (estimator keyword arguments ``params``) on ``rows``, continuing
    booster ``start`` when given; returns (booster, {"training"|"validation": {metric: per-round values}})."""
    import xgboost as xgb

    def matrix(x, y, w):
        return xgb.DMatrix(x, label=y, weight=w, missing=0.0, nthread=rows.threads)

    if rows.dtrain is None:   # built once: a retry reuses it; the CSR copy is not needed after it
        rows.dtrain, rows.x = matrix(rows.x, rows.y, rows.w), None
    dtrain = rows.dtrain
    evals = [(dtrain, "training")] + ([(matrix(*rows.valid), "validation")] if rows.valid is not None else [])
    result: dict = {}
    booster = xgb.train({**booster_params(params), "nthread": rows.threads}, dtrain, rounds, evals=evals,
                        evals_result=result, callbacks=[callback], xgb_model=start, verbose_eval=False)
    return booster, result


def spark_model(params: dict[str, Any], booster, evals: dict):
    """The SparkXGBClassifierModel xgboost.spark would have returned for ``booster`` (estimator keyword
    arguments ``params``), for ``model/spark_model/`` and Spark scoring. Uses the estimator's own
    conversion (private in xgboost 3.2, which the project pins)."""
    from xgboost.spark import SparkXGBClassifier
    from xgboost.spark.summary import XGBoostTrainingSummary

    estimator = SparkXGBClassifier(**{k: v for k, v in params.items() if k not in ("callbacks", "xgb_model")})
    sklearn_model = estimator._convert_to_sklearn_model(bytearray(booster.save_raw("json")), booster.save_config())
    model = estimator._create_pyspark_model(sklearn_model, XGBoostTrainingSummary.from_metrics(evals))
    model._resetUid(estimator.uid)
    return estimator._copyValues(model)


NOT_SAVED = ("callbacks", "xgb_model", "coll_cfg")   # the parameters xgboost.spark's writer leaves out


def save_spark_model(model, where: Location) -> None:
    """Write ``model`` (a SparkXGBClassifierModel) to ``where`` as its own ``model.write().save()`` does,
    without Spark jobs (so without a JVM, on a local or S3 run directory): ``metadata/part-00000``, Spark
    ML's parameter metadata (one JSON line, made by pyspark's own DefaultParamsWriter), and
    ``model/part-00000``, the booster's JSON in xgboost.spark's chunks, one per line, each directory with
    the ``_SUCCESS`` marker Hadoop's text writer leaves. ``SparkXGBClassifierModel.load`` reads it back
    (tested against the Spark writer's files, which it equals but for the timestamp). A model with a
    callback, a starting booster or a collective configuration set is refused: xgboost.spark writes those
    elsewhere, and the pipeline clears them before saving. Unlike that writer it does not validate the
    parameters again (xgboost.spark asks a Spark session for that: it would start one)."""
    import pyspark
    from pyspark.ml.util import DefaultParamsWriter
    from xgboost.spark.core import _MODEL_CHUNK_SIZE

    kept = [name for name in NOT_SAVED if model.hasParam(name) and model.isSet(name)
            and model.getOrDefault(name) is not None]
    if kept:
        raise ValueError(f"save_spark_model: clear {', '.join(kept)} of the model first (xgboost.spark would "
                         "save them apart)")

    class Version:   # DefaultParamsWriter asks the SparkContext only for its version
        version = pyspark.__version__

    params = {p.name: v for p, v in model._paramMap.items() if p.name not in NOT_SAVED}
    metadata = DefaultParamsWriter._get_metadata_to_save(model, Version(), None, params)
    booster = model.get_booster().save_raw("json").decode("utf-8")
    chunks = [booster[i:i + _MODEL_CHUNK_SIZE] for i in range(0, len(booster), _MODEL_CHUNK_SIZE)]
    for part, lines in (("metadata", [metadata]), ("model", chunks)):
        (where / part).mkdir()
        (where / part / "part-00000").write_text("".join(line + "\n" for line in lines))
        (where / part / "_SUCCESS").write_bytes(b"")
