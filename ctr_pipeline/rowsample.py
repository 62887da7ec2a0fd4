"""Rows chosen by their stable hash, on Spark: :func:`ctr_pipeline.rowhash.key` as a native expression,
a share of a DataFrame's rows, and exact capped samples (on Spark or collected to the driver).

Every choice depends on (seed, row_id) only, so it is the same on a rerun, a task retry and any
partitioning. Used by the sampler, the features stage (target-encoding folds), the training stage
(cross-validation folds, the search's sample, the early-stopping sample, a gbdt_lr model's held-out
rows) and the evaluation (the baselines' capped sample).
"""
from __future__ import annotations

from pyspark.sql import Column, DataFrame
from pyspark.sql import functions as F

from .errors import UserError
from .rowhash import GOLDEN, MIX1, MIX2, seed_salt, share_bound


def _signed(x: int) -> int:
    return x - (1 << 64) if x >= 1 << 63 else x


def mix64_column(x: Column) -> Column:
    """:func:`ctr_pipeline.rowhash.mix64` of a long column as a native Spark expression, as a signed long
    (64-bit long arithmetic wraps; ANSI off)."""
    z = x + F.lit(_signed(GOLDEN))
    z = z.bitwiseXOR(F.shiftrightunsigned(z, 30)) * F.lit(_signed(MIX1))
    z = z.bitwiseXOR(F.shiftrightunsigned(z, 27)) * F.lit(_signed(MIX2))
    return z.bitwiseXOR(F.shiftrightunsigned(z, 31))


def key_column(seed: int, row_id: Column) -> Column:
    """:func:`ctr_pipeline.rowhash.key` as a native Spark expression (64-bit long arithmetic wraps; ANSI off)."""
    return mix64_column(row_id.bitwiseXOR(F.lit(_signed(seed_salt(seed))))).bitwiseXOR(F.lit(-(1 << 63)))


def id_digest(df: DataFrame) -> str:
    """:func:`sampling.srs.digest` of ``df``'s ``row_id`` values in one Spark aggregate (ANSI off): the
    count and the sum of their SplitMix64 mod 2**64, summed as two 32-bit halves in decimals (no overflow
    at any row count)."""
    z = mix64_column(F.col("row_id"))
    halves = [F.sum(F.shiftrightunsigned(z, 32).cast("decimal(38,0)")).alias("hi"),
              F.sum(z.bitwiseAND(F.lit(0xFFFFFFFF)).cast("decimal(38,0)")).alias("lo")]
    got = df.agg(F.count(F.lit(1)).alias("n"), *halves).first()
    total = ((int(got["hi"] or 0) << 32) + int(got["lo"] or 0)) & ((1 << 64) - 1)
    return f"{got['n']:x}-{total:016x}"


def split_share(df: DataFrame, share: float, seed: int) -> tuple[DataFrame, DataFrame]:
    """(the rest, a ``share`` of ``df``'s rows): the rows whose key falls below :func:`share_bound`."""
    below = key_column(seed, F.col("row_id")) < F.lit(share_bound(share))
    return df.filter(~below), df.filter(below)


def key_rate(limit: int, total: int) -> float:
    """Share of rows below the first key bound: about 10 standard deviations past the expected cut."""
    return min(1.0, limit / total * 1.05 + 10 * limit ** 0.5 / total)


def capped_sample(df: DataFrame, limit: int, seed: int) -> tuple[DataFrame, int, int]:
    """An exact simple random sample of at most ``limit`` rows of ``df``: (sample, its rows, rows of df).

    The rows with the ``limit`` smallest keys (the sampler's hash of seed and row_id, uniform over the long
    range) form the sample. One pass keeps the rows below a key bound a little past the expected cut
    (about limit * 1.05 rows); their (key, row_id) pairs come to the driver, where the exact cut is found.
    ``limit`` 0 means no cap.
    """
    total = df.count()
    if limit == 0 or total <= limit:
        return df, total, total
    keyed = df.withColumn("_k", key_column(seed, F.col("row_id")))
    rate = key_rate(limit, total)
    while True:
        below = keyed.filter(F.col("_k") < share_bound(rate)) if rate < 1.0 else keyed
        pairs = sorted((r[0], r[1]) for r in below.select("_k", "row_id").collect())
        if len(pairs) >= limit:
            break
        rate = min(1.0, rate * 1.5)  # practically never
    k, rid = pairs[limit - 1]
    cut = (F.col("_k") < k) | ((F.col("_k") == k) & (F.col("row_id") <= rid))
    return below.filter(cut).drop("_k"), limit, total


def capped_rows(df: DataFrame, limit: int, seed: int, columns: tuple[str, ...], max_rows: int, source: str,
                key: str, what: str):
    """The rows of :func:`capped_sample` on the driver, in one pass over ``df``: (CSR features,
    {column: numpy array}, rows, rows of df). The rows below the first key bound come with their keys and
    the driver keeps the ``limit`` smallest. More than ``max_rows`` rows: UserError naming ``source`` and
    ``key`` (where ``limit`` was set) and ``what`` is done with the rows."""
    import numpy as np

    from features.spark_io import collect_csr, vector_width

    total = df.count()
    rows = held_rows(limit, total, max_rows, source, key, what)
    width = vector_width(df)
    if rows == total:
        x, cols = collect_csr(df, width, columns)
        return x, cols, rows, total
    keyed = df.withColumn("_k", key_column(seed, F.col("row_id")))
    rate = key_rate(limit, total)
    while True:
        below = keyed.filter(F.col("_k") < share_bound(rate)) if rate < 1.0 else keyed
        x, cols = collect_csr(below, width, (*columns, "_k", "row_id"))
        if len(cols["_k"]) >= limit:
            break
        rate = min(1.0, rate * 1.5)  # practically never
    keep = smallest(cols["_k"], cols["row_id"], limit)
    return x[keep], {c: cols[c][keep] for c in columns}, limit, total


def held_rows(limit: int, total: int, max_rows: int, source: str, key: str, what: str) -> int:
    """Rows an exact capped sample of ``limit`` (0: all) of ``total`` rows holds in the driver; more than
    ``max_rows``: UserError naming ``source`` and ``key`` (where ``limit`` was set) and ``what`` is done."""
    rows = total if limit == 0 else min(limit, total)
    if rows > max_rows:
        raise UserError(f"{source}: {what} in the driver's memory, from at most {max_rows:,} rows; this run "
                        f"would use {rows:,}. Set {key} to at most {max_rows} (0 means all of train)")
    return rows


def smallest(keys, row_ids, limit: int):
    """Positions (ascending) of the ``limit`` rows with the smallest (key, row_id): the exact sample."""
    import numpy as np

    return np.sort(np.lexsort((row_ids, keys))[:limit])
