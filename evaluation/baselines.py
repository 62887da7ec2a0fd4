"""Spark MLlib baselines on the same feature vectors and splits as the XGBoost model.

``logistic_regression`` is what the production team this is modelled on replaced; ``gbt`` is MLlib's
own gradient-boosted trees with the training section's depth, trees and learning rate.
"""
from __future__ import annotations

import logging
from typing import Optional

from pyspark.ml.functions import vector_to_array
from pyspark.sql import DataFrame
from pyspark.sql import functions as F

from ctr_pipeline.schema import Config

log = logging.getLogger("ctr_pipeline.evaluation")


LR_REG_GRID = (1e-4, 1e-3, 1e-2)
GBT_WIDE = 10_000   # columns above which MLlib GBT's dense binning becomes the run's bottleneck


def gbt_cost_warning(width: int) -> Optional[str]:
    """Why the gbt baseline will be slow on a vector this wide, or None."""
    if width <= GBT_WIDE:
        return None
    return (f"evaluation.baselines: gbt on {width:,} feature columns will be slow: MLlib GBTClassifier bins "
            "every column of every row into a dense array (measured: 20 trees of depth 6 on 800k rows x 93k "
            "columns ran over 17 minutes unfinished). Use narrow features for it (counts, target encoding, "
            "features.categorical_encoding: none) or leave gbt out of evaluation.baselines")


def estimator(name: str, cfg: Config, weighted: bool, reg: float = 1e-3):
    from pyspark.ml.classification import GBTClassifier, LogisticRegression

    cols = {"featuresCol": "features", "labelCol": "label", "probabilityCol": f"_{name}_prob",
            "rawPredictionCol": f"_{name}_raw", "predictionCol": f"_{name}_pred"}
    if weighted:
        cols["weightCol"] = "weight"
    if name == "logistic_regression":
        # No standardization: it would scale every rare one-hot column up to unit variance, which
        # amounts to almost no regularization of rare values (measured: test AUC 0.56 on the demo).
        est = LogisticRegression(maxIter=100, regParam=reg, elasticNetParam=0.0, standardization=False)
    else:
        t = cfg.training
        est = GBTClassifier(maxDepth=t.max_depth, maxIter=t.n_estimators, stepSize=t.learning_rate, seed=7)
    for param, column in cols.items():   # setters: GBTClassifier's constructor lacks some of these
        getattr(est, "set" + param[0].upper() + param[1:])(column)
    return est


def _mxe(model, name: str, df: DataFrame) -> float:
    from .core import EPS

    p = F.least(F.greatest(vector_to_array(f"_{name}_prob")[1], F.lit(EPS)), F.lit(1 - EPS))
    y = F.col("label")
    return model.transform(df).agg(F.avg(-(y * F.log(p) + (1 - y) * F.log1p(-p)))).first()[0]


def capped_sample(df: DataFrame, limit: int, seed: int) -> tuple[DataFrame, int, int]:
    """An exact simple random sample of at most ``limit`` rows of ``df``: (sample, its rows, rows of df).

    The rows with the ``limit`` smallest keys (the sampler's hash of seed and row_id, uniform over the long
    range) form the sample. One pass keeps the rows below a key bound a little past the expected cut
    (about limit * 1.05 rows); their (key, row_id) pairs come to the driver, where the exact cut is found.
    ``limit`` 0 means no cap.
    """
    from sampling.spark_srs import key_column

    total = df.count()
    if limit == 0 or total <= limit:
        return df, total, total
    keyed = df.withColumn("_k", key_column(seed, F.col("row_id")))
    rate = min(1.0, limit / total * 1.05 + 10 * limit ** 0.5 / total)
    while True:
        bound = int(-2 ** 63 + rate * 2 ** 64)
        below = keyed.filter(F.col("_k") < bound) if rate < 1.0 else keyed
        pairs = sorted((r[0], r[1]) for r in below.select("_k", "row_id").collect())
        if len(pairs) >= limit:
            break
        rate = min(1.0, rate * 1.5)  # the bound is about 10 standard deviations past the cut: practically never
    k, rid = pairs[limit - 1]
    cut = (F.col("_k") < k) | ((F.col("_k") == k) & (F.col("row_id") <= rid))
    return below.filter(cut).drop("_k"), limit, total


def fit(name: str, cfg: Config, train: DataFrame, validation: Optional[DataFrame] = None):
    """Fit baseline ``name`` on the train features (label as double, weight when present), or on an exact
    sample of ``evaluation.baseline_rows`` of them. Logistic regression picks its L2 strength from
    LR_REG_GRID by validation MXE when a validation split exists. Returns (model, settings)."""
    from pyspark import StorageLevel

    e = cfg.evaluation
    sample, rows, total = capped_sample(train, e.baseline_rows, e.seed)
    # Persisted once for every fit of the grid: each fit would otherwise draw the capped sample again
    # (measured at 1M demo rows: 28.7 s for the three fits unpersisted, 14.8 s persisted).
    data = sample.withColumn("label", F.col("label").cast("double")).persist(StorageLevel.MEMORY_AND_DISK)
    log.info("evaluate: fitting baseline %s on %s of %s train rows", name, f"{rows:,}", f"{total:,}")
    try:
        data.count()   # built once here: fits started side by side would each compute it while it is not cached
        model, settings = _fit(name, cfg, data, "weight" in data.columns, validation)
    finally:
        data.unpersist()
    return model, {**settings, "fit_rows": rows, "train_rows": total}


def _fit(name: str, cfg: Config, data: DataFrame, weighted: bool, validation: Optional[DataFrame]):
    if name != "logistic_regression":
        from features.spark_io import vector_width

        warning = gbt_cost_warning(vector_width(data))
        if warning:
            log.warning("evaluate: %s", warning)
        return estimator(name, cfg, weighted).fit(data), {}
    if validation is None:
        return estimator(name, cfg, weighted).fit(data), {"regParam": 1e-3}
    from concurrent.futures import ThreadPoolExecutor

    valid = validation.withColumn("label", F.col("label").cast("double"))

    def fit_one(reg: float):
        model = estimator(name, cfg, weighted, reg).fit(data)
        return _mxe(model, name, valid), reg, model

    # The fits run side by side: each L-BFGS step is a short Spark job, so one fit alone leaves the
    # cores idle between steps (measured: 14.8 s one after another, 11.9 s side by side).
    with ThreadPoolExecutor(len(LR_REG_GRID), thread_name_prefix="lr-grid") as pool:
        results = list(pool.map(fit_one, LR_REG_GRID))
    for score, reg, _ in results:
        log.info("evaluate: logistic regression regParam %g: validation MXE %.5f", reg, score)
    best = min(results, key=lambda r: (r[0], r[1]))
    return best[2], {"regParam": best[1], "validation_mxe": best[0]}


def add_probability(model, name: str, df: DataFrame) -> DataFrame:
    """``df`` with column ``p_<name>``: the baseline's probability of a click."""
    out = model.transform(df)
    return out.withColumn(f"p_{name}", vector_to_array(f"_{name}_prob")[1]).drop(
        f"_{name}_prob", f"_{name}_raw", f"_{name}_pred")
