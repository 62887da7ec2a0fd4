"""Pure metrics on numpy arrays (reference implementations; the Spark adapter computes the same
quantities without collecting the data)."""
from __future__ import annotations

import numpy as np

from ctr_pipeline.errors import InputDataError

EPS = 1e-15  # probabilities are clipped to [EPS, 1 - EPS] before logs, as scikit-learn does


def mxe(labels: np.ndarray, probs: np.ndarray) -> float:
    """Mean cross entropy (log loss) in nats per row of 0/1 ``labels`` under probabilities ``probs``."""
    y = np.asarray(labels, dtype=np.float64)
    p = np.clip(np.asarray(probs, dtype=np.float64), EPS, 1 - EPS)
    return float(-np.mean(y * np.log(p) + (1 - y) * np.log1p(-p)))


def auc(labels: np.ndarray, scores: np.ndarray) -> float:
    """ROC AUC with ties counted as half (Mann-Whitney U / (n_pos * n_neg))."""
    y = np.asarray(labels).astype(bool)
    n_pos, n_neg = int(y.sum()), int((~y).sum())
    if n_pos == 0 or n_neg == 0:
        raise InputDataError(f"AUC is undefined on a set with only one class ({n_pos} positives, "
                             f"{n_neg} negatives)")
    s = np.asarray(scores, dtype=np.float64)
    order = np.argsort(s, kind="mergesort")
    sorted_s = s[order]
    ranks = np.empty(len(s), dtype=np.float64)
    # average rank (1-based) within groups of tied scores
    starts = np.r_[0, np.flatnonzero(np.diff(sorted_s)) + 1]
    ends = np.r_[starts[1:], len(s)]
    avg = (starts + ends + 1) / 2.0
    ranks[order] = np.repeat(avg, ends - starts)
    u = ranks[y].sum() - n_pos * (n_pos + 1) / 2.0
    return float(u / (n_pos * n_neg))


def check_two_classes(split: str, rows: int, positives: int) -> None:
    """A set with one class has no AUC: say so instead of reporting NaN."""
    if rows == 0:
        raise InputDataError(f"split {split} is empty; nothing to evaluate")
    if positives in (0, rows):
        raise InputDataError(f"split {split} has only one class ({positives:,} positives of {rows:,} rows); AUC "
                             "is undefined: use a larger split or more input")
