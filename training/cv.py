"""Spark adapters of the k-fold cross-validated search on the train split.

:func:`run_sampled_search` (the default, ``training.search_rows`` > 0): an exact random sample of train is
collected once and broadcast; every (candidate, fold) is one Spark task training native XGBoost on it, all
in parallel. With the driver engine, which holds train's rows, the sample is drawn from them and the fits
run in driver threads instead (no Python workers to start, the sample not pickled to them): on the 1M demo
rows the default search took 13 s there, against 16 s as Spark tasks. :func:`run_search`
(``search_rows: 0``): every (candidate, fold) is a distributed xgboost.spark fit on all of train, one after
another.

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
from typing import Any, Callable, Iterator, Optional

import numpy as np
import pandas as pd
from pyspark.ml.functions import vector_to_array
from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import functions as F

from ctr_pipeline.rowsample import key_column
from ctr_pipeline.schema import TrainingConfig
from ctr_pipeline.spark import LazySession, shape, task_slots
from ctr_pipeline.storage import Location
from evaluation import spark_metrics as sm

from .core import booster_params
from .search import candidate_id, cv_table, fold_result, search_candidates, splittable_columns

log = logging.getLogger("ctr_pipeline.training")
FOLD = "_fold"


def with_folds(df: DataFrame, folds: int, seed: int) -> DataFrame:
    return df.withColumn(FOLD, F.pmod(key_column(seed, F.col("row_id")), F.lit(folds)))


def search_hash(t: TrainingConfig, base: dict[str, Any], features_token: str, stopping: Optional[int] = None) -> str:
    """Identity of a search: its settings, the fixed parameters and the features it ran on."""
    doc = {"space": t.search_space, "method": t.search_method, "candidates": t.search_candidates,
           "folds": t.search_folds, "seed": t.search_seed, "features": features_token,
           "rows": t.search_rows, "stopping": stopping,
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


def _done(folder: Location, cid: str, fold: int) -> Optional[dict]:
    """The recorded result of (candidate ``cid``, ``fold``), or None when it has not finished."""
    path = folder / f"{cid}-fold{fold}.json"
    return json.loads(path.read_text()) if path.exists() else None


def _save(folder: Location, cid: str, fold: int, cand: dict, got: dict) -> dict:
    """Record one finished (candidate, fold); atomic, so a crashed search never leaves half a record."""
    record = {"candidate": cid, "fold": fold, "params": cand, **got}
    (folder / f"{cid}-fold{fold}.json").write_text(json.dumps(record))
    return record


def run_search(t: TrainingConfig, base: dict[str, Any], train: DataFrame, folder: "Location | str | os.PathLike",
               fit: Callable[[dict, DataFrame], Any], limit: Optional[int] = None) -> pd.DataFrame:
    """Cross-validate the first ``limit`` candidates (all: None); return the CV table (best first).
    ``fit(params, df)`` trains one model; ``folder`` keeps one JSON file per finished (candidate, fold)."""
    folder = Location.of(folder)
    folder.mkdir()
    cands = search_candidates(t, base, limit)
    data = with_folds(train, t.search_folds, t.search_seed).cache()
    results, started = [], time.monotonic()
    total = len(cands) * t.search_folds
    try:
        for i, cand in enumerate(cands):
            cid = candidate_id(cand)
            for fold in range(t.search_folds):
                done = _done(folder, cid, fold)
                if done is not None:
                    results.append(done)
                    log.info("train: search %d/%d: candidate %s fold %d already done", len(results), total, cid,
                             fold)
                    continue
                got = fold_metrics(fit, {**base, **cand}, data, fold)
                results.append(_save(folder, cid, fold, cand, got))
                log.info("train: search %d/%d (%.0fs): candidate %d %s fold %d: MXE %.5f AUC %.4f", len(results),
                         total, time.monotonic() - started, i + 1, json.dumps(cand), fold, got["mxe"], got["auc"])
    finally:
        data.unpersist()
    return cv_table(results)


SEARCH_DRIVER_ROWS = 4_000_000   # the sample is held by the driver and by every task (about 0.5 KB a row here)
SAMPLE_NAMING = ("training.search_rows", "the search's sample is held")   # (key, what) in the size error




def sample_held_rows(t: TrainingConfig, x, cols: dict[str, np.ndarray], source: str):
    """:func:`ctr_pipeline.rowsample.capped_rows`' exact sample of the search, with its folds, taken from rows
    the driver already holds (CSR ``x``, {"row_id", "label"[, "weight"]: array}): the same rows."""
    from ctr_pipeline.rowhash import keys
    from ctr_pipeline.rowsample import held_rows, smallest

    total = len(cols["row_id"])
    rows = held_rows(t.search_rows, total, SEARCH_DRIVER_ROWS, source, *SAMPLE_NAMING)
    if rows < total:
        pick = smallest(keys(t.search_seed + 1, cols["row_id"]), cols["row_id"], rows)
        x, cols = x[pick], {c: v[pick] for c, v in cols.items()}
    return x, {**cols, FOLD: keys(t.search_seed, cols["row_id"]) % t.search_folds}, rows, total


def _fit_task(data: tuple, base: dict[str, Any], stopping: Optional[int], nthread: int):
    """One (candidate id, fold, candidate) of the search's sample ``data`` (x, y, w, folds) trained and scored."""
    def one(task):
        cid, fold, cand = task
        xs, y, w, folds = data
        params = booster_params({**base, **cand})
        rounds = int(cand.get("n_estimators", base["n_estimators"]))
        return cid, fold, cand, fold_result(xs, y, w, folds, fold, params, rounds, stopping, nthread)
    return one


def spark_fits(spark, todo: list, data: tuple, base: dict[str, Any], stopping: Optional[int], nthread: int,
               every: float) -> list:
    """Every (candidate id, fold, candidate) of ``todo`` as one Spark task, the sample broadcast: the results
    (``every`` is not used: the stage's watcher logs the Spark tasks' progress)."""
    shared = spark.sparkContext.broadcast(data)

    def one(task):
        return _fit_task(shared.value, base, stopping, nthread)(task)

    try:
        return spark.sparkContext.parallelize(todo, len(todo)).map(one).collect()
    finally:
        shared.destroy()


def driver_fits(spark, todo: list, data: tuple, base: dict[str, Any], stopping: Optional[int], nthread: int,
                every: float) -> Iterator:
    """Every (candidate id, fold, candidate) of ``todo`` in the driver, as many at once as the session has task
    slots (XGBoost releases the GIL while it trains), the deepest candidates first so that the threads end
    together: the results in the order they finish, a progress line every ``every`` seconds."""
    from concurrent.futures import ThreadPoolExecutor, as_completed

    from ctr_pipeline.progress import elapsed_text

    def depth(task) -> int:
        return int(task[2].get("max_depth", base["max_depth"]))

    one, started, last = _fit_task(data, base, stopping, nthread), time.monotonic(), time.monotonic()
    failure: Optional[BaseException] = None
    with ThreadPoolExecutor(task_slots(spark), thread_name_prefix="search") as pool:
        running = [pool.submit(one, task) for task in sorted(todo, key=depth, reverse=True)]
        try:
            for done, future in enumerate(as_completed(running), 1):
                if future.cancelled():
                    continue
                if future.exception() is not None:   # the fits not started are dropped, those running kept
                    failure = failure or future.exception()
                    for waiting in running:
                        waiting.cancel()
                    continue
                yield future.result()
                if time.monotonic() - last >= every and done < len(running) and failure is None:
                    last = time.monotonic()
                    log.info("train: search: %d of %d fits done, %s", done, len(running),
                             elapsed_text(last - started))
        finally:
            for waiting in running:   # the caller stopped early
                waiting.cancel()
    if failure is not None:
        raise failure


def run_sampled_search(t: TrainingConfig, base: dict[str, Any], train: "DataFrame | SparkSession | LazySession",
                       folder: "Location | str | os.PathLike", stopping: Optional[int], source: str,
                       limit: Optional[int] = None, held: Optional[tuple] = None, every: float = 30.0
                       ) -> tuple[pd.DataFrame, dict[str, Any]]:
    """Cross-validate the first ``limit`` candidates (all: None) on an exact sample of ``t.search_rows`` train
    rows, one fit per (candidate, fold) not already recorded in ``folder``; return the CV table (best first)
    and what was searched on (rows, rows of train, fits run, seconds including the sample's collection).

    The fits run as Spark tasks, or, given ``held`` (train's rows already in the driver: CSR, {column: array};
    the driver engine), in driver threads on a sample drawn from those rows, each result recorded as it
    finishes and a progress line every ``every`` seconds. Both give the same table. ``train``: the split's
    DataFrame, or with ``held`` the session alone."""
    from ctr_pipeline.rowsample import capped_rows

    started = time.monotonic()
    folder = Location.of(folder)
    folder.mkdir()
    spark = train if isinstance(train, (SparkSession, LazySession)) else train.sparkSession
    cands = search_candidates(t, base, limit)
    weighted = "weight" in (held[1] if held is not None else train.columns)
    columns = ("row_id", "label", FOLD, "weight") if weighted else ("row_id", "label", FOLD)
    if held is not None:
        x, cols, rows, total = sample_held_rows(t, *held, source)
    else:
        x, cols, rows, total = capped_rows(with_folds(train, t.search_folds, t.search_seed), t.search_rows,
                                           t.search_seed + 1, columns, SEARCH_DRIVER_ROWS, source, *SAMPLE_NAMING)
    order = np.argsort(cols["row_id"], kind="stable")   # the rows' order, and so XGBoost's sketch, fixed by row_id
    x, cols = x[order], {c: v[order] for c, v in cols.items()}
    width = x.shape[1]
    keep = splittable_columns(x, cols.get("weight"), [booster_params({**base, **c}) for c in cands])
    if keep is not None:
        x = x[:, keep]
        log.info("train: search: %s of the %s columns can be split on in this sample (the rest weigh under "
                 "4 min_child_weight there); the search trains on those", f"{len(keep):,}", f"{width:,}")
    results: dict[tuple[str, int], dict] = {}
    todo = []
    for cand in cands:
        cid = candidate_id(cand)
        for fold in range(t.search_folds):
            record = _done(folder, cid, fold)
            if record is not None:
                results[cid, fold] = record
            else:
                todo.append((cid, fold, cand))
    if results:
        log.info("train: search: %d of %d (candidate, fold) results already in %s", len(results),
                 len(results) + len(todo), folder)
    if todo:
        nthread = shape(spark).task_cpus
        data = (x, cols["label"].astype(np.float32), cols["weight"].astype(np.float32) if weighted else None,
                cols[FOLD].astype(np.int64))
        where = "Spark tasks" if held is None else f"fits in {task_slots(spark)} driver thread(s)"
        log.info("train: search: %d candidates x %d folds on an exact sample of %s of the %s train rows: %d %s, "
                 "each training XGBoost on %d thread(s)", len(cands), t.search_folds, f"{rows:,}", f"{total:,}",
                 len(todo), where, nthread)
        fits = spark_fits if held is None else driver_fits
        for cid, fold, cand, got in fits(spark, todo, data, base, stopping, nthread, every):
            results[cid, fold] = _save(folder, cid, fold, cand, got)
    ordered = [results[candidate_id(c), f] for c in cands for f in range(t.search_folds)]
    for i, c in enumerate(cands):
        got = [results[candidate_id(c), f] for f in range(t.search_folds)]
        log.info("train: search candidate %d %s: MXE %s, trees %s", i + 1, json.dumps(c),
                 " ".join(f"{r['mxe']:.5f}" for r in got), " ".join(str(r.get("trees", "-")) for r in got))
    info = {"rows": rows, "train_rows": total, "tasks_run": len(todo), "width": width,
            "columns": width if keep is None else len(keep), "seconds": round(time.monotonic() - started, 1)}
    return cv_table(ordered), info
