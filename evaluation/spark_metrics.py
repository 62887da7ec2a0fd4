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

from .core import (BOOTSTRAP_BINS, EPS, MAX_SEGMENTS, ScoreTable, bootstrap_summary, bootstrap_tallies,
                   check_two_classes, metric_record, segment_record)

ROUND_DIGITS = 7       # rounding of scores when a set has more distinct scores than exact_auc_limit


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
    return metric_record(m, table, reliability(df, p, bins)), table


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
    return [segment_record(r["seg"], r["rows"], r["positives"], r["weight"], r["pos"], r["sp"], r["ll"],
                           tables[r["seg"]]) for r in top]


def recalibrated(p: Column, negative_rate: float) -> Column:
    """p' = p / (p + (1 - p) / w): predictions of a model trained with negatives kept at rate w."""
    return p / (p + (1 - p) / F.lit(negative_rate))


def with_recalibrated(df: DataFrame, p: str, negative_rate: float) -> DataFrame:
    return df.withColumn(p, recalibrated(F.col(p), negative_rate))


def bootstrap(df: DataFrame, p_a: str, p_b: str, replicates: int, seed: int) -> dict[str, Any]:
    """Paired Poisson bootstrap of model A against model B on the same rows: per replicate MXE of each,
    and AUC of each from score histograms (1024 equal-count bins per model). Weights depend only on
    (seed, replicate, row_id), so the result does not depend on partitioning."""
    probs = [i / BOOTSTRAP_BINS for i in range(1, BOOTSTRAP_BINS)]
    edges_a, edges_b = (np.unique(df.approxQuantile(c, probs, 1e-4)) for c in (p_a, p_b))

    def partial(batches):
        sums, hist = np.zeros((replicates, 3)), np.zeros((4, replicates, BOOTSTRAP_BINS))
        for b in batches:
            if b.num_rows == 0:
                continue
            s, h = bootstrap_tallies(*(b.column(c).to_numpy(zero_copy_only=False)
                                       for c in ("row_id", "label", "w", p_a, p_b)),
                                     edges_a, edges_b, seed, replicates)
            sums += s
            hist += h
        yield pa.RecordBatch.from_arrays(
            [pa.array(np.arange(replicates, dtype=np.int32)),
             *[pa.array(sums[:, i]) for i in range(3)],
             *[pa.array(list(hist[i])) for i in range(4)]],
            names=["b", "sw", "ll_a", "ll_b", "pos_a", "neg_a", "pos_b", "neg_b"])

    schema = ("b int, sw double, ll_a double, ll_b double, pos_a array<double>, neg_a array<double>, "
              "pos_b array<double>, neg_b array<double>")
    parts = df.select("row_id", "label", "w", p_a, p_b).mapInArrow(partial, schema).toPandas()
    sums, hist = np.zeros((replicates, 3)), np.zeros((4, replicates, BOOTSTRAP_BINS))
    for row in parts.itertuples(index=False):
        sums[row.b] += (row.sw, row.ll_a, row.ll_b)
        for k, name in enumerate(("pos_a", "neg_a", "pos_b", "neg_b")):
            hist[k, row.b] += np.asarray(getattr(row, name))
    return bootstrap_summary(sums, hist, seed)
