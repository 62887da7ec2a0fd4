"""Pure metrics on numpy arrays (reference implementations; the Spark adapter computes the same
quantities without collecting the data)."""
from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import pandas as pd

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


MAX_SEGMENTS = 50          # segments in a segment table (those with most rows)


def metric_record(m: dict, table: "ScoreTable", reliability: list) -> dict:
    """The metrics of one model on one set: ``m`` (rows, positives, weight, positive_weight, sum_p, mxe,
    distinct_scores) completed from its score table and reliability bins."""
    base_rate = m["positive_weight"] / m["weight"]
    return {**m, "base_rate": base_rate, "ne": normalized_entropy(m["mxe"], base_rate), "auc": table.roc_auc(),
            "auc_error_bound": table.tie_bound(), "auc_exact": not table.quantized,
            "pr_auc": table.average_precision(), "calibration": m["sum_p"] / m["positive_weight"],
            "reliability": reliability}


def segment_record(segment, rows: int, positives: int, weight: float, pos: float, sp: float, ll: float,
                   table: "ScoreTable") -> dict:
    """One segment's row of the segment table from its sums (weight, positive weight, weighted sum of
    predictions and of log loss) and score table."""
    rate = pos / weight if weight else 0.0
    mxe_value = ll / weight if weight else None
    two = 0 < positives < rows
    return {"segment": segment, "rows": int(rows), "positives": int(positives), "base_rate": rate, "mxe": mxe_value,
            "ne": normalized_entropy(mxe_value, rate) if two else None, "auc": table.roc_auc() if two else None,
            "calibration": sp / pos if pos else None}


# ---------------------------------------------------------------------------------------------- weighted metrics

def entropy(rate: float) -> float:
    """Cross entropy of always predicting ``rate`` on a set whose positive share is ``rate`` (nats)."""
    if rate <= 0.0 or rate >= 1.0:
        return 0.0
    return float(-(rate * np.log(rate) + (1 - rate) * np.log1p(-rate)))


def normalized_entropy(mxe_value: float, base_rate: float) -> float:
    """MXE divided by the entropy of the average CTR (He et al. 2014): below 1 beats the base rate."""
    h = entropy(base_rate)
    if h == 0.0:
        raise InputDataError(f"normalized entropy is undefined at a base rate of {base_rate}")
    return mxe_value / h


def recalibrate(p: np.ndarray, negative_rate: float) -> np.ndarray:
    """Undo negative downsampling at rate w: p' = p / (p + (1 - p) / w)."""
    p = np.asarray(p, dtype=np.float64)
    return p / (p + (1.0 - p) / negative_rate)


def weighted_mxe(labels: np.ndarray, probs: np.ndarray, weights: np.ndarray | None = None) -> float:
    y = np.asarray(labels, dtype=np.float64)
    p = np.clip(np.asarray(probs, dtype=np.float64), EPS, 1 - EPS)
    w = np.ones_like(y) if weights is None else np.asarray(weights, dtype=np.float64)
    return float(-np.sum(w * (y * np.log(p) + (1 - y) * np.log1p(-p))) / np.sum(w))


@dataclass(frozen=True)
class ScoreTable:
    """Weighted positives and negatives per distinct score, scores ascending (a set's ranking, compact).

    ``quantized`` says the scores were rounded before grouping (large sets): ties that rounding made are
    then counted as half, and :meth:`tie_bound` bounds the AUC error this can cause.
    """

    score: np.ndarray
    pos: np.ndarray
    neg: np.ndarray
    quantized: bool = False

    @classmethod
    def from_arrays(cls, labels, scores, weights=None) -> "ScoreTable":
        y = np.asarray(labels, dtype=np.float64)
        s = np.asarray(scores, dtype=np.float64)
        w = np.ones_like(y) if weights is None else np.asarray(weights, dtype=np.float64)
        uniq, inv = np.unique(s, return_inverse=True)
        return cls(uniq, np.bincount(inv, weights=w * y, minlength=len(uniq)),
                   np.bincount(inv, weights=w * (1 - y), minlength=len(uniq)))

    def totals(self) -> tuple[float, float]:
        return float(self.pos.sum()), float(self.neg.sum())

    def _check(self) -> tuple[float, float]:
        p, n = self.totals()
        if p <= 0 or n <= 0:
            raise InputDataError(f"AUC is undefined on a set with only one class (positive weight {p:g}, "
                                 f"negative weight {n:g})")
        return p, n

    def roc_auc(self) -> float:
        """Probability that a positive outranks a negative, ties counted as half (weighted)."""
        p, n = self._check()
        neg_below = np.cumsum(self.neg) - self.neg
        return float(np.sum(self.pos * (neg_below + self.neg / 2.0)) / (p * n))

    def tie_bound(self) -> float:
        """Largest AUC change the ties in this table could hide (0 when scores were not rounded)."""
        if not self.quantized:
            return 0.0
        p, n = self._check()
        return float(np.sum(self.pos * self.neg) / (2.0 * p * n))

    def average_precision(self) -> float:
        """Area under the precision-recall curve as average precision (scikit-learn's definition: tied
        scores are one threshold)."""
        p, _ = self._check()
        tps = np.cumsum(self.pos[::-1])
        fps = np.cumsum(self.neg[::-1])
        precision = tps / (tps + fps)
        recall = tps / p
        return float(np.sum(np.diff(np.r_[0.0, recall]) * precision))

    def roc_points(self, max_points: int = 2000) -> tuple[np.ndarray, np.ndarray]:
        p, n = self._check()
        fpr = np.r_[0.0, np.cumsum(self.neg[::-1]) / n]
        tpr = np.r_[0.0, np.cumsum(self.pos[::-1]) / p]
        keep = _thin(len(fpr), max_points)
        return fpr[keep], tpr[keep]

    def pr_points(self, max_points: int = 2000) -> tuple[np.ndarray, np.ndarray]:
        p, _ = self._check()
        tps = np.cumsum(self.pos[::-1])
        fps = np.cumsum(self.neg[::-1])
        recall, precision = tps / p, tps / (tps + fps)
        keep = _thin(len(recall), max_points)
        return recall[keep], precision[keep]


def _thin(n: int, max_points: int) -> np.ndarray:
    """Indices of at most ``max_points`` points spread over 0..n-1, ends included."""
    if n <= max_points:
        return np.arange(n)
    return np.unique(np.linspace(0, n - 1, max_points).round().astype(np.int64))


# ---------------------------------------------------------------------------------------------- bootstrap

_POISSON_CDF = np.cumsum([math.exp(-1.0) / math.factorial(k) for k in range(20)])


def poisson_weights(row_ids: np.ndarray, seed: int, replicates: int) -> np.ndarray:
    """(replicates, rows) Poisson(1) bootstrap weights, each a function of (seed, replicate, row_id) only,
    so the same rows get the same weights on any partitioning (a reproducible, paired bootstrap)."""
    from ctr_pipeline.rowhash import keys

    ids = np.asarray(row_ids, dtype=np.int64)
    out = np.empty((replicates, len(ids)), dtype=np.float64)
    for b in range(replicates):
        u = (keys(seed * 1_000_003 + b, ids).view(np.uint64) >> np.uint64(11)).astype(np.float64) * 2.0 ** -53
        out[b] = np.searchsorted(_POISSON_CDF, u, side="right")
    return out


BOOTSTRAP_BINS = 1024


def bootstrap_tallies(ids, y, w, p_a, p_b, edges_a, edges_b, seed: int, replicates: int):
    """One batch's share of the paired bootstrap: (sums, hist). ``sums`` is (replicates, 3): weight, log
    loss of A, log loss of B; ``hist`` is (4, replicates, BOOTSTRAP_BINS): positive and negative weight
    per score bin of A, then of B (bins cut at ``edges_*``, ascending). Tallies of batches add up."""
    B, nb = replicates, BOOTSTRAP_BINS
    y = np.asarray(y, dtype=np.float64)
    pa_, pb_ = (np.clip(np.asarray(p, dtype=np.float64), EPS, 1 - EPS) for p in (p_a, p_b))
    weights = poisson_weights(ids, seed, B) * np.asarray(w, dtype=np.float64)          # (B, n)
    ll_a = -(y * np.log(pa_) + (1 - y) * np.log1p(-pa_))
    ll_b = -(y * np.log(pb_) + (1 - y) * np.log1p(-pb_))
    sums = np.column_stack([weights.sum(1), weights @ ll_a, weights @ ll_b])
    hist = np.zeros((4, B, nb))
    offsets = (np.arange(B) * nb)[:, None]
    for k, (pred, edges) in enumerate(((pa_, edges_a), (pb_, edges_b))):
        flat = (offsets + np.searchsorted(edges, pred, side="left")[None, :]).ravel()
        hist[2 * k] = np.bincount(flat, weights=(weights * y).ravel(), minlength=B * nb).reshape(B, nb)
        hist[2 * k + 1] = np.bincount(flat, weights=(weights * (1 - y)).ravel(), minlength=B * nb).reshape(B, nb)
    return sums, hist


def bootstrap_summary(sums: np.ndarray, hist: np.ndarray, seed: int) -> dict:
    """Intervals of the paired bootstrap from the summed tallies of :func:`bootstrap_tallies`."""
    mxe_a, mxe_b = sums[:, 1] / sums[:, 0], sums[:, 2] / sums[:, 0]
    auc_a, auc_b = binned_auc(hist[0], hist[1]), binned_auc(hist[2], hist[3])
    rel = (mxe_b - mxe_a) / mxe_b
    return {"replicates": len(sums), "seed": seed,
            "mxe_difference": {"interval": percentile_interval(mxe_a - mxe_b), "std": float(np.std(mxe_a - mxe_b))},
            "relative_mxe_improvement": {"interval": percentile_interval(rel), "std": float(np.std(rel))},
            "auc_difference": {"interval": percentile_interval(auc_a - auc_b), "std": float(np.std(auc_a - auc_b))}}


def percentile_interval(samples: np.ndarray, level: float = 0.95) -> tuple[float, float]:
    lo = (1 - level) / 2
    return float(np.quantile(samples, lo)), float(np.quantile(samples, 1 - lo))


def binned_auc(pos: np.ndarray, neg: np.ndarray) -> np.ndarray:
    """ROC AUC per row of (replicates, bins) histograms of positive / negative weight by score bin
    (bins ascending; ties within a bin count as half)."""
    p, n = pos.sum(axis=1), neg.sum(axis=1)
    neg_below = np.cumsum(neg, axis=1) - neg
    return np.sum(pos * (neg_below + neg / 2.0), axis=1) / (p * n)


# ---------------------------------------------------------------------------------------------- importances

IMPORTANCE_TYPES = ("gain", "total_gain", "weight", "cover", "total_cover")


def importance_table(scores: dict[str, dict[str, float]], fmap: pd.DataFrame) -> pd.DataFrame:
    """One row per used feature: index, name, source, and each importance type (``scores[type]`` maps
    XGBoost's ``f<index>`` names to values), sorted by total gain."""
    used = sorted({int(k[1:]) for s in scores.values() for k in s})
    names = fmap.set_index("index") if len(fmap) else pd.DataFrame(columns=["name", "source"])
    rows = []
    for i in used:
        known = i in names.index
        rows.append({"index": i, "name": names.at[i, "name"] if known else f"f{i}",
                     "source": names.at[i, "source"] if known else f"f{i}",
                     **{t: float(scores.get(t, {}).get(f"f{i}", 0.0)) for t in IMPORTANCE_TYPES}})
    table = pd.DataFrame(rows, columns=["index", "name", "source", *IMPORTANCE_TYPES])
    return table.sort_values("total_gain", ascending=False, kind="mergesort").reset_index(drop=True)


def importance_by_column(table: pd.DataFrame) -> pd.DataFrame:
    """Importances summed per raw column (every vocabulary, hash or cross child counts for its source);
    ``gain`` and ``cover`` are recomputed as totals / weight (means over the column's splits)."""
    cols = ["source", "total_gain", "weight", "total_cover", "gain", "cover", "share"]
    if table.empty:
        return pd.DataFrame(columns=cols)
    out = table.groupby("source", sort=False)[["total_gain", "weight", "total_cover"]].sum().reset_index()
    splits = out["weight"].where(out["weight"] > 0)
    out["gain"] = out["total_gain"] / splits
    out["cover"] = out["total_cover"] / splits
    out["share"] = out["total_gain"] / out["total_gain"].sum()
    return out[cols].sort_values("total_gain", ascending=False, kind="mergesort").reset_index(drop=True)
