"""Spark adapter of the shipped GBDT-leaf + LR model (``training.model: gbdt_lr``): hold out a share of
train for the logistic regression, and fit it on the held-out rows once the trees are trained.

The share is drawn by a stable hash of row_id (the sampler's key with its own seed), so the same rows are
held out whatever the partitioning, on a rerun and on a resume. The trees (search, early stopping,
checkpoints as for ``xgboost``) see only the rest; the logistic regression (:mod:`evaluation.gbdt_lr`)
sees only the held-out rows, through the trees' leaves.
"""
from __future__ import annotations

from pyspark.sql import DataFrame

from ctr_pipeline.registry.bundle import LINEAR as RESULT  # beside booster.ubj in the train stage's output
from ctr_pipeline.rowsample import split_share
from ctr_pipeline.schema import Config

SEED_OFFSET = 3   # the share's hash seed is training.search_seed + 3 (+0..2: folds, search sample, stopping)


def held_out(df: DataFrame, share: float, seed: int) -> tuple[DataFrame, DataFrame]:
    """(the trees' rows, the logistic regression's rows): a ``share`` of ``df`` by the hash of row_id."""
    return split_share(df, share, seed + SEED_OFFSET)


def tree_rows_mask(share: float, seed: int):
    """:func:`held_out`'s choice of the trees' rows for row ids in numpy: ``mask(row_ids)`` -> bool array."""
    import numpy as np

    from ctr_pipeline.rowhash import keys, share_bound

    bound = np.int64(share_bound(share))
    return lambda row_ids: keys(seed + SEED_OFFSET, row_ids) >= bound


def fit(cfg: Config, booster_raw: bytes, rows: DataFrame):
    """The logistic regression over ``booster_raw``'s leaves, fit on the held-out ``rows`` (at most
    LR_DRIVER_ROWS of them, an exact sample beyond). Returns (model, settings)."""
    from evaluation.baselines import LR_DRIVER_ROWS, fit_gbdt_lr

    share = cfg.training.gbdt_lr_share
    return fit_gbdt_lr(cfg, rows, booster_raw, LR_DRIVER_ROWS, "training.gbdt_lr_share", "held-out train",
                       f"a held-out {share:.0%} of train (training.gbdt_lr_share; the trees did not see it)",
                       "raise training.gbdt_lr_share or give train more rows")


def summary_line(settings: dict) -> str:
    return (f"gbdt_lr: logistic regression over the {settings['trees']} trees' leaves and the features "
            f"({settings['columns']:,} columns), fit on {settings['fit_rows']:,} held-out train rows, "
            f"regParam {settings['regParam']:g}")
