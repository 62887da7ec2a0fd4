"""Pure training setup: XGBoost parameters from the config and the checks made before Spark work."""
from __future__ import annotations

from typing import Any, Optional

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
    if t.early_stopping_rounds is not None:
        params["early_stopping_rounds"] = t.early_stopping_rounds
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
