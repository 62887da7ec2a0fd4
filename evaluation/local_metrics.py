"""The metrics of :mod:`evaluation.spark_metrics` on a scored set held in the driver's memory.

A set of at most LOCAL_ROWS rows costs less to collect once (a few columns of numbers) than the dozen
Spark jobs of the aggregate path. Same inputs (a pandas frame with ``row_id``, ``label``, ``w`` and one
probability column per model), same records. Two differences, both in the exact direction: AUC is
always exact (Spark rounds scores beyond ``exact_auc_limit`` distinct values), and quantiles (reliability
bins, bootstrap histogram edges) are exact where Spark's are within 1e-4 of the rank; on sets of up to
about ten thousand rows Spark's are exact too, and both paths agree.
"""
from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd

from .core import (BOOTSTRAP_BINS, EPS, MAX_SEGMENTS, ScoreTable, bootstrap_summary, bootstrap_tallies,
                   check_two_classes, metric_record, recalibrate, segment_record)

LOCAL_ROWS = 2_000_000     # largest set whose metrics are computed on the driver
CHUNK = 10_000             # rows per bootstrap tally (as Spark's Arrow batches): bounds its memory


def _arrays(frame: pd.DataFrame, p: str) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    return (frame["label"].to_numpy(np.float64), frame["w"].to_numpy(np.float64), frame[p].to_numpy(np.float64))


def _logloss(y: np.ndarray, p: np.ndarray) -> np.ndarray:
    q = np.clip(p, EPS, 1 - EPS)
    return -(y * np.log(q) + (1 - y) * np.log1p(-q))


def quantiles(x: np.ndarray, probs) -> np.ndarray:
    """Exact quantiles as Spark's approxQuantile gives them at relative error 0: for each q the value of
    1-based rank ceil(q * n) among the non-NaN values."""
    s = np.sort(x[~np.isnan(x)])
    if not len(s):
        return s
    ranks = np.clip(np.ceil(np.asarray(probs, dtype=np.float64) * len(s)).astype(np.int64), 1, len(s))
    return s[ranks - 1]


def basic(frame: pd.DataFrame, p: str) -> dict[str, Any]:
    y, w, s = _arrays(frame, p)
    weight = float(w.sum())
    return {"rows": len(y), "positives": int(y.sum()), "weight": weight, "positive_weight": float((w * y).sum()),
            "sum_p": float((w * s).sum()), "mxe": float((w * _logloss(y, s)).sum()) / weight if weight else None,
            "distinct_scores": int(len(np.unique(s)))}


def reliability(frame: pd.DataFrame, p: str, bins: int) -> list[dict[str, Any]]:
    """Equal-count bins of the prediction: rows, mean prediction, observed CTR, their ratio."""
    y, w, s = _arrays(frame, p)
    edges = np.unique(quantiles(s, [i / bins for i in range(1, bins)]))
    b = np.searchsorted(edges, s, side="left")           # edges below the score, as Spark's bucket sum
    g = pd.DataFrame({"b": b, "w": w, "sp": w * s, "sy": w * y, "s": s}).groupby("b", sort=True)
    got = g.agg(rows=("w", "size"), weight=("w", "sum"), sp=("sp", "sum"), sy=("sy", "sum"), lo=("s", "min"),
                hi=("s", "max"))
    return [{"bin": int(i), "rows": int(r.rows), "low": float(r.lo), "high": float(r.hi),
             "mean_prediction": r.sp / r.weight, "observed_ctr": r.sy / r.weight,
             "calibration": (r.sp / r.sy) if r.sy else None} for i, r in got.iterrows()]


def metrics(frame: pd.DataFrame, p: str, split: str, bins: int, exact_limit: int) -> tuple[dict[str, Any], ScoreTable]:
    """Every metric of one model on one set, and its score table (``exact_limit`` is not needed here: the
    table is exact at any size that fits)."""
    m = basic(frame, p)
    check_two_classes(split, m["rows"], m["positives"])
    y, w, s = _arrays(frame, p)
    table = ScoreTable.from_arrays(y, s, w)
    return metric_record(m, table, reliability(frame, p, bins)), table


def segment_metrics(frame: pd.DataFrame, p: str, segment: str) -> list[dict[str, Any]]:
    """MXE, NE, AUC, calibration per value of ``segment`` (the MAX_SEGMENTS values with most rows; ties
    in order of value)."""
    y, w, s = _arrays(frame, p)
    parts = pd.DataFrame({"seg": frame[segment].to_numpy(), "y": y, "w": w, "s": s})
    groups = parts.groupby("seg", sort=True, dropna=False)
    sizes = groups.size().sort_values(ascending=False, kind="mergesort").head(MAX_SEGMENTS)
    out = []
    for seg in sizes.index:
        part = groups.get_group(seg) if not pd.isna(seg) else parts[parts["seg"].isna()]
        py, pw, ps = part["y"].to_numpy(), part["w"].to_numpy(), part["s"].to_numpy()
        out.append(segment_record(None if pd.isna(seg) else seg, len(py), int(py.sum()), float(pw.sum()),
                                  float((pw * py).sum()), float((pw * ps).sum()), float((pw * _logloss(py, ps)).sum()),
                                  ScoreTable.from_arrays(py, ps, pw)))
    return out


def with_recalibrated(frame: pd.DataFrame, p: str, negative_rate: float) -> pd.DataFrame:
    return frame.assign(**{p: recalibrate(frame[p].to_numpy(np.float64), negative_rate)})


def bootstrap(frame: pd.DataFrame, p_a: str, p_b: str, replicates: int, seed: int) -> dict[str, Any]:
    """The paired Poisson bootstrap of :func:`evaluation.spark_metrics.bootstrap`, tallied CHUNK rows at a
    time (its weights depend only on seed, replicate and row_id, so chunking does not change them)."""
    probs = [i / BOOTSTRAP_BINS for i in range(1, BOOTSTRAP_BINS)]
    cols = [frame[c].to_numpy() for c in ("row_id", "label", "w", p_a, p_b)]
    edges_a, edges_b = (np.unique(quantiles(c.astype(np.float64), probs)) for c in cols[3:])
    sums, hist = np.zeros((replicates, 3)), np.zeros((4, replicates, BOOTSTRAP_BINS))
    for start in range(0, len(frame), CHUNK):
        s, h = bootstrap_tallies(*(c[start:start + CHUNK] for c in cols), edges_a, edges_b, seed, replicates)
        sums += s
        hist += h
    return bootstrap_summary(sums, hist, seed)
