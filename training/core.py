"""Pure training setup: XGBoost parameters from the config and the checks made before Spark work."""
from __future__ import annotations

from typing import Any, Optional, Sequence

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
        "eval_metric": "logloss",
    }
    # early_stopping_rounds is applied by the pipeline's callback (patience_stop) on the whole history, so a
    # resumed or retried training stops where an uninterrupted one would; XGBoost's own rule restarts.
    if t.early_stopping_rounds is not None or t.min_relative_gain is not None:
        params["validation_indicator_col"] = VALIDATION_FLAG
    params.update(t.params)
    return params


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
