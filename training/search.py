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
import time
from typing import Any, Mapping, Optional

import numpy as np
import pandas as pd

from ctr_pipeline.errors import ConfigError

# A small space worth searching on rare-click data (configs/example.yaml, README): depth, step, leaf size,
# max_delta_step (XGBoost's parameter notes suggest 1-10 for very unbalanced logistic regression) and L2.
RECOMMENDED_SPACE = {"max_depth": [4, 6, 8], "learning_rate": [0.05, 0.1, 0.2], "min_child_weight": [1, 5, 20],
                     "max_delta_step": [0, 1], "reg_lambda": [1, 10]}

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
    """The grid (parameters in name order, values in the order given), or ``count`` seeded random draws:
    the same space and seed give the same list, however the space's keys are ordered (a run's recorded
    config comes back from JSON with sorted keys).

    A space of lists only is drawn from without repeats: ``count`` distinct grid points, or the whole grid
    when it has no more than ``count``."""
    names = sorted(space)
    lists_only = all(isinstance(space[n], list) for n in names)
    points = [dict(zip(names, combo)) for combo in itertools.product(*(space[n] for n in names))] if lists_only \
        else []
    if method == "grid":
        return points
    rng = random.Random(seed)
    if lists_only:
        return points if len(points) <= count else [points[i] for i in rng.sample(range(len(points)), count)]
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


# XGBoost's own defaults of the searchable parameters the training section does not name
# (https://xgboost.readthedocs.io/en/stable/parameter.html).
XGBOOST_DEFAULTS = {"min_child_weight": 1.0, "subsample": 1.0, "colsample_bytree": 1.0, "max_delta_step": 0.0,
                    "reg_lambda": 1.0, "reg_alpha": 0.0, "gamma": 0.0}
ALIASES = {"reg_lambda": "lambda", "reg_alpha": "alpha", "gamma": "min_split_loss"}   # as training.params may say


def with_incumbent(cands: list[dict[str, Any]], space: Mapping[str, Any], base: Mapping[str, Any]
                   ) -> list[dict[str, Any]]:
    """``cands`` with the configured values of the searched parameters first (from ``base``, the
    estimator parameters, else XGBoost's defaults): the search replaces the configuration only when a
    candidate does better in cross-validation. Not added twice when a candidate already equals it."""
    incumbent = {n: base.get(n, base.get(ALIASES.get(n, n), XGBOOST_DEFAULTS.get(n))) for n in sorted(space)}
    if any(v is None for v in incumbent.values()):
        return cands
    return [incumbent] + [c for c in cands if c != incumbent]     # 1 == 1.0: an equal draw is not run twice


def search_candidates(t, base: Mapping[str, Any]) -> list[dict[str, Any]]:
    """The candidates of training section ``t``'s search, the configured values first."""
    return with_incumbent(candidates(t.search_space, t.search_method, t.search_candidates, t.search_seed),
                          t.search_space, base)


def candidate_id(params: Mapping[str, Any]) -> str:
    return hashlib.sha256(json.dumps(dict(sorted(params.items())), sort_keys=True).encode()).hexdigest()[:12]


def fold_result(x, y: np.ndarray, w: Optional[np.ndarray], folds: np.ndarray, fold: int, params: Mapping[str, Any],
                rounds: int, stopping: Optional[int], nthread: int) -> dict[str, Any]:
    """Train XGBoost (native ``params``, ``rounds`` trees at most) on the rows of CSR ``x`` outside ``fold``
    and score the rows in it: MXE and AUC at the best round when ``stopping`` (early stopping on the held
    fold itself: a little optimistic, alike for every candidate), else at the last; the trees kept and the seconds taken."""
    import xgboost as xgb

    started = time.monotonic()
    held = folds == fold

    def matrix(rows: np.ndarray):
        return xgb.DMatrix(x[rows], label=y[rows], weight=None if w is None else w[rows], missing=0.0,
                           nthread=nthread)

    dtrain, dheld = matrix(~held), matrix(held)
    curves: dict = {}
    booster = xgb.train({**params, "nthread": nthread, "eval_metric": ["auc", "logloss"]}, dtrain, rounds,
                        evals=[(dheld, "held")], early_stopping_rounds=stopping, evals_result=curves,
                        verbose_eval=False)
    best = booster.best_iteration if stopping else len(curves["held"]["logloss"]) - 1
    return {"mxe": float(curves["held"]["logloss"][best]), "auc": float(curves["held"]["auc"][best]),
            "rows": int(held.sum()), "trees": best + 1, "seconds": round(time.monotonic() - started, 3)}


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
    if "trees" in frame:   # the sampled search stops each fold early: the trees it kept, on average
        table["trees_mean"] = grouped["trees"].mean().to_numpy()
    return table.sort_values(["mxe_mean", "candidate"], kind="mergesort").reset_index(drop=True)


def search_line(search: dict) -> str:
    """The run summary's line about the search: what was searched on, and what won."""
    on = (f"an exact sample of {search['rows']:,} of {search['train_rows']:,} train rows"
          if search["engine"] == "sampled" else "all of train")
    return (f"search: {search['candidates']} candidates ({search['method']}) x {search['folds']} folds on {on} "
            f"({search['seconds']:.0f}s); best {json.dumps(search['best'])}: CV MXE {search['best_cv_mxe']:.5f} "
            f"+- {search['best_cv_mxe_std']:.5f}")
