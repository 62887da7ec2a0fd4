"""Spark adapter of the k-fold cross-validated search on the train split.

Folds come from a stable hash of ``row_id`` (the sampler's SplitMix64 key with the search seed), so they
are reproducible and disjoint. Each finished (candidate, fold) is written as one JSON file under
``RUN/checkpoints/cv/<search hash>/`` before the next starts: a crashed search, run again, skips them.
"""
from __future__ import annotations

import hashlib
import json
import logging
import os
import time
from typing import Any, Callable

import pandas as pd
from pyspark.ml.functions import vector_to_array
from pyspark.sql import DataFrame
from pyspark.sql import functions as F

from ctr_pipeline.schema import TrainingConfig
from ctr_pipeline.storage import Location
from evaluation import spark_metrics as sm
from sampling.spark_srs import key_column

from .search import candidate_id, candidates, cv_table

log = logging.getLogger("ctr_pipeline.training")
FOLD = "_fold"


def with_folds(df: DataFrame, folds: int, seed: int) -> DataFrame:
    return df.withColumn(FOLD, F.pmod(key_column(seed, F.col("row_id")), F.lit(folds)))


def search_hash(t: TrainingConfig, base: dict[str, Any], features_token: str) -> str:
    """Identity of a search: its settings, the fixed parameters and the features it ran on."""
    doc = {"space": t.search_space, "method": t.search_method, "candidates": t.search_candidates,
           "folds": t.search_folds, "seed": t.search_seed, "features": features_token,
           "base": {k: v for k, v in base.items() if k not in ("callbacks", "xgb_model")}}
    return hashlib.sha256(json.dumps(doc, sort_keys=True, default=str).encode()).hexdigest()[:16]


def fold_metrics(fit: Callable[[dict, DataFrame], Any], params: dict, data: DataFrame, fold: int) -> dict:
    """Train on every fold but ``fold``, score ``fold``: validation MXE and AUC."""
    model = fit(params, data.filter(F.col(FOLD) != fold))
    held = data.filter(F.col(FOLD) == fold)
    scored = model.transform(held).select(
        "row_id", "label", F.lit(1.0).alias("w") if "weight" not in held.columns else F.col("weight").alias("w"),
        vector_to_array("probability")[1].alias("p"))
    m, _ = sm.metrics(scored, "p", f"fold {fold}", bins=2, exact_limit=2_000_000)
    return {"mxe": m["mxe"], "auc": m["auc"], "rows": m["rows"]}


def run_search(t: TrainingConfig, base: dict[str, Any], train: DataFrame, folder: "Location | str | os.PathLike",
               fit: Callable[[dict, DataFrame], Any]) -> pd.DataFrame:
    """Cross-validate every candidate; return the CV table (best first). ``fit(params, df)`` trains one
    model; ``folder`` keeps one JSON file per finished (candidate, fold)."""
    folder = Location.of(folder)
    folder.mkdir()
    cands = candidates(t.search_space, t.search_method, t.search_candidates, t.search_seed)
    data = with_folds(train, t.search_folds, t.search_seed).cache()
    results, started = [], time.monotonic()
    total = len(cands) * t.search_folds
    try:
        for i, cand in enumerate(cands):
            cid = candidate_id(cand)
            for fold in range(t.search_folds):
                path = folder / f"{cid}-fold{fold}.json"
                if path.exists():
                    results.append(json.loads(path.read_text()))
                    log.info("train: search %d/%d: candidate %s fold %d already done", len(results), total, cid,
                             fold)
                    continue
                got = fold_metrics(fit, {**base, **cand}, data, fold)
                record = {"candidate": cid, "fold": fold, "params": cand, **got}
                path.write_text(json.dumps(record))  # atomic: a crashed search never leaves half a record
                results.append(record)
                log.info("train: search %d/%d (%.0fs): candidate %d %s fold %d: MXE %.5f AUC %.4f", len(results),
                         total, time.monotonic() - started, i + 1, json.dumps(cand), fold, got["mxe"], got["auc"])
    finally:
        data.unpersist()
    return cv_table(results)
