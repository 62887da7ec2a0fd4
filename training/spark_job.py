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
import time
from functools import partial
from typing import Callable, Optional

import numpy as np

from pyspark.sql import functions as F

from ctr_pipeline.aws import AwsSettings
from ctr_pipeline.errors import ConfigError, StageError, UserError
from ctr_pipeline.failures import failure_reason
from ctr_pipeline.rowsample import capped_rows, capped_sample
from ctr_pipeline.spark import driver_reads, shape, spark_version, task_slots, temporary_conf
from ctr_pipeline.stage import StageContext, StageResult
from ctr_pipeline.storage import Location
from evaluation import gbdt_lr
from features.arrow_io import parquet_rows, read_capped, split_columns
from features.spark_io import read_features, vector_width

from . import driver_fit, gbdt_lr_spark, heldout
from .callbacks import METRIC, VALIDATION_ATTR, PipelineCallback
from .checkpoints import CheckpointStore
from .cv import run_sampled_search, run_search, search_hash
from .core import (VALIDATION_FLAG, backoff_seconds, best_round, booster_params, booster_problem, cuda_problem,
                   engine_for, estimator_params, merged_history, stopping_rounds, workers_for)
from .heldout import LeafLosses
from .search import affordable, choose, incumbent, search_candidates, search_line, skipped_search

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

    params["num_workers"] = workers_for(params["num_workers"], task_slots(ctx.spark),
                                        ctx.cfg.source_of("training.num_workers"))
    problem = cuda_problem(params["device"], bool(xgboost.build_info().get("USE_CUDA")),
                           visible_gpus() if params["device"] == "cuda" else 0)
    if problem:
        raise ConfigError(f"{ctx.cfg.source_of('training.device')}: {problem}")
    t = ctx.cfg.training
    problem = booster_problem(params)
    if problem:
        raise ConfigError(f"{ctx.cfg.source_of('training.params')}: training.params: {problem}")
    space = search_candidates(t, params) if t.search_space else []
    for candidate in space:
        problem = booster_problem({**params, **candidate})
        if problem:
            raise ConfigError(f"{ctx.cfg.source_of('training.search_space')}: training.search_space: candidate "
                              f"{json.dumps(candidate, default=str)}: {problem}")


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


def plain_dmatrix(tree_method, device) -> bool:
    """Stands in for xgboost.spark's ``_can_use_qdm`` while :func:`validation_as_dmatrix` is active: no
    QuantileDMatrix. Module-level, so the pickled training function finds it on the executors."""
    return False


@contextlib.contextmanager
def validation_as_dmatrix(enabled: bool):
    """Have xgboost.spark build plain DMatrix objects (not QuantileDMatrix) while ``enabled``.

    With tree_method hist it builds the validation set as a QuantileDMatrix, and XGBoost 3.2's CPU
    prediction on a sparse QuantileDMatrix is slow (dmlc/xgboost#11247). Measured here, single-threaded, on
    72,000 train and 10,000 validation rows x 17,000 one-hot columns: 3 s a round against 0.04 s with
    DMatrix objects (training included); in the pipeline early stopping made a 15 s training take 150 s.
    Training from a DMatrix with evaluation took 2.0 s for 50 rounds, from a QuantileDMatrix without
    evaluation 1.4 s. xgboost.spark has no option for this: its choice (``_can_use_qdm``) is a module
    global that the pickled training function takes along, so it is replaced for the duration of the fit.
    """
    import xgboost.spark.core as xgb_spark

    if not enabled or not hasattr(xgb_spark, "_can_use_qdm"):
        yield
        return
    original = xgb_spark._can_use_qdm
    xgb_spark._can_use_qdm = plain_dmatrix
    try:
        yield
    finally:
        xgb_spark._can_use_qdm = original


def checkpoint_uri(ctx: StageContext) -> Location:
    """``training.checkpoint_dir`` or RUN/checkpoints/train, with the run's AWS settings for S3."""
    where = ctx.cfg.training.checkpoint_dir
    return Location.of(where, AwsSettings.from_config(ctx.cfg)) if where else ctx.run.root / "checkpoints" / "train"


def load_checkpoint(raw: bytes):
    """(booster, per-round history stored with it) of a checkpoint's bytes."""
    import xgboost

    booster = xgboost.Booster()
    booster.load_model(bytearray(raw))
    history = json.loads(booster.attr("ctr_pipeline_history") or "{}")
    return booster, history


def fit_once(ctx: StageContext, params: dict, data, start: Optional[tuple[int, bytes]],
             held: Optional[LeafLosses] = None):
    """One training attempt on ``data`` (a DataFrame for xgboost.spark, or :class:`driver_fit.DriverRows`),
    continuing from checkpoint ``start`` (rounds, bytes) when given; early stopping on ``held`` (validation
    rows whose log loss comes from the leaves) when given. Returns (model, history of every round)."""
    from xgboost.spark import SparkXGBClassifier

    t = ctx.cfg.training
    total = params["n_estimators"]
    kwargs, earlier = dict(params), {}
    if start is not None:
        booster, earlier = load_checkpoint(start[1])
        kwargs["xgb_model"] = booster
        kwargs["n_estimators"] = total - start[0]
        log.info("train: resuming from the checkpoint with %d trees; %d rounds to go", start[0],
                 kwargs["n_estimators"])
    kwargs["callbacks"] = [PipelineCallback(total, checkpoint_uri(ctx), t.checkpoint_every, t.progress_every,
                                            t.min_relative_gain, t.gain_window, earlier, stopping_rounds(ctx.cfg),
                                            held)]
    if isinstance(data, driver_fit.DriverRows):
        booster, current = driver_fit.train(kwargs, data, kwargs["n_estimators"], kwargs["callbacks"][0],
                                            kwargs.get("xgb_model"))
        model = driver_fit.spark_model(params, booster, current)
    else:
        validating = "validation_indicator_col" in params
        with whole_partition_batches(ctx.spark, enabled=validating), \
                validation_as_dmatrix(validating and params.get("device", "cpu") == "cpu"):
            model = SparkXGBClassifier(**kwargs).fit(data)
        summary = getattr(model, "training_summary", None)
        current = {"training": dict(getattr(summary, "train_objective_history", {}) or {}),
                   "validation": dict(getattr(summary, "validation_objective_history", {}) or {})}
    history = merged_history(earlier, {k: v for k, v in current.items() if v})
    if held is not None:
        booster = model.get_booster()
        valid = json.loads(booster.attr(VALIDATION_ATTR) or "[]")   # every round, resumed ones included
        booster.set_attr(**{VALIDATION_ATTR: None})
        history = {name: {m: v[:len(valid)] for m, v in series.items()} for name, series in history.items()}
        history["validation"] = {METRIC: valid}
    return model, history


def fit_with_retries(ctx: StageContext, params: dict, data, resume: bool, held: Optional[LeafLosses] = None):
    """Train; a failed attempt is retried (t.retries times, backoff doubling), each from the newest
    checkpoint. ``resume`` starts from the newest checkpoint too; otherwise old checkpoints are cleared."""
    t = ctx.cfg.training
    store = CheckpointStore(checkpoint_uri(ctx))
    if not resume:
        store.clear()
    attempts = t.retries + 1
    for attempt in range(1, attempts + 1):
        start = store.newest() if (resume or attempt > 1) else None
        if resume and attempt == 1 and start is None:
            log.warning("train: --resume but no checkpoint in %s; starting from round 0", store.uri)
        try:
            return fit_once(ctx, params, data, start, held)
        except UserError:
            raise
        except Exception as exc:  # a lost executor or failed barrier stage surfaces as a Py4J/Spark error
            reason = failure_reason(exc)
            if attempt == attempts:
                raise StageError(f"training failed in all {attempts} attempt(s); last error: {reason}. "
                                 f"Checkpoints are kept in {store.uri}: fix the cause and run "
                                 "'ctr-pipeline train --resume --out RUN'") from exc
            wait = backoff_seconds(attempt, t.retry_backoff)
            log.warning("train: attempt %d of %d failed (%s); retrying from the newest checkpoint in %.0fs",
                        attempt, attempts, reason, wait)
            time.sleep(wait)
    raise AssertionError("unreachable")  # the loop returns or raises


def keep_best_trees(model, history: dict, stopping: bool) -> Optional[int]:
    """With early stopping, keep only the trees up to the best validation round; return that round."""
    best = best_round(history.get("validation", {}).get("logloss", []))
    if best is None or not stopping:
        return best
    booster = model.get_booster()
    if best + 1 < booster.num_boosted_rounds():
        sliced = booster[: best + 1]
        sliced.set_attr(best_iteration=str(best))
        model._xgb_sklearn_model._Booster = sliced   # the Spark model predicts and saves with this booster
    return best


def run(ctx: StageContext) -> StageResult:
    import xgboost

    t = ctx.cfg.training
    params = estimator_params(ctx.cfg)
    engine = engine_for(t.engine, shape(ctx.spark).master, params["device"], params["num_workers"])
    check_environment(ctx, params)
    feats = ctx.run.path_of("features")
    local = driver_reads(ctx.spark, feats)
    frames: dict = {}

    def frame(split: str = "train"):
        """Feature split ``split`` as a Spark DataFrame, read when first needed: the driver engine on a local
        run directory needs none (a cold JVM's first query costs about 2 s)."""
        if split not in frames:
            frames[split] = read_features(ctx.spark, str(feats / split))
        return frames[split]

    columns, width = split_columns(feats / "train") if local else (frame().columns, vector_width(frame()))
    if "weight" in columns:
        params["weight_col"] = "weight"
    rows = {"train": parquet_rows(feats / "train") if local else frame().count()}
    tree_rows, linear_rows = rows["train"], None
    data = None if engine == "driver" else frame()
    if t.model == "gbdt_lr":
        data, linear_rows = gbdt_lr_spark.held_out(frame(), t.gbdt_lr_share, t.search_seed)
    train_only, held_rows = data, None
    if engine == "driver":
        started = time.monotonic()
        keep = None if linear_rows is None else gbdt_lr_spark.tree_rows_mask(t.gbdt_lr_share, t.search_seed)
        held_rows = driver_fit.load(feats / "train", width, "weight" in columns, driver_fit.threads(ctx.spark), keep)
        log.info("train: %s train rows read into the driver in %.1fs (training.engine %s)", f"{len(held_rows.y):,}",
                 time.monotonic() - started, t.engine)
    if t.model == "gbdt_lr":
        tree_rows = len(held_rows.y) if held_rows is not None else data.count()
        log.info("train: model gbdt_lr: the trees train on %s of the %s train rows, the logistic regression on the "
                 "other %.0f%% (training.gbdt_lr_share)", f"{tree_rows:,}", f"{rows['train']:,}",
                 100 * t.gbdt_lr_share)
    validating = "validation_indicator_col" in params
    search = None
    patience = stopping_rounds(ctx.cfg)
    if t.search_space:
        total = len(search_candidates(t, params))
        limit = affordable(t.search_budget, tree_rows, t.search_folds, t.search_rows)
        if limit is not None and limit < min(2, total):
            search = skipped_search(t, tree_rows, limit, total)
            log.info("train: search skipped: %s", search["why"])
        else:
            search = cross_validate(ctx, params, frame if train_only is None else (lambda: train_only), patience,
                                    limit, held_rows)
            params.update(search["best"])
    held, stopping_on, valid_rows = None, None, None
    if validating:
        sampled = stopping_sample(ctx, params, partial(frame, "validation"), engine, width, "weight" in columns)
        if engine == "driver":
            held, valid_rows, stopping_on, rows["validation"] = sampled
            del params["validation_indicator_col"]   # the driver evaluates the sample it holds
        elif sampled is not None:
            held, stopping_on, rows["validation"] = sampled
            del params["validation_indicator_col"]   # xgboost.spark trains on train alone
        else:
            valid, stopping_on, rows["validation"] = capped_sample(frame("validation"), t.stopping_rows,
                                                                   t.search_seed + 2)
            data = (data.withColumn(VALIDATION_FLAG, F.lit(False))
                    .unionByName(valid.withColumn(VALIDATION_FLAG, F.lit(True))))
            # xgboost.spark skips its shuffle when the partitions already number its workers, and a barrier
            # stage over a union fails (BarrierJobUnsupportedRDDChainException); its docs ask for this then.
            params["force_repartition"] = True
        if stopping_on < rows["validation"]:
            log.info("train: early stopping evaluates an exact sample of %s of the %s validation rows each round "
                     "(training.stopping_rows)%s", f"{stopping_on:,}", f"{rows['validation']:,}",
                     ", from the trees' leaves" if held is not None else "")
    where = f"{params['num_workers']} worker(s)"
    if held_rows is not None:
        data, data.valid = held_rows, valid_rows
        where = f"the driver, {data.threads} thread(s)"
    log.info("train: %s rows, %s%d trees of depth %d, %s on %s%s", f"{tree_rows:,}",
             "at most " if patience else "", params["n_estimators"], params["max_depth"], params["tree_method"],
             where, f", stopping after {patience} rounds without a better validation MXE" if patience else "")
    model, history = fit_with_retries(ctx, params, data, resume=bool(ctx.options.get("resume")), held=held)
    stopping = patience is not None or t.min_relative_gain is not None
    best = keep_best_trees(model, history, stopping)
    for name in ("callbacks", "xgb_model"):   # the pipeline's callback and a resumed run's first trees (which
        if model.isSet(name):                  # the booster holds) are not part of the saved model
            model.clear(model.getParam(name))
    driver_fit.save_spark_model(model, ctx.out / "spark_model")
    (ctx.out / "history.json").write_text(json.dumps(history) + "\n")
    booster = model.get_booster()
    (ctx.out / "booster.ubj").write_bytes(bytes(booster.save_raw("ubj")))
    (ctx.out / "booster.json").write_bytes(bytes(booster.save_raw("json")))
    trees = booster.num_boosted_rounds()
    hybrid = None
    if linear_rows is not None:
        linear, hybrid = gbdt_lr_spark.fit(ctx.cfg, bytes(booster.save_raw("ubj")), linear_rows)
        (ctx.out / gbdt_lr_spark.RESULT).write_bytes(gbdt_lr.to_bytes(linear))
    shown = {k: v for k, v in params.items() if k not in ("features_col", "label_col", "callbacks", "xgb_model")}
    metadata = {"model": t.model, "params": shown, "trees": trees, "best_iteration": best,
                "engine": {"setting": t.engine, "ran": engine,
                           "threads": data.threads if engine == "driver" else None},
                "stopped_early": stopping and trees < params["n_estimators"], "history": "history.json",
                "stopping": {"early_stopping_rounds": patience, "validation_rows": stopping_on,
                             "evaluated_by": None if stopping_on is None else "leaves" if held else "xgboost",
                             "min_relative_gain": t.min_relative_gain, "gain_window": t.gain_window},
                "feature_map_sha256": _sha256(feats / "feature_map.tsv"),
                "features_spec_hash": ctx.upstream_details("features").get("spec_hash"),
                "data": {"features": str(feats), "rows": rows,
                         "features_token": (ctx.run.stage_record("features") or {}).get("token")},
                "versions": {"xgboost": xgboost.__version__, "pyspark": spark_version(ctx.spark)}}
    if hybrid is not None:
        metadata["gbdt_lr"] = {**hybrid, "file": gbdt_lr_spark.RESULT, "share": t.gbdt_lr_share,
                               "tree_rows": tree_rows}
    if search is not None:
        if "table" in search:
            (ctx.out / "cv_results.tsv").write_text(search["table"].to_csv(sep="\t", index=False))
            metadata["cv_table"] = "cv_results.tsv"
        metadata["search"] = {k: v for k, v in search.items() if k != "table"}
    (ctx.out / "metadata.json").write_text(json.dumps(metadata, indent=1) + "\n")
    details = {"model": t.model, "engine": engine, "params": shown, "trees": trees, "best_iteration": best,
               "early_stopping_rounds": patience,
               "search": None if search is None else {k: v for k, v in metadata["search"].items() if k != "results"},
               "gbdt_lr": metadata.get("gbdt_lr")}
    return StageResult(rows=rows, details=details,
                       summary=[f"model: {trees} trees ({params['tree_method']}, {params['device']}, {where})"
                                + (f", best iteration {best + 1}" if best is not None else "")]
                       + ([search_line(search)] if search is not None else [])
                       + ([gbdt_lr_spark.summary_line(hybrid)] if hybrid is not None else []))


LEAF_ROWS = 200_000   # validation rows early stopping holds in the driver and in every worker, at most
DRIVER_VALID_ROWS = 4_000_000   # ... with the driver engine, which holds them once


def stopping_sample(ctx: StageContext, params: dict, validation: Callable, engine: str, width: int, weighted: bool):
    """For xgboost.spark: (the stopping sample of ``validation`` as :class:`LeafLosses`, its rows, validation
    rows), or None when XGBoost must evaluate it itself: on cuda (whose predictor has no per-row cost in the
    width), for a booster whose margins the leaves do not give, or for a sample over LEAF_ROWS rows.
    For the driver engine: (LeafLosses or None, the sample's (x, y, w) when XGBoost evaluates it (else None),
    its rows, validation rows); the driver holds the sample once, so up to DRIVER_VALID_ROWS rows.
    ``validation()`` gives the split as a DataFrame (read only when Spark collects the sample); its vectors
    are ``width`` wide and it has a weight column when ``weighted``.

    Why the leaves: XGBoost's CPU prediction costs rows x columns per call (see :mod:`training.heldout`);
    on the 1M demo rows (20,000 rows x 93,005 columns) evaluating every round took about 75 ms of each
    worker's 310 ms round."""
    t = ctx.cfg.training
    leaves = params.get("device", "cpu") == "cpu" and heldout.supported(booster_params(params))
    columns = ("label", "weight") if weighted else ("label",)
    if engine == "driver":
        split = ctx.run.path_of("features") / "validation"
        capped = partial(read_capped, split, width) if split.is_local else partial(capped_rows, validation())
        x, cols, rows, total = capped(t.stopping_rows, t.search_seed + 2, columns, DRIVER_VALID_ROWS,
                                      ctx.cfg.source_of("training.stopping_rows"), key="training.stopping_rows",
                                      what="early stopping's validation rows are held")
        y, w = cols["label"].astype(np.float32), cols["weight"].astype(np.float32) if "weight" in cols else None
        return (LeafLosses(x, y, w), None, rows, total) if leaves else (None, (x, y, w), rows, total)
    if not leaves:
        return None
    if (t.stopping_rows or validation().count()) > LEAF_ROWS:   # 0: all rows, counted only then
        return None
    x, cols, rows, total = capped_rows(validation(), t.stopping_rows, t.search_seed + 2, columns, LEAF_ROWS,
                                      ctx.cfg.source_of("training.stopping_rows"), key="training.stopping_rows",
                                      what="early stopping's validation rows are held")
    return LeafLosses(x, cols["label"], cols.get("weight")), rows, total


def cross_validate(ctx: StageContext, params: dict, train: Callable, stopping: Optional[int], limit: Optional[int],
                   held: Optional[driver_fit.DriverRows] = None) -> dict:
    """k-fold search of the first ``limit`` candidates (all: None) on (an exact sample of) the train split
    (``train()``: its DataFrame; of its rows ``held`` by the driver when given); returns the chosen parameters,
    the table and what was searched."""
    from xgboost.spark import SparkXGBClassifier

    t = ctx.cfg.training
    base = {k: v for k, v in params.items() if k != "validation_indicator_col"}
    token = (ctx.run.stage_record("features") or {}).get("token", "")
    folder = ctx.run.root / "checkpoints" / "cv" / search_hash(t, base, token, stopping)
    space = {"space": dict(t.search_space), "method": t.search_method, "folds": t.search_folds,
             "results": str(folder), "budget": t.search_budget, "afforded": limit,
             "drawn": len(search_candidates(t, base))}
    if t.search_rows:
        table, info = run_sampled_search(t, base, train() if held is None else ctx.spark, folder, stopping,
                                         ctx.cfg.source_of("training.search_rows"), limit,
                                         None if held is None else (held.x, held.columns()),
                                         ctx.cfg.spark.progress_seconds)
        space.update(info, engine="sampled", early_stopping_rounds=stopping)
    else:
        def fit(p: dict, df):
            return SparkXGBClassifier(**p).fit(df)

        log.info("train: cross-validated %s search, %d folds, on all of train, in %s", t.search_method,
                 t.search_folds, folder)
        started = time.monotonic()
        table = run_search(t, base, train(), folder, fit, limit)
        space.update(engine="distributed", seconds=round(time.monotonic() - started, 1))
    best, why = choose(table, incumbent(t.search_space, base))
    row = table.index[table["params"] == json.dumps(best, sort_keys=True)][0]
    log.info("train: chose candidate %s: CV MXE %.5f +- %.5f, AUC %.4f +- %.4f (%s)", json.dumps(best),
             table.loc[row, "mxe_mean"], table.loc[row, "mxe_std"], table.loc[row, "auc_mean"],
             table.loc[row, "auc_std"], why)
    return {"best": best, "why": why, "candidates": len(table), "best_cv_mxe": float(table.loc[row, "mxe_mean"]),
            "best_cv_mxe_std": float(table.loc[row, "mxe_std"]), **space, "table": table}


def _sha256(path) -> Optional[str]:
    import hashlib

    return hashlib.sha256(path.read_bytes()).hexdigest() if path.exists() else None
