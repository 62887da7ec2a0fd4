"""Spark adapter of the refresh (see :mod:`training.refresh`): leaves once, then one small job per tree.

1. Every row's leaf in every tree (``pred_leaf`` on the row's sparse vector), with its label and weight,
   is computed once and cached.
2. For tree t, each task turns its rows' margins (base margin plus the refreshed trees before t) into
   logistic gradients and sums them per leaf; Spark adds the tasks' sums; the driver refreshes tree t.

A Python worker keeps its partitions' margins between the jobs (keyed by refresh, partition and batch)
and adds only the newest tree; a task that lands on another worker recomputes them from the leaves, in
the same order of float32 additions, so the result does not depend on where tasks run.
"""
from __future__ import annotations

import logging
import time
import uuid
from typing import Any, Optional

import numpy as np
from pyspark import StorageLevel
from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import functions as F

from features.spark_io import batch_csr

from .refresh import RefreshParams, Trees, add_tree, gradients, leaf_sums

log = logging.getLogger("ctr_pipeline.training")
# Per Python worker: (refresh, partition, batch) -> (trees added so far, margins).
_MARGINS: dict[tuple, tuple[int, np.ndarray]] = {}


def leaf_dtype(trees: Trees) -> str:
    """The smallest integer type that holds every node id: leaf ids travel packed, one per tree and row."""
    most = max((len(t["parents"]) for t in trees.trees), default=1)
    return "uint8" if most <= 1 << 8 else "uint16" if most <= 1 << 16 else "int32"


def packed_leaves(column, rows: int, dtype: str) -> np.ndarray:
    """(rows, trees) leaf ids of a binary column written by :func:`leaves_of` (no copy)."""
    offsets = np.frombuffer(column.buffers()[1], np.int32)[column.offset: column.offset + rows + 1]
    size = np.dtype(dtype).itemsize
    flat = np.frombuffer(column.buffers()[2], dtype, count=(offsets[-1] - offsets[0]) // size,
                         offset=int(offsets[0]))
    return flat.reshape(rows, -1)


def leaves_of(spark: SparkSession, booster_raw: bytes, features: DataFrame, width: int,
              weight_col: Optional[str], dtype: str) -> DataFrame:
    """label, w, leaves (every tree's leaf node id as ``dtype``, packed in one binary value) of stored
    feature rows (struct column). Packed ids cost a job a byte per tree and row for depth <= 7 trees (an
    array of ints cost 4 bytes and offsets)."""
    import pyarrow as pa

    shared = spark.sparkContext.broadcast(booster_raw)
    threads = int(spark.conf.get("spark.task.cpus", "1"))

    def leaves(batches):
        import xgboost

        booster = xgboost.Booster()
        booster.load_model(bytearray(shared.value))
        booster.set_param({"nthread": threads})
        for b in batches:
            if b.num_rows == 0:
                continue
            got = booster.predict(xgboost.DMatrix(batch_csr(b, width), missing=0.0), pred_leaf=True)
            got = np.ascontiguousarray(np.asarray(got).reshape(b.num_rows, -1).astype(dtype))
            row_bytes = got.shape[1] * got.itemsize
            offsets = np.arange(0, got.size * got.itemsize + 1, row_bytes, dtype=np.int32)
            packed = pa.BinaryArray.from_buffers(pa.binary(), b.num_rows,
                                                 [None, pa.py_buffer(offsets), pa.py_buffer(got.tobytes())])
            yield pa.RecordBatch.from_arrays([b.column("label").cast(pa.int32()), b.column("w").cast(pa.float64()),
                                              packed], names=["label", "w", "leaves"])

    w = F.col(weight_col).cast("double") if weight_col else F.lit(1.0)
    return (features.select(F.col("label").cast("int").alias("label"), w.alias("w"), "features")
            .mapInArrow(leaves, "label int, w double, leaves binary"))


def _stats_job(rows: DataFrame, trees: Trees, t: int, values: list[np.ndarray], params: RefreshParams,
               token: str, dtype: str) -> tuple[np.ndarray, np.ndarray]:
    """Sums of g and h per leaf of tree ``t`` over all rows (margins from the refreshed trees before t)."""
    import pyarrow as pa

    nodes = len(trees.trees[t]["parents"])
    base = trees.base_margin()

    def stats(batches):
        from pyspark import TaskContext

        part = TaskContext.get().partitionId()
        g_sum, h_sum = np.zeros(nodes), np.zeros(nodes)
        for k, b in enumerate(batches):
            if b.num_rows == 0:
                continue
            leaves = packed_leaves(b.column("leaves"), b.num_rows, dtype)
            key = (token, part, k)
            done, margin = _MARGINS.get(key, (0, None))
            if margin is None or len(margin) != b.num_rows or done > t:
                done, margin = 0, np.full(b.num_rows, base, dtype=np.float32)
            for s in range(done, t):
                margin = add_tree(margin, leaves[:, s], values[s])
            _MARGINS[key] = (t, margin)
            y = b.column("label").to_numpy(zero_copy_only=False)
            g, h = gradients(margin, y, b.column("w").to_numpy(zero_copy_only=False), params)
            a, c = leaf_sums(leaves[:, t].astype(np.int64), g, h, nodes)
            g_sum += a
            h_sum += c
        for key in [key for key in _MARGINS if key[0] != token]:   # an earlier refresh's margins
            del _MARGINS[key]
        used = np.flatnonzero((g_sum != 0) | (h_sum != 0))
        yield pa.RecordBatch.from_arrays([pa.array(used.astype(np.int32)), pa.array(g_sum[used]),
                                          pa.array(h_sum[used])], names=["node", "g", "h"])

    got = (rows.mapInArrow(stats, "node int, g double, h double").groupBy("node")
           .agg(F.sum("g").alias("g"), F.sum("h").alias("h")).collect())
    g, h = np.zeros(nodes), np.zeros(nodes)
    for r in got:
        g[r["node"]], h[r["node"]] = r["g"], r["h"]
    return g, h


def refresh(spark: SparkSession, booster: Any, features: DataFrame, width: int, params: RefreshParams,
            weight_col: Optional[str] = None) -> tuple[Any, dict[str, Any]]:
    """The booster refreshed on ``features`` (feature Parquet read as stored, ``features`` a struct);
    returns (new booster, facts: rows, trees, seconds)."""
    import xgboost

    t0 = time.perf_counter()
    trees = Trees.from_json(bytes(booster.save_raw("json")))
    dtype = leaf_dtype(trees)
    rows = leaves_of(spark, bytes(booster.save_raw("ubj")), features, width, weight_col, dtype)
    rows = rows.persist(StorageLevel.MEMORY_AND_DISK)
    try:
        n = rows.count()
        values: list[np.ndarray] = []
        token = uuid.uuid4().hex
        for t in range(len(trees)):
            g, h = _stats_job(rows, trees, t, values, params, token, dtype)
            trees.refresh(t, *trees.node_sums(t, g, h), params)
            values.append(trees.leaf_values(t))
            if (t + 1) % 10 == 0 or t + 1 == len(trees):
                log.info("refresh: %d / %d trees refreshed on %s rows (%.1fs)", t + 1, len(trees), f"{n:,}",
                         time.perf_counter() - t0)
    finally:
        rows.unpersist()
    out = xgboost.Booster()
    out.load_model(bytearray(trees.to_json()))
    return out, {"rows": n, "trees": len(trees), "seconds": round(time.perf_counter() - t0, 3)}
