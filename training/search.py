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
from ctr_pipeline.schema import DEFAULT_SEARCH_SPACE

RECOMMENDED_SPACE = DEFAULT_SEARCH_SPACE   # the default search space (training.search_space)

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
    first = incumbent(space, base)
    if first is None:
        return cands
    return [first] + [c for c in cands if c != first]     # 1 == 1.0: an equal draw is not run twice


def incumbent(space: Mapping[str, Any], base: Mapping[str, Any]) -> Optional[dict[str, Any]]:
    """The configured values of the searched parameters, or None when one has no known value."""
    values = {n: base.get(n, base.get(ALIASES.get(n, n), XGBOOST_DEFAULTS.get(n))) for n in sorted(space)}
    return None if any(v is None for v in values.values()) else values


def search_candidates(t, base: Mapping[str, Any], limit: Optional[int] = None) -> list[dict[str, Any]]:
    """The candidates of training section ``t``'s search, the configured values first; the first ``limit``."""
    cands = with_incumbent(candidates(t.search_space, t.search_method, t.search_candidates, t.search_seed),
                           t.search_space, base)
    return cands if limit is None else cands[:limit]


def affordable(budget: Optional[float], train_rows: int, folds: int, search_rows: int) -> Optional[int]:
    """How many candidates ``budget`` (training.search_budget) pays for, None when unlimited: each trains
    ``folds - 1`` folds' worth of the search's rows (all of train when ``search_rows`` is 0 or larger),
    against ``budget`` times the final model's ``train_rows``."""
    if budget is None:
        return None
    return int(budget * train_rows // ((folds - 1) * max(searched_rows(train_rows, search_rows), 1)))


def searched_rows(train_rows: int, search_rows: int) -> int:
    """The rows a search runs on: ``search_rows`` of train (0: all of it)."""
    return min(search_rows, train_rows) if search_rows else train_rows


def skipped_search(t, train_rows: int, limit: int, total: int) -> dict[str, Any]:
    """The record of a search the budget did not pay for (its summary line and report note)."""
    rows = searched_rows(train_rows, t.search_rows)
    return {"skipped": True, "space": dict(t.search_space), "budget": t.search_budget, "afforded": limit,
            "candidates": total, "train_rows": train_rows,
            "why": (f"training.search_budget {t.search_budget:g} x {train_rows:,} train rows pays for {limit} of "
                    f"{total} candidates at {t.search_folds - 1} x {rows:,} rows each; a search needs 2 "
                    "(null: no limit)")}


def candidate_id(params: Mapping[str, Any]) -> str:
    return hashlib.sha256(json.dumps(dict(sorted(params.items())), sort_keys=True).encode()).hexdigest()[:12]


def fold_result(x, y: np.ndarray, w: Optional[np.ndarray], folds: np.ndarray, fold: int, params: Mapping[str, Any],
                rounds: int, stopping: Optional[int], nthread: int) -> dict[str, Any]:
    """Train XGBoost (native ``params``, ``rounds`` trees at most) on the rows of CSR ``x`` outside ``fold``
    and score the rows in it: MXE and AUC at the best round when ``stopping`` (early stopping on the held
    fold itself: a little optimistic, alike for every candidate), else at the last; the trees kept and the seconds taken."""
    import xgboost as xgb

    from . import heldout

    started = time.monotonic()
    held = folds == fold

    def matrix(rows: np.ndarray):
        return xgb.DMatrix(x[rows], label=y[rows], weight=None if w is None else w[rows], missing=0.0,
                           nthread=nthread)

    dtrain, dheld = matrix(~held), matrix(held)
    train_params = {**params, "nthread": nthread, "eval_metric": ["auc", "logloss"]}
    if heldout.supported(params):   # early stopping from the leaves: see training.heldout
        curve = heldout.LeafCurve(x[held], y[held], None if w is None else w[held], stopping)
        booster = xgb.train(train_params, dtrain, rounds, callbacks=[curve] if stopping else None,
                            verbose_eval=False)
        best = curve.best if stopping else booster.num_boosted_rounds() - 1
        scores = held_scores(booster[:best + 1], dheld)
    else:
        curves: dict = {}
        booster = xgb.train(train_params, dtrain, rounds, evals=[(dheld, "held")], early_stopping_rounds=stopping,
                            evals_result=curves, verbose_eval=False)
        best = booster.best_iteration if stopping else len(curves["held"]["logloss"]) - 1
        scores = {m: float(curves["held"][m][best]) for m in ("auc", "logloss")}
    return {"mxe": scores["logloss"], "auc": scores["auc"],
            "rows": int(held.sum()), "trees": best + 1, "seconds": round(time.monotonic() - started, 3)}


def held_scores(booster, held) -> dict[str, float]:
    """The booster's metrics on DMatrix ``held`` by XGBoost's own evaluation: {metric name: value}."""
    line = booster.eval_set([(held, "held")])
    return {k[len("held-"):]: float(v) for k, v in (item.split(":") for item in line.split("\t")[1:])}


# Booster parameters under which some columns may be pruned without changing a tree: column subsampling
# draws from every column, and these name columns by index.
BY_COLUMN = ("colsample_bytree", "colsample_bylevel", "colsample_bynode")
INDEXED = ("interaction_constraints", "monotone_constraints", "feature_weights")


def splittable_columns(x, w: Optional[np.ndarray], boosters: list[Mapping[str, Any]]) -> Optional[np.ndarray]:
    """The columns of CSR ``x`` on which a tree of any of ``boosters`` (native parameters) could split, or
    None when pruning the others could change a tree.

    With ``binary:logistic`` a row's hessian is w p (1 - p) <= w / 4 (times ``scale_pos_weight`` for a
    positive), and a split is valid only when each child's hessian sum reaches ``min_child_weight``.
    Absent entries are missing (the pipeline trains with missing=0), and one child of any split on a
    column holds only rows where it is present: a column whose present rows weigh less than
    4 ``min_child_weight`` (divided by the largest ``scale_pos_weight``) can never be split on, and
    dropping it leaves every tree, prediction and metric as they were. A one-hot column seen in only a
    few rows of the search's sample is such a column; on the 1M demo rows they are 5 in 6 of them."""
    if not boosters or any(b.get("objective", "binary:logistic") != "binary:logistic" for b in boosters) \
            or any(float(b.get(k, 1.0)) < 1.0 for b in boosters for k in BY_COLUMN) \
            or any(b.get(k) for b in boosters for k in INDEXED):
        return None
    least = min(float(b.get("min_child_weight", XGBOOST_DEFAULTS["min_child_weight"])) for b in boosters)
    scale = max([1.0] + [float(b.get("scale_pos_weight", 1.0)) for b in boosters])
    if least <= 0:
        return None
    present = np.asarray(x.data != 0, dtype=np.float64)
    if w is not None:
        present *= np.repeat(np.asarray(w, dtype=np.float64), np.diff(x.indptr))
    weight = np.bincount(x.indices, weights=present, minlength=x.shape[1])
    return np.flatnonzero(weight * 0.25 * scale >= least)


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
    table["mxe_folds"] = [json.dumps(grouped.get_group(c).sort_values("fold")["mxe"].round(7).tolist())
                          for c in grouped.groups]
    return table.sort_values(["mxe_mean", "candidate"], kind="mergesort").reset_index(drop=True)


def choose(table: pd.DataFrame, configured: Optional[Mapping[str, Any]]) -> tuple[dict[str, Any], str]:
    """The parameters to train with and why: the candidate of lowest CV MXE replaces the ``configured``
    values only when it beats them by more than one standard error of the paired per-fold differences.

    The best of several candidates scored on the same few folds looks better than it is (every score is
    noisy and the lowest is picked); the configured values need no such luck, so they stay unless the
    difference is larger than the folds' own disagreement about it."""
    best = json.loads(table.loc[0, "params"])
    if configured is None:
        return best, "the lowest CV MXE"
    rows = table.index[table["params"] == json.dumps(dict(configured), sort_keys=True)]
    if not len(rows):
        return best, "the lowest CV MXE (the configured values were not a candidate)"
    if rows[0] == 0:
        return best, "the configured values had the lowest CV MXE"
    mine, theirs = (np.array(json.loads(table.loc[i, "mxe_folds"])) for i in (0, rows[0]))
    diff = theirs - mine                                  # > 0 where the best candidate did better
    se = float(diff.std(ddof=1) / np.sqrt(len(diff))) if len(diff) > 1 else 0.0
    gain = float(diff.mean())
    if gain > se:
        return best, (f"CV MXE {gain:.5f} lower than the configured values', more than the paired folds' "
                      f"standard error {se:.5f}")
    return dict(configured), (f"the configured values kept: the lowest CV MXE, {table.loc[0, 'mxe_mean']:.5f} of "
                              f"{json.dumps(best, sort_keys=True)}, is {gain:.5f} below theirs, within the paired "
                              f"folds' standard error {se:.5f}")


def search_line(search: dict) -> str:
    """The run summary's line about the search: what was searched on, and what won."""
    if search.get("skipped"):
        return f"search: skipped: {search['why']}"
    on = (f"an exact sample of {search['rows']:,} of {search['train_rows']:,} train rows"
          if search["engine"] == "sampled" else "all of train")
    if search["engine"] == "sampled" and search.get("columns", search.get("width")) != search.get("width"):
        on += f" ({search['columns']:,} of {search['width']:,} columns splittable there)"
    return (f"search: {search['candidates']} candidates ({search['method']}) x {search['folds']} folds on {on} "
            f"({search['seconds']:.0f}s); chose {json.dumps(search['best'])}: CV MXE {search['best_cv_mxe']:.5f} "
            f"+- {search['best_cv_mxe_std']:.5f}" + (f" ({search['why']})" if search.get("why") else ""))
