"""Metrics on Spark: only aggregates reach the driver (sums, per-score counts, bins), never the rows.

Every function takes a scored DataFrame with ``row_id``, ``label`` (0/1), ``w`` (row weight, 1.0 when
the features have none) and one probability column per model.
"""
from __future__ import annotations

from typing import Any, Optional

import numpy as np
import pyarrow as pa
from pyspark.sql import Column, DataFrame
from pyspark.sql import functions as F

from .core import (EPS, ScoreTable, binned_auc, check_two_classes, normalized_entropy, percentile_interval,
                   poisson_weights)

ROUND_DIGITS = 7       # rounding of scores when a set has more distinct scores than exact_auc_limit
MAX_SEGMENTS = 50
BOOTSTRAP_BINS = 1024


def _logloss(p: Column) -> Column:
    q = F.least(F.greatest(p, F.lit(EPS)), F.lit(1 - EPS))
    y = F.col("label").cast("double")
    return -(y * F.log(q) + (1 - y) * F.log1p(-q))


def basic(df: DataFrame, p: str) -> dict[str, Any]:
    """Rows, weighted positives, mean prediction, MXE and the (approximate) number of distinct scores."""
    w, y = F.col("w"), F.col("label").cast("double")
    r = df.agg(F.count(F.lit(1)).alias("rows"), F.sum(w).alias("weight"), F.sum(w * y).alias("pos"),
               F.sum(y).alias("positives"), F.sum(w * F.col(p)).alias("sum_p"),
               F.sum(w * _logloss(F.col(p))).alias("ll"), F.approx_count_distinct(p).alias("distinct")).first()
    rows, weight = int(r["rows"]), float(r["weight"] or 0.0)
    return {"rows": rows, "positives": int(r["positives"] or 0), "weight": weight,
            "positive_weight": float(r["pos"] or 0.0), "sum_p": float(r["sum_p"] or 0.0),
            "mxe": float(r["ll"]) / weight if weight else None, "distinct_scores": int(r["distinct"])}


def score_table(df: DataFrame, p: str, exact: bool, segment: Optional[str] = None) -> Any:
    """Weighted positives / negatives per distinct score (rounded unless ``exact``); one table, or one
    per segment value when ``segment`` is given."""
    key = F.col(p) if exact else F.round(F.col(p), ROUND_DIGITS)
    w, y = F.col("w"), F.col("label").cast("double")
    keys = ([F.col(segment).alias("seg")] if segment else []) + [key.alias("s")]
    frame = df.groupBy(*keys).agg(F.sum(w * y).alias("pos"), F.sum(w * (1 - y)).alias("neg")).toPandas()
    frame = frame.sort_values("s", kind="mergesort")

    def table(part) -> ScoreTable:
        return ScoreTable(part["s"].to_numpy(np.float64), part["pos"].to_numpy(np.float64),
                          part["neg"].to_numpy(np.float64), quantized=not exact)

    if not segment:
        return table(frame)
    return {seg: table(part) for seg, part in frame.groupby("seg", sort=False, dropna=False)}


def reliability(df: DataFrame, p: str, bins: int) -> list[dict[str, Any]]:
    """Equal-count bins of the prediction: rows, mean prediction, observed CTR, their ratio."""
    edges = sorted(set(df.approxQuantile(p, [i / bins for i in range(1, bins)], 1e-4)))
    bucket = F.lit(0)
    for e in edges:
        bucket = bucket + (F.col(p) > F.lit(e)).cast("int")
    w, y = F.col("w"), F.col("label").cast("double")
    got = (df.groupBy(bucket.alias("b"))
           .agg(F.count(F.lit(1)).alias("rows"), F.sum(w).alias("weight"), F.sum(w * F.col(p)).alias("sp"),
                F.sum(w * y).alias("sy"), F.min(p).alias("lo"), F.max(p).alias("hi"))
           .orderBy("b").collect())
    return [{"bin": int(r["b"]), "rows": int(r["rows"]), "low": r["lo"], "high": r["hi"],
             "mean_prediction": r["sp"] / r["weight"], "observed_ctr": r["sy"] / r["weight"],
             "calibration": (r["sp"] / r["sy"]) if r["sy"] else None} for r in got]


def metrics(df: DataFrame, p: str, split: str, bins: int, exact_limit: int) -> tuple[dict[str, Any], ScoreTable]:
    """Every metric of one model on one split, and its score table (for curves)."""
    m = basic(df, p)
    check_two_classes(split, m["rows"], m["positives"])
    table = score_table(df, p, exact=m["distinct_scores"] <= exact_limit)
    base_rate = m["positive_weight"] / m["weight"]
    m.update({"base_rate": base_rate, "ne": normalized_entropy(m["mxe"], base_rate), "auc": table.roc_auc(),
              "auc_error_bound": table.tie_bound(), "auc_exact": not table.quantized,
              "pr_auc": table.average_precision(), "calibration": m["sum_p"] / m["positive_weight"],
              "reliability": reliability(df, p, bins)})
    return m, table


def segment_metrics(df: DataFrame, p: str, segment: str) -> list[dict[str, Any]]:
    """MXE, NE, AUC, calibration per value of ``segment`` (the largest MAX_SEGMENTS values)."""
    w, y = F.col("w"), F.col("label").cast("double")
    top = (df.groupBy(F.col(segment).alias("seg"))
           .agg(F.count(F.lit(1)).alias("rows"), F.sum(w).alias("weight"), F.sum(w * y).alias("pos"),
                F.sum(y).alias("positives"), F.sum(w * F.col(p)).alias("sp"),
                F.sum(w * _logloss(F.col(p))).alias("ll"))
           .orderBy(F.desc("rows")).limit(MAX_SEGMENTS).collect())
    keep = [r["seg"] for r in top]
    tables = score_table(df.filter(F.col(segment).isin([k for k in keep if k is not None])
                                   | (F.col(segment).isNull() if None in keep else F.lit(False))),
                         p, exact=False, segment=segment)
    out = []
    for r in top:
        rate = r["pos"] / r["weight"] if r["weight"] else 0.0
        mxe = r["ll"] / r["weight"] if r["weight"] else None
        two = 0 < r["positives"] < r["rows"]
        out.append({"segment": r["seg"], "rows": int(r["rows"]), "positives": int(r["positives"]),
                    "base_rate": rate, "mxe": mxe, "ne": normalized_entropy(mxe, rate) if two else None,
                    "auc": tables[r["seg"]].roc_auc() if two else None,
                    "calibration": r["sp"] / r["pos"] if r["pos"] else None})
    return out


def recalibrated(p: Column, negative_rate: float) -> Column:
    """p' = p / (p + (1 - p) / w): predictions of a model trained with negatives kept at rate w."""
    return p / (p + (1 - p) / F.lit(negative_rate))


def bootstrap(df: DataFrame, p_a: str, p_b: str, replicates: int, seed: int) -> dict[str, Any]:
    """Paired Poisson bootstrap of model A against model B on the same rows: per replicate MXE of each,
    and AUC of each from score histograms (1024 equal-count bins per model). Weights depend only on
    (seed, replicate, row_id), so the result does not depend on partitioning."""
    probs = [i / BOOTSTRAP_BINS for i in range(1, BOOTSTRAP_BINS)]
    edges_a, edges_b = (np.unique(df.approxQuantile(c, probs, 1e-4)) for c in (p_a, p_b))
    nb, B = BOOTSTRAP_BINS, replicates

    def partial(batches):
        sums = np.zeros((B, 3))                 # weight, logloss A, logloss B
        hist = np.zeros((4, B, nb))             # pos A, neg A, pos B, neg B
        for b in batches:
            if b.num_rows == 0:
                continue
            ids = b.column("row_id").to_numpy(zero_copy_only=False)
            y = b.column("label").to_numpy(zero_copy_only=False).astype(np.float64)
            w = b.column("w").to_numpy(zero_copy_only=False)
            pa_, pb_ = (np.clip(b.column(c).to_numpy(zero_copy_only=False), EPS, 1 - EPS) for c in (p_a, p_b))
            weights = poisson_weights(ids, seed, B) * w          # (B, n)
            ll_a = -(y * np.log(pa_) + (1 - y) * np.log1p(-pa_))
            ll_b = -(y * np.log(pb_) + (1 - y) * np.log1p(-pb_))
            sums += np.column_stack([weights.sum(1), weights @ ll_a, weights @ ll_b])
            offsets = (np.arange(B) * nb)[:, None]
            for k, (pred, edges) in enumerate(((pa_, edges_a), (pb_, edges_b))):
                flat = (offsets + np.searchsorted(edges, pred, side="left")[None, :]).ravel()
                hist[2 * k] += np.bincount(flat, weights=(weights * y).ravel(), minlength=B * nb).reshape(B, nb)
                hist[2 * k + 1] += np.bincount(flat, weights=(weights * (1 - y)).ravel(),
                                               minlength=B * nb).reshape(B, nb)
        yield pa.RecordBatch.from_arrays(
            [pa.array(np.arange(B, dtype=np.int32)),
             *[pa.array(sums[:, i]) for i in range(3)],
             *[pa.array(list(hist[i])) for i in range(4)]],
            names=["b", "sw", "ll_a", "ll_b", "pos_a", "neg_a", "pos_b", "neg_b"])

    schema = ("b int, sw double, ll_a double, ll_b double, pos_a array<double>, neg_a array<double>, "
              "pos_b array<double>, neg_b array<double>")
    parts = df.select("row_id", "label", "w", p_a, p_b).mapInArrow(partial, schema).toPandas()
    total = parts.groupby("b").agg({"sw": "sum", "ll_a": "sum", "ll_b": "sum"}).sort_index()
    arrays = {k: np.zeros((B, nb)) for k in ("pos_a", "neg_a", "pos_b", "neg_b")}
    for row in parts.itertuples(index=False):
        for k in arrays:
            arrays[k][row.b] += np.asarray(getattr(row, k))
    mxe_a = total["ll_a"].to_numpy() / total["sw"].to_numpy()
    mxe_b = total["ll_b"].to_numpy() / total["sw"].to_numpy()
    auc_a = binned_auc(arrays["pos_a"], arrays["neg_a"])
    auc_b = binned_auc(arrays["pos_b"], arrays["neg_b"])
    rel = (mxe_b - mxe_a) / mxe_b
    return {"replicates": B, "seed": seed,
            "mxe_difference": {"interval": percentile_interval(mxe_a - mxe_b), "std": float(np.std(mxe_a - mxe_b))},
            "relative_mxe_improvement": {"interval": percentile_interval(rel), "std": float(np.std(rel))},
            "auc_difference": {"interval": percentile_interval(auc_a - auc_b), "std": float(np.std(auc_a - auc_b))}}
