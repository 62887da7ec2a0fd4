"""GBDT-leaf + logistic regression (He et al., ADKDD 2014): the trees as a feature transform for a linear model.

Each row's leaf in every tree of the trained booster becomes one one-hot column (tree t's node n at
column ``t * nodes_per_tree + n``), joined with the row's own sparse features; an L2 logistic regression
(:mod:`.logistic`, the LR baseline's objective) is fit on those columns. The trees were fit on train, so
the linear model is fit on rows they never saw (the validation split for the evaluation baseline, a
held-out share of train for the shipped model, ``training.model: gbdt_lr``), 80% to fit each L2 strength
of the grid and 20% to choose one, then refit on all of them with the chosen strength. Pure: numpy, scipy
and xgboost; the Spark side is :func:`evaluation.baselines.fit_gbdt_lr`.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable, Sequence

import numpy as np
from scipy.sparse import csr_matrix, hstack

from .boosters import digest, loaded, narrowed
from .core import mxe
from .logistic import LinearModel, one_blas_thread

SELECT_SHARE = 0.2   # of the fitting rows, held out to choose the L2 strength


def nodes_per_tree(booster) -> int:
    """One more than the largest node id of any tree: the one-hot block width of a tree."""
    frame = booster.trees_to_dataframe()
    return int(frame["Node"].max()) + 1


def leaf_columns(leaves: np.ndarray, nodes: int) -> csr_matrix:
    """One-hot CSR of leaf ids: ``leaves`` (rows, trees) of node ids -> (rows, trees * nodes), one 1 per tree."""
    leaves = np.asarray(leaves, dtype=np.int64)
    if leaves.ndim == 1:
        leaves = leaves[:, None]
    rows, trees = leaves.shape
    if rows and (leaves.min() < 0 or leaves.max() >= nodes):
        raise ValueError(f"leaf ids must lie in [0, {nodes}), found {leaves.min()}..{leaves.max()}")
    columns = (np.arange(trees, dtype=np.int64) * nodes + leaves).ravel()
    indptr = np.arange(0, rows * trees + 1, trees, dtype=np.int64)
    return csr_matrix((np.ones(rows * trees), columns, indptr), shape=(rows, trees * nodes))


def leaf_design(trees, nodes: int, x: csr_matrix) -> csr_matrix:
    """The linear model's columns for rows ``x``: one-hot leaves of the trees (a booster narrowed to its
    split columns, :func:`evaluation.boosters.narrowed`: the same leaves at a fraction of the cost), then
    ``x`` itself (absent entries and zeros missing to the trees, as the pipeline's scoring treats them)."""
    leaves = trees.booster.predict(trees.matrix(x), pred_leaf=True)
    return hstack([leaf_columns(leaves, nodes), x], format="csr")


@dataclass(frozen=True)
class GbdtLrModel:
    """p = sigmoid([one-hot leaves of x, x] . coef + intercept); ``booster_raw`` is the trained booster."""

    booster_raw: bytes
    nodes: int
    linear: LinearModel
    key: str = field(init=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "key", digest(self.booster_raw))

    def predict(self, x: csr_matrix) -> np.ndarray:
        return self.linear.predict(leaf_design(narrowed(self.key, self.booster_raw), self.nodes, x))


def to_bytes(model: GbdtLrModel) -> bytes:
    """The linear part of ``model`` (its booster is stored on its own) as .npz bytes."""
    import io

    buf = io.BytesIO()
    m = model.linear
    np.savez(buf, coef=m.coef, intercept=m.intercept, reg=m.reg, iterations=m.iterations, converged=m.converged,
             nodes=model.nodes)
    return buf.getvalue()


def from_bytes(booster_raw: bytes, raw: bytes) -> GbdtLrModel:
    """The model of :func:`to_bytes`'s ``raw`` over the booster of ``booster_raw``."""
    import io

    with np.load(io.BytesIO(raw)) as f:
        linear = LinearModel(f["coef"], float(f["intercept"]), float(f["reg"]), int(f["iterations"]),
                             bool(f["converged"]))
        return GbdtLrModel(booster_raw, int(f["nodes"]), linear)


def select_mask(row_ids: np.ndarray, seed: int, share: float = SELECT_SHARE) -> np.ndarray:
    """Which rows choose the L2 strength: a seeded draw over the rows in row_id order (deterministic for
    the same rows, whatever order they arrive in)."""
    order = np.argsort(row_ids, kind="stable")
    draw = np.empty(len(row_ids))
    draw[order] = np.random.default_rng(seed).random(len(row_ids))
    return draw < share


def fit(booster_raw: bytes, x: csr_matrix, y: np.ndarray, w: np.ndarray, row_ids: np.ndarray,
        regs: Sequence[float], seed: int, fit_linear: Callable[..., LinearModel],
        fit_on: str = "the validation split (rows the trees did not see)") -> tuple[GbdtLrModel, dict]:
    """Fit on rows the booster's trees did not see (``fit_on`` says which): each of ``regs`` on 80% of them,
    the best by MXE on the other 20% refit on all. ``fit_linear(x, y, w, reg)`` is
    :func:`evaluation.logistic.fit`."""
    nodes = nodes_per_tree(loaded(digest(booster_raw), booster_raw))
    design = leaf_design(narrowed(digest(booster_raw), booster_raw), nodes, csr_matrix(x))
    pick = select_mask(row_ids, seed)
    if pick.all() or not pick.any() or len(set(np.asarray(y)[pick])) < 2:
        raise ValueError(f"gbdt_lr: {len(y):,} rows are too few to hold out {SELECT_SHARE:.0%} with both labels")
    tried = []
    with one_blas_thread():
        for reg in regs:
            m = fit_linear(design[~pick], y[~pick], w[~pick], reg)
            tried.append((mxe(y[pick], m.predict(design[pick])), reg))
        score, best = min(tried)
        final = fit_linear(design, y, w, best)
    model = GbdtLrModel(booster_raw, nodes, final)
    settings = {"regParam": best, "selection_mxe": score, "grid": {str(r): s for s, r in tried},
                "trees": int(design.shape[1] - x.shape[1]) // nodes, "nodes_per_tree": nodes,
                "columns": int(design.shape[1]), "iterations": final.iterations,
                "fit_on": fit_on}
    return model, settings
