"""ScalableSRS on Spark: keys as native expressions and the one-pass draw into set directories.

The only full pass over the data computes each row's key and region and writes the accepted and
waitlisted rows (about k + O(sqrt(k))) to Parquet partitioned by (stratum index, region). Region counts
come from that output; the waitlists (recomputing keys from row_id) are collected to the driver and
resolved exactly. A certain region's files then belong wholly to one set and are moved there by rename;
only the small waitlist partitions are read again, split at the cuts (in one job) and written. Where the
driver reads the run directory itself (a local master, a local directory), the counting, the waitlists
and the split are its own work on the candidate files (:mod:`sampling.candidates`), without Spark jobs.
"""
from __future__ import annotations

import logging
import os
import uuid
from typing import Mapping, Optional

from pyspark.sql import Column, DataFrame
from pyspark.sql import functions as F

from ctr_pipeline.rowsample import key_column
from ctr_pipeline.spark import driver_reads
from ctr_pipeline.storage import Location

from . import srs
from .candidates import candidate_regions, counts_in_driver, split_in_driver
from .core import first_exact, retry_warning, stratum_name, stratum_plans
from .srs import Drawn

log = logging.getLogger("ctr_pipeline.sampling")


def _below(k: Column, bound: int) -> Column:
    """k < bound, where bound may lie past either end of the long range."""
    if bound > srs.MAX_KEY:
        return F.lit(True)
    if bound <= srs.MIN_KEY:
        return F.lit(False)
    return k < F.lit(bound)


def _at_or_below(k: Column, rid: Column, cut: tuple[int, int]) -> Column:
    """(k, row_id) <= cut in lexicographic order."""
    ck, cr = cut
    if ck > srs.MAX_KEY:
        return F.lit(True)
    if ck < srs.MIN_KEY:
        return F.lit(False)
    return (k < F.lit(ck)) | ((k == F.lit(ck)) & (rid <= F.lit(cr)))


def _first_match(branches: list[tuple[Column, Column]], otherwise: Column) -> Column:
    """CASE WHEN c1 THEN v1 WHEN c2 THEN v2 ... ELSE otherwise."""
    expr = None
    for cond, value in branches:
        expr = F.when(cond, value) if expr is None else expr.when(cond, value)
    return otherwise if expr is None else expr.otherwise(otherwise)


def _per_stratum(stratum: Optional[Column], cases: Mapping[Optional[str], Column]) -> Column:
    if stratum is None:
        return cases[None]
    return _first_match([(stratum == F.lit(value), case) for value, case in cases.items()], F.lit(None))


def region_column(plans: Mapping, k: Column, stratum: Optional[Column]) -> Column:
    return _per_stratum(stratum, {s: _first_match([(_below(k, b), F.lit(r)) for r, b in enumerate(p.boundaries)],
                                                  F.lit(len(p.boundaries))) for s, p in plans.items()})


def set_column(plans: Mapping, cuts: Mapping, k: Column, rid: Column, stratum: Optional[Column]) -> Column:
    return _per_stratum(stratum, {s: _first_match([(_at_or_below(k, rid, c), F.lit(name))
                                                   for name, c in zip(p.sets, cuts[s])], F.lit(None).cast("string"))
                                  for s, p in plans.items()})


def stratum_counts(df: DataFrame, stratum: Optional[Column], total: int) -> dict[Optional[str], int]:
    """Rows per stratum, in the strata's order (so plans and reports do not depend on Spark's)."""
    if stratum is None:
        return {None: total}
    return dict(sorted((r["s"], r["count"]) for r in df.groupBy(stratum.alias("s")).count().collect()))


def write_candidates(df: DataFrame, plans: Mapping, seed: int, stratum: Optional[Column], path: Location) -> None:
    """The one pass: rows with keys below their stratum's reach, partitioned by (_si, _r)."""
    index = {s: i for i, s in enumerate(plans)}
    k = key_column(seed, F.col("row_id"))
    region = region_column(plans, k, stratum)
    keep = _per_stratum(stratum, {s: _below(k, p.reach) for s, p in plans.items()})
    si = _per_stratum(stratum, {s: F.lit(i) for s, i in index.items()})
    (df.withColumn("_si", si).withColumn("_r", region).filter(keep)
     .write.partitionBy("_si", "_r").parquet(str(path)))


def counts_from_candidates(spark, path: Location, plans: Mapping, seed: int) -> tuple[dict, dict]:
    """(rows per region, waitlisted (key, row_id) pairs) per stratum, counted by Spark over the candidates."""
    strata = list(plans)
    cands = spark.read.parquet(str(path))
    counts: dict = {s: {} for s in plans}
    for row in cands.groupBy("_si", "_r").count().collect():
        counts[strata[row["_si"]]][row["_r"]] = row["count"]
    waitlists: dict = {s: [] for s in plans}
    waiting = cands.filter((F.col("_r") % 2) == 1).select("_si", key_column(seed, F.col("row_id")).alias("k"),
                                                          "row_id")
    for row in waiting.collect():
        waitlists[strata[row["_si"]]].append((row["k"], row["row_id"]))
    return counts, waitlists


def resolve_cuts(plans: Mapping, counts: Mapping, waitlists: Mapping):
    """Exact cuts per stratum, and the waitlist sizes the report shows."""
    cuts = {s: srs.resolve(plan, counts[s], waitlists[s]) for s, plan in plans.items()}
    return cuts, {stratum_name(s): len(w) for s, w in waitlists.items()}


def _region_set(plan: srs.StratumPlan, cuts, region: int) -> Optional[str]:
    """The one set every row of a certain region belongs to (or None)."""
    lower = plan.boundaries[region - 1] if region > 0 else srs.MIN_KEY
    upper = plan.boundaries[region] - 1 if region < len(plan.boundaries) else srs.MAX_KEY
    first = srs.assign(cuts, plan.sets, lower, -srs.MAX_ROW_ID - 1)
    last = srs.assign(cuts, plan.sets, upper, srs.MAX_ROW_ID)
    if first != last:  # resolve() guarantees cuts lie in waitlists or at region ends
        raise RuntimeError(f"a cut falls inside certain region {region} of stratum {plan.stratum!r}")
    return first


def _move_files(src: Location, dest: Location) -> None:
    dest.mkdir()
    for f in src.glob("part-*"):
        f.move_to(dest / f"{uuid.uuid4().hex[:8]}-{f.name}")


def split_with_spark(spark, path: Location, waiting: list[tuple], plans: Mapping, cuts: Mapping, seed: int,
                     out: Location) -> None:
    """Write the rows of the waitlist regions ``waiting`` into ``out/<set>/`` by their cuts, in one Spark job."""
    index = {s: i for i, s in enumerate(plans)}
    rows = spark.read.option("basePath", str(path)).parquet(*(str(d) for *_, d in waiting))
    set_col = set_column({index[s]: plan for s, plan in plans.items()}, {index[s]: cuts[s] for s in plans},
                         key_column(seed, F.col("row_id")), F.col("row_id"), F.col("_si"))
    split = path / "_split"
    rows.withColumn("_set", set_col).filter(F.col("_set").isNotNull()).drop("_si", "_r") \
        .write.partitionBy("_set").parquet(str(split))
    for part in split.glob("_set=*"):
        _move_files(part, out / part.name[len("_set="):])


def place_sets(spark, path: Location, plans: Mapping, cuts: Mapping, seed: int, out: Location,
               in_driver: bool = False) -> None:
    """Move certain regions' files into ``out/<set>/``; split the waitlist regions at their cuts (by the
    driver when ``in_driver``, else in one Spark job)."""
    waiting = []
    for s, plan, region, region_dir in candidate_regions(path, plans):
        if plan.is_waitlist(region):
            waiting.append((s, plan, region, region_dir))
            continue
        name = _region_set(plan, cuts[s], region)
        if name is not None:
            _move_files(region_dir, out / name)
    if not waiting:
        return
    if in_driver:
        split_in_driver(waiting, cuts, seed, out)
    else:
        split_with_spark(spark, path, waiting, plans, cuts, seed, out)


def draw(spark, df: DataFrame, s_cfg, stratum: Optional[Column], total: int, out: "Location | str | os.PathLike") -> Drawn:
    """Draw the sets of ``df`` into ``out/<set>/`` (Parquet); call with ANSI off.

    Retries with derived seeds when a waitlist falls short; ``out/_candidates`` is scratch space.
    """
    out = Location.of(out)
    counts = stratum_counts(df, stratum, total)
    targets, plans = stratum_plans(s_cfg, counts)
    scratch = out / "_candidates"
    in_driver = driver_reads(spark, scratch)

    def attempt(seed: int):
        scratch.rmtree()
        write_candidates(df, plans, seed, stratum, scratch)
        found = (counts_in_driver(scratch, plans, seed) if in_driver
                 else counts_from_candidates(spark, scratch, plans, seed))
        return resolve_cuts(plans, *found)

    (cuts, waits), seed, attempts = first_exact(s_cfg.seed, attempt, retry_warning)
    place_sets(spark, scratch, plans, cuts, seed, out, in_driver)
    scratch.rmtree()
    return Drawn(plans, targets, counts, seed, attempts, waits)
