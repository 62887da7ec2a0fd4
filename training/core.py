"""Pure training setup: XGBoost parameters from the config and the checks made before Spark work."""
from __future__ import annotations

import re
from typing import Any, Optional, Sequence, Union

from ctr_pipeline.errors import ConfigError
from ctr_pipeline.schema import Config

VALIDATION_FLAG = "_is_validation"


def estimator_params(cfg: Config) -> dict[str, Any]:
    """Keyword arguments for ``SparkXGBClassifier``: sparse input (missing=0.0), logloss, the config's values.

    ``gpu_hist`` (removed from XGBoost) becomes tree_method ``hist`` on device ``cuda``.
    """
    t = cfg.training
    tree_method, device = t.tree_method, t.device
    if tree_method == "gpu_hist":
        tree_method, device = "hist", "cuda"
    params: dict[str, Any] = {
        "features_col": "features", "label_col": "label",
        "enable_sparse_data_optim": True, "missing": 0.0,
        "num_workers": t.num_workers, "tree_method": tree_method, "device": device,
        "n_estimators": t.n_estimators, "max_depth": t.max_depth, "learning_rate": t.learning_rate,
        "eval_metric": "logloss", "verbose": False,   # progress comes from the pipeline's callback
    }
    # early_stopping_rounds is applied by the pipeline's callback (patience_stop) on the whole history, so a
    # resumed or retried training stops where an uninterrupted one would; XGBoost's own rule restarts.
    if stopping_rounds(cfg) is not None or t.min_relative_gain is not None:
        params["validation_indicator_col"] = VALIDATION_FLAG
    params.update(t.params)
    return params


def stopping_rounds(cfg: Config) -> Optional[int]:
    """``training.early_stopping_rounds``, or None when there is no validation split to stop on (the default
    is then off; a value set explicitly without one is refused by the config check)."""
    return cfg.training.early_stopping_rounds if cfg.sampling.validation else None


def booster_params(params: dict[str, Any]) -> dict[str, Any]:
    """Native ``xgboost.train`` parameters of estimator keyword arguments ``params`` (XGBClassifier's
    own translation: objective, eta aliases); the Spark estimator's arguments are left out."""
    import xgboost as xgb

    sk = {k: v for k, v in params.items() if k not in SPARK_ESTIMATOR_ARGS}
    return {k: v for k, v in xgb.XGBClassifier(**sk).get_xgb_params().items() if v is not None}


# SparkXGBClassifier's own arguments, not booster parameters (xgboost.spark documentation).
SPARK_ESTIMATOR_ARGS = frozenset({
    "features_col", "label_col", "prediction_col", "probability_col", "raw_prediction_col", "pred_contrib_col",
    "validation_indicator_col", "weight_col", "base_margin_col", "qid_col", "num_workers", "force_repartition",
    "repartition_random_shuffle", "enable_sparse_data_optim", "launch_tracker_on_driver", "coll_cfg",
    "feature_names", "features_cols", "feature_types", "feature_weights", "missing", "n_estimators", "callbacks",
    "xgb_model", "verbose"})


def booster_problem(params: dict[str, Any]) -> Optional[str]:
    """XGBoost's objection to the booster parameters among ``params`` (estimator keyword arguments), or None.

    One round on two rows on the driver, in milliseconds: otherwise a bad value fails inside the training
    task (and is retried like a lost executor) and a misspelt name is silently ignored.
    """
    import warnings

    import numpy as np
    import xgboost as xgb

    booster = booster_params({**params, "device": "cpu"})   # cuda is checked on its own (cuda_problem)
    data = xgb.DMatrix(np.array([[0.0], [1.0]]), label=np.array([0.0, 1.0]))
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        try:
            xgb.train(booster, data, 1)
        except xgb.core.XGBoostError as exc:
            first = next((line.strip() for line in str(exc).splitlines() if line.strip()), type(exc).__name__)
            return "XGBoost refuses them: " + first
    for w in caught:
        unused = re.search(r"Parameters: \{(.*?)\} are not used", str(w.message), re.S)
        if unused:
            return (f"XGBoost does not use {unused.group(1).strip()}: check the spelling against "
                    "https://xgboost.readthedocs.io/en/stable/parameter.html")
    return None


def workers_for(setting: Union[int, str], slots: int, source: str) -> int:
    """XGBoost workers for ``training.num_workers``: every task slot for ``auto``; a number is checked.

    Each worker trains with spark.task.cpus threads (xgboost.spark sets nthread from it), so ``auto`` gives
    XGBoost every core Spark has without slowing the other stages' tasks.
    """
    if setting == "auto":
        return slots
    check_workers(int(setting), slots, source)
    return int(setting)


def engine_for(setting: str, master: str, device: str, num_workers: Union[int, str]) -> str:
    """``training.engine`` resolved: ``driver`` or ``spark``. ``auto`` trains in the driver when Spark's
    master is local (the workers would be processes on the same cores), the device is cpu and num_workers
    is auto (a number asks for xgboost.spark's workers)."""
    if setting != "auto":
        return setting
    return "driver" if master.startswith("local") and device == "cpu" and num_workers == "auto" else "spark"


def check_workers(num_workers: int, slots: int, source: str) -> None:
    """xgboost.spark waits forever for barrier slots it cannot get: fail up front instead."""
    if num_workers > slots:
        raise ConfigError(f"{source}: training.num_workers is {num_workers} but Spark has only {slots} task "
                          f"slot(s); set training.num_workers to at most {slots} or add executors/cores")


def cuda_problem(device: str, built_with_cuda: bool, gpus_visible: int) -> Optional[str]:
    """Why device cuda cannot work here (XGBoost would silently train on the CPU), or None."""
    if device != "cuda":
        return None
    if not built_with_cuda:
        return ("training.device is cuda but this XGBoost build has no CUDA support (xgboost-cpu); install "
                "the full package: pip uninstall -y xgboost-cpu && pip install 'xgboost==3.2.*'")
    if gpus_visible < 1:
        return "training.device is cuda but no GPU is visible (nvidia-smi lists none); use device cpu"
    return None


# ---------------------------------------------------------------------------------------------- stopping rules

def cost_aware_stop(history: Sequence[float], window: int, min_gain: float) -> bool:
    """Stop when the last ``window`` trees improved validation MXE by less than ``min_gain`` (relative):
    (mxe[-1 - window] - mxe[-1]) / mxe[-1 - window] < min_gain. More trees cost serving time; this is the
    point where they stop paying for it."""
    if len(history) <= window:
        return False
    before, now = history[-1 - window], history[-1]
    return before <= 0 or (before - now) / before < min_gain


def patience_stop(history: Sequence[float], patience: int) -> bool:
    """Stop when validation MXE has not improved (strictly) for ``patience`` rounds: XGBoost's
    ``early_stopping_rounds`` rule, computed from the whole per-round history."""
    best = best_round(history)
    return best is not None and len(history) - 1 - best >= patience


def best_round(history: Sequence[float]) -> Optional[int]:
    """0-based round of the lowest validation MXE (the first one on ties); None without history."""
    if not history:
        return None
    return min(range(len(history)), key=lambda i: (history[i], i))


def backoff_seconds(attempt: int, base: float) -> float:
    """Wait before retry ``attempt`` (1 = the first retry): base, 2*base, 4*base, ..."""
    return base * (2 ** (attempt - 1))


CHECKPOINT_PREFIX, CHECKPOINT_SUFFIX = "round-", ".ubj"


def checkpoint_name(rounds: int) -> str:
    """File name of the checkpoint holding the first ``rounds`` trees."""
    return f"{CHECKPOINT_PREFIX}{rounds:06d}{CHECKPOINT_SUFFIX}"


def newest_checkpoint(names: Sequence[str]) -> Optional[tuple[int, str]]:
    """(rounds, name) of the checkpoint with the most trees among ``names``; temporary files ignored."""
    found = []
    for name in names:
        if name.startswith(CHECKPOINT_PREFIX) and name.endswith(CHECKPOINT_SUFFIX):
            digits = name[len(CHECKPOINT_PREFIX):-len(CHECKPOINT_SUFFIX)]
            if digits.isdigit():
                found.append((int(digits), name))
    return max(found) if found else None


def merged_history(earlier: dict, current: dict) -> dict:
    """Per-round metrics of resumed rounds (``earlier``) followed by this attempt's (``current``)."""
    out: dict = {}
    for name in set(earlier) | set(current):
        metrics = set(earlier.get(name, {})) | set(current.get(name, {}))
        out[name] = {m: list(earlier.get(name, {}).get(m, [])) + list(current.get(name, {}).get(m, []))
                     for m in metrics}
    return out
