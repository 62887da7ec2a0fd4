"""Baselines on the same feature vectors and splits as the XGBoost model.

``logistic_regression`` is what the production team this is modelled on replaced: MLlib's objective,
fit on the driver from the capped sample of train by :mod:`.logistic` and scored on Spark; ``gbt`` is
MLlib's own gradient-boosted trees with the training section's depth, trees and learning rate.
"""
from __future__ import annotations

import logging
from typing import Callable, Optional

import numpy as np
from pyspark.ml.functions import vector_to_array
from pyspark.sql import DataFrame
from pyspark.sql import functions as F

from ctr_pipeline.errors import InputDataError, UserError
from ctr_pipeline.rowsample import capped_rows, capped_sample
from ctr_pipeline.schema import Config
from ctr_pipeline.storage import Location
from features.arrow_io import parquet_rows, read_capped, read_csr, split_columns
from features.spark_io import batch_csr, vector_width

log = logging.getLogger("ctr_pipeline.evaluation")


LR_REG_GRID = (1e-4, 1e-3, 1e-2)
LR_DEFAULT_REG = 1e-3      # without a validation split
# gbdt_lr fits on the validation split only (far fewer rows than train): its grid reaches stronger penalties
GBDT_LR_REG_GRID = (1e-4, 1e-3, 1e-2, 1e-1, 1.0)
LR_DRIVER_ROWS = 4_000_000  # logistic regression is fit in the driver's memory (about 0.5 KB a row here)
LR_ROWS_KEY, LR_FIT = "evaluation.baseline_rows", "the logistic regression baseline is fit"
EMPTY_VALIDATION = "the validation split is empty: no validation MXE for the logistic regression grid"
GBT_WIDE = 10_000   # columns above which MLlib GBT's dense binning becomes the run's bottleneck


def gbt_cost_warning(width: int) -> Optional[str]:
    """Why the gbt baseline will be slow on a vector this wide, or None."""
    if width <= GBT_WIDE:
        return None
    return (f"evaluation.baselines: gbt on {width:,} feature columns will be slow: MLlib GBTClassifier bins "
            "every column of every row into a dense array (measured: 20 trees of depth 6 on 800k rows x 93k "
            "columns ran over 17 minutes unfinished). Use narrow features for it (counts, target encoding, "
            "features.categorical_encoding: none) or leave gbt out of evaluation.baselines")


def estimator(cfg: Config, weighted: bool):
    """MLlib's GBTClassifier with the training section's depth, trees and learning rate."""
    from pyspark.ml.classification import GBTClassifier

    name = "gbt"
    t = cfg.training
    est = GBTClassifier(maxDepth=t.max_depth, maxIter=t.n_estimators, stepSize=t.learning_rate, seed=7)
    cols = {"featuresCol": "features", "labelCol": "label", "probabilityCol": f"_{name}_prob",
            "rawPredictionCol": f"_{name}_raw", "predictionCol": f"_{name}_pred"}
    if weighted:
        cols["weightCol"] = "weight"
    for param, column in cols.items():   # setters: GBTClassifier's constructor lacks some of these
        getattr(est, "set" + param[0].upper() + param[1:])(column)
    return est


def driver_scored(model) -> bool:
    """Whether ``model`` is scored by :func:`evaluation.scoring.predict_features` (``predict(csr)``), not by
    an MLlib ``transform``."""
    from .gbdt_lr import GbdtLrModel
    from .logistic import LinearModel

    return isinstance(model, (LinearModel, GbdtLrModel))


def fit(name: str, cfg: Config, train: Callable[[], DataFrame], validation: Optional[Callable[[], DataFrame]] = None,
        booster_raw: Optional[bytes] = None, held: Optional[Location] = None):
    """Fit baseline ``name`` on the train features (label as double, weight when present), or on an exact
    sample of ``evaluation.baseline_rows`` of them. Logistic regression picks its L2 strength from
    LR_REG_GRID by validation MXE when a validation split exists; with ``held`` (the features directory,
    local, on a local master) its rows are read by the driver (:func:`features.arrow_io.read_capped`: the
    same rows) instead of collected by Spark, and so is a validation split of at most LR_DRIVER_ROWS rows.
    ``gbdt_lr`` is fit on (a capped sample of) the validation split with the trained booster
    ``booster_raw``. ``train()`` and ``validation()`` give the splits as DataFrames, read only when Spark
    needs them (None: no validation split). Returns (model, settings)."""
    e = cfg.evaluation
    if name == "gbdt_lr":
        return _fit_gbdt_lr(cfg, None if validation is None else validation(), booster_raw)
    if name == "logistic_regression":
        names, width = split_columns(held / "train") if held is not None else (train().columns, None)
        columns = ("label", "weight") if "weight" in names else ("label",)
        args = (e.baseline_rows, e.seed, columns, LR_DRIVER_ROWS, cfg.source_of(LR_ROWS_KEY))
        if held is None:
            x, cols, rows, total = capped_rows(train(), *args, key=LR_ROWS_KEY, what=LR_FIT)
        else:
            x, cols, rows, total = read_capped(held / "train", width, *args, key=LR_ROWS_KEY, what=LR_FIT)
        log.info("evaluate: fitting baseline %s on %s of %s train rows", name, f"{rows:,}", f"{total:,}")
        scored_on = None
        if validation is not None and held is not None and parquet_rows(held / "validation") <= LR_DRIVER_ROWS:
            # held whole, as the train sample is (a larger split is scored on Spark); every split is as wide
            vx, vcols = read_csr(held / "validation", width, ("label",), dtype=np.float64)
            scored_on = (vx, vcols["label"])
        elif validation is not None:
            scored_on = validation()
        model, settings = _fit_logistic(x, cols, scored_on)
    else:
        sample, rows, total = capped_sample(train(), e.baseline_rows, e.seed)
        log.info("evaluate: fitting baseline %s on %s of %s train rows", name, f"{rows:,}", f"{total:,}")
        model, settings = _fit_gbt(cfg, sample)
    return model, {**settings, "fit_rows": rows, "train_rows": total}


def _fit_gbdt_lr(cfg: Config, validation: Optional[DataFrame], booster_raw: Optional[bytes]):
    if validation is None or booster_raw is None:
        raise UserError("evaluation.baselines: gbdt_lr needs the validation split and the trained model")
    model, settings = fit_gbdt_lr(cfg, validation, booster_raw, cfg.evaluation.baseline_rows,
                                  "evaluation.baseline_rows", "validation", "the validation split (rows the trees "
                                  "did not see)", "add validation rows (sampling.validation) or drop gbdt_lr")
    return model, {**settings, "validation_rows": settings["rows_of"]}


def fit_gbdt_lr(cfg: Config, df: DataFrame, booster_raw: bytes, limit: int, key: str, what: str, fit_on: str,
                remedy: str):
    """GBDT leaves + LR (:func:`evaluation.gbdt_lr.fit`) on (an exact sample of ``limit`` of) the rows of
    ``df`` (``what`` names them in messages; ``key`` is the config key that bounds them), which the trees of
    ``booster_raw`` did not see. Too few rows: UserError saying ``remedy``. Returns (model, settings)."""
    from . import gbdt_lr, logistic

    weighted = "weight" in df.columns
    x, cols, rows, total = capped_rows(df, limit, cfg.evaluation.seed,
                                       ("label", "row_id", "weight") if weighted else ("label", "row_id"),
                                       LR_DRIVER_ROWS, cfg.source_of(key), key=key,
                                       what="the gbdt_lr model's logistic regression is fit")
    log.info("gbdt_lr: fitting the logistic regression on %s of %s %s rows", f"{rows:,}", f"{total:,}", what)
    y = np.asarray(cols["label"], dtype=np.float64)
    w = np.asarray(cols["weight"], dtype=np.float64) if weighted else np.ones_like(y)
    try:
        model, settings = gbdt_lr.fit(booster_raw, x, y, w, np.asarray(cols["row_id"]), GBDT_LR_REG_GRID,
                                      cfg.evaluation.seed, logistic.fit, fit_on)
    except ValueError as exc:
        raise UserError(f"{cfg.source_of(key)}: {exc}; {remedy}") from exc
    for reg, score in settings["grid"].items():
        log.info("gbdt_lr: regParam %s: MXE %.5f on the held-out 20%% of those rows", reg, score)
    return model, {**settings, "fit_rows": rows, "rows_of": total}


def _fit_gbt(cfg: Config, sample: DataFrame):
    from pyspark import StorageLevel

    warning = gbt_cost_warning(vector_width(sample))
    if warning:
        log.warning("evaluate: %s", warning)
    data = sample.withColumn("label", F.col("label").cast("double")).persist(StorageLevel.MEMORY_AND_DISK)
    try:
        return estimator(cfg, "weight" in data.columns).fit(data), {}
    finally:
        data.unpersist()


def _fit_logistic(x, cols: dict, validation: "Optional[DataFrame | tuple]"):
    """The regularisation grid fit side by side on the driver, BLAS on one thread (scipy's sparse products
    release the GIL: measured at 1M demo rows, 200k rows x 93k columns, the three fits took 1.06 s
    together, 0.72 s for the slowest alone; see :func:`.logistic.one_blas_thread`), then scored on
    validation: in one Spark pass, or on its (CSR, labels) in the driver."""
    from concurrent.futures import ThreadPoolExecutor

    from . import logistic

    y = np.asarray(cols["label"], dtype=np.float64)
    w = np.asarray(cols["weight"], dtype=np.float64) if "weight" in cols else np.ones_like(y)
    regs = LR_REG_GRID if validation is not None else (LR_DEFAULT_REG,)
    with logistic.one_blas_thread(), ThreadPoolExecutor(len(regs), thread_name_prefix="lr-grid") as pool:
        models = list(pool.map(lambda reg: logistic.fit(x, y, w, reg), regs))
    for m in models:
        if not m.converged:
            log.info("evaluate: logistic regression regParam %g stopped at %d iterations before converging",
                     m.reg, m.iterations)
    if validation is None:
        m = models[0]
        return m, {"regParam": m.reg, "iterations": m.iterations}
    scores = validation_mxe(models, validation) if isinstance(validation, DataFrame) else \
        held_validation_mxe(models, *validation)
    for m, score in zip(models, scores):
        log.info("evaluate: logistic regression regParam %g: validation MXE %.5f (%d iterations)", m.reg, score,
                 m.iterations)
    score, best = min(zip(scores, models), key=lambda r: (r[0], r[1].reg))
    return best, {"regParam": best.reg, "validation_mxe": score, "iterations": best.iterations}


def validation_mxe(models: list, df: DataFrame) -> list[float]:
    """Unweighted MXE of each linear model on ``df`` (label, features), in one pass."""
    from .core import mxe

    width = vector_width(df)

    def losses(batches):
        import pyarrow as pa

        for b in batches:
            if not b.num_rows:
                continue
            x, y = batch_csr(b, width), b.column("label").to_numpy(zero_copy_only=False)
            sums = [mxe(y, m.predict(x)) * b.num_rows for m in models]
            yield pa.RecordBatch.from_arrays([pa.array([sums]), pa.array([b.num_rows], pa.int64())],
                                             names=["sums", "n"])

    parts = df.select("label", "features").mapInArrow(losses, "sums array<double>, n long").collect()
    n = sum(r["n"] for r in parts)
    if n == 0:
        raise InputDataError(EMPTY_VALIDATION)
    return [sum(r["sums"][i] for r in parts) / n for i in range(len(models))]


def held_validation_mxe(models: list, x, y) -> list[float]:
    """:func:`validation_mxe` of the validation rows the driver holds (CSR ``x``, labels ``y``)."""
    from .core import mxe

    if len(y) == 0:
        raise InputDataError(EMPTY_VALIDATION)
    return [mxe(y, m.predict(x)) for m in models]


def add_probabilities(fitted: dict, df: DataFrame) -> DataFrame:
    """``df`` with a column ``p_<name>`` per MLlib baseline (its probability of a click); the models
    :func:`driver_scored` are skipped: :func:`evaluation.scoring.predict_features` scores them."""
    for name, model in fitted.items():
        if not driver_scored(model):
            out = model.transform(df)
            df = out.withColumn(f"p_{name}", vector_to_array(f"_{name}_prob")[1]).drop(
                f"_{name}_prob", f"_{name}_raw", f"_{name}_pred")
    return df
