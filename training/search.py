"""Hyperparameter search, pure: candidates from a declared space (grid or seeded random), stable ids,
and the cross-validation table (mean and standard deviation of validation MXE and AUC per candidate).

The Spark adapter trains each (candidate, fold) and persists its result under the candidate's id, so a
crashed search resumes without redoing finished work.
"""
from __future__ import annotations

import hashlib
import itertools
import json
import math
import random
from typing import Any, Mapping

import pandas as pd

from ctr_pipeline.errors import ConfigError

SEARCHABLE = {"max_depth": int, "learning_rate": float, "min_child_weight": float, "subsample": float,
              "colsample_bytree": float, "max_delta_step": float, "reg_lambda": float, "reg_alpha": float,
              "gamma": float, "n_estimators": int}


def check_space(space: Mapping[str, Any], method: str, where: str) -> None:
    """Every key is a searchable XGBoost parameter; grid values are lists, random values are lists or
    {min, max[, log]} ranges."""
    if not space:
        return
    for name, values in space.items():
        if name not in SEARCHABLE:
            raise ConfigError(f"{where}: training.search_space: {name!r} cannot be searched; choose from "
                              f"{', '.join(SEARCHABLE)}")
        if isinstance(values, list) and values and all(isinstance(v, (int, float)) and not isinstance(v, bool)
                                                       for v in values):
            continue
        if method == "random" and isinstance(values, dict) and {"min", "max"} <= set(values) \
                and set(values) <= {"min", "max", "log"} and values["min"] < values["max"]:
            if values.get("log") and values["min"] <= 0:
                raise ConfigError(f"{where}: training.search_space[{name!r}]: a log range needs min > 0")
            continue
        allowed = "a list of numbers" + (" or {min, max, log}" if method == "random" else "")
        raise ConfigError(f"{where}: training.search_space[{name!r}]: expected {allowed}, got {values!r}")


def candidates(space: Mapping[str, Any], method: str, count: int, seed: int) -> list[dict[str, Any]]:
    """The grid in declaration order, or ``count`` seeded random draws (the same seed, the same list)."""
    names = list(space)
    if method == "grid":
        return [dict(zip(names, combo)) for combo in itertools.product(*(space[n] for n in names))]
    rng = random.Random(seed)
    out = []
    for _ in range(count):
        c = {}
        for n in names:
            v = space[n]
            if isinstance(v, list):
                c[n] = rng.choice(v)
            elif v.get("log"):
                c[n] = math.exp(rng.uniform(math.log(v["min"]), math.log(v["max"])))
            else:
                c[n] = rng.uniform(v["min"], v["max"])
            if SEARCHABLE[n] is int:
                c[n] = int(round(c[n]))
        out.append(c)
    return out


def candidate_id(params: Mapping[str, Any]) -> str:
    return hashlib.sha256(json.dumps(dict(sorted(params.items())), sort_keys=True).encode()).hexdigest()[:12]


def cv_table(results: list[dict[str, Any]]) -> pd.DataFrame:
    """Rows (candidate, fold, mxe, auc, params) to one row per candidate: mean and std of MXE and AUC,
    best (lowest mean MXE) first."""
    frame = pd.DataFrame(results)
    grouped = frame.groupby("candidate", sort=False)
    table = pd.DataFrame({
        "candidate": list(grouped.groups),
        "params": [json.dumps(grouped.get_group(c)["params"].iloc[0], sort_keys=True) for c in grouped.groups],
        "folds": grouped["fold"].count().to_numpy(),
        "mxe_mean": grouped["mxe"].mean().to_numpy(), "mxe_std": grouped["mxe"].std(ddof=1).to_numpy(),
        "auc_mean": grouped["auc"].mean().to_numpy(), "auc_std": grouped["auc"].std(ddof=1).to_numpy()})
    return table.sort_values(["mxe_mean", "candidate"], kind="mergesort").reset_index(drop=True)
