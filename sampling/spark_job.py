"""Spark adapter of the sampling stage: ScalableSRS over the validated input, no global sort.

Passes over the (cached) good rows: rows per stratum (skipped without stratify_by: the reader counted
them), one aggregation that counts rows per key region and collects the small waitlists to the driver,
and one write of all sets, partitioned by set. Each set lands in ``splits/<name>/`` with its stable
``row_id``; ``splits/sample_report.json`` records sizes, waitlists, seeds and digests.
"""
from __future__ import annotations

import json
import logging
import os
import shutil
from dataclasses import dataclass
from typing import Mapping, Optional

from pyspark.sql import Column, DataFrame
from pyspark.sql import functions as F

from ctr_pipeline.errors import InputDataError
from ctr_pipeline.readers.spark import read_input
from ctr_pipeline.spark import temporary_conf
from ctr_pipeline.stage import StageContext, StageResult

from . import srs
from .core import inclusion_rates, plan_targets

log = logging.getLogger("ctr_pipeline.sampling")
MAX_ATTEMPTS = 5
NULL_STRATUM = "__null__"


def _signed(x: int) -> int:
    return x - (1 << 64) if x >= 1 << 63 else x


def key_column(seed: int, row_id: Column) -> Column:
    """:func:`sampling.srs.key` as a native Spark expression (64-bit long arithmetic wraps; ANSI off)."""
    z = row_id.bitwiseXOR(F.lit(_signed(srs.seed_salt(seed)))) + F.lit(_signed(srs.GOLDEN))
    z = z.bitwiseXOR(F.shiftrightunsigned(z, 30)) * F.lit(_signed(srs.MIX1))
    z = z.bitwiseXOR(F.shiftrightunsigned(z, 27)) * F.lit(_signed(srs.MIX2))
    return z.bitwiseXOR(F.shiftrightunsigned(z, 31)).bitwiseXOR(F.lit(-(1 << 63)))


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


def _per_stratum(stratum: Optional[Column], cases: Mapping[Optional[str], Column]) -> Column:
    if stratum is None:
        return cases[None]
    expr = None
    for value, case in cases.items():
        expr = F.when(stratum == F.lit(value), case) if expr is None else expr.when(stratum == F.lit(value), case)
    return expr


def region_column(plans: Mapping, k: Column, stratum: Optional[Column]) -> Column:
    cases = {}
    for s, plan in plans.items():
        expr = None
        for r, bound in enumerate(plan.boundaries):
            cond = _below(k, bound)
            expr = F.when(cond, F.lit(r)) if expr is None else expr.when(cond, F.lit(r))
        last = F.lit(len(plan.boundaries))
        cases[s] = last if expr is None else expr.otherwise(last)
    return _per_stratum(stratum, cases)


def set_column(plans: Mapping, cuts: Mapping, k: Column, rid: Column, stratum: Optional[Column]) -> Column:
    cases = {}
    for s, plan in plans.items():
        expr = None
        for name, cut in zip(plan.sets, cuts[s]):
            cond = _at_or_below(k, rid, cut)
            expr = F.when(cond, F.lit(name)) if expr is None else expr.when(cond, F.lit(name))
        cases[s] = F.lit(None).cast("string") if expr is None else expr
    return _per_stratum(stratum, cases)


def stratum_counts(df: DataFrame, stratum: Optional[Column], total: int) -> dict[Optional[str], int]:
    if stratum is None:
        return {None: total}
    return {r["s"]: r["count"] for r in df.groupBy(stratum.alias("s")).count().collect()}


def resolve_cuts(df: DataFrame, plans: Mapping, seed: int, stratum: Optional[Column]):
    """One aggregation pass: rows per (stratum, region) and the waitlisted (key, row_id); then exact cuts."""
    k = key_column(seed, F.col("row_id"))
    region = region_column(plans, k, stratum)
    rows = (df.select((stratum if stratum is not None else F.lit(None).cast("string")).alias("s"),
                      k.alias("k"), F.col("row_id"), region.alias("r"))
            .groupBy("s", "r")
            .agg(F.count(F.lit(1)).alias("n"),
                 F.collect_list(F.when((F.col("r") % 2) == 1, F.struct("k", "row_id"))).alias("w"))
            .collect())
    counts: dict = {s: {} for s in plans}
    waitlists: dict = {s: [] for s in plans}
    for row in rows:
        counts[row["s"]][row["r"]] = row["n"]
        waitlists[row["s"]] += [(w["k"], w["row_id"]) for w in row["w"]]
    cuts = {s: srs.resolve(plan, counts[s], waitlists[s]) for s, plan in plans.items()}
    sizes = {str(s): len(w) for s, w in waitlists.items()}
    return cuts, sizes


def _digests(spark, path: str) -> str:
    parts = (spark.read.parquet(path).select("row_id").rdd
             .mapPartitions(lambda it: [srs.digest(r[0] for r in it)]).collect())
    return srs.combine_digests(parts)


@dataclass
class Drawn:
    labelled: DataFrame              # the input with a `_set` column (null: in no set)
    plans: dict
    targets: dict
    counts: dict
    seed: int                        # the seed whose keys made the sample (a derived one after a retry)
    attempts: int
    waitlists: dict                  # waitlisted rows per stratum


def draw(df: DataFrame, s_cfg, stratum: Optional[Column], total: int) -> Drawn:
    """Plan, resolve (retrying with derived seeds) and label ``df`` with its set; call with ANSI off."""
    counts = stratum_counts(df, stratum, total)
    targets = plan_targets(s_cfg, counts)
    plans = {s: srs.plan_stratum(s, counts[s], targets[s], s_cfg.delta) for s in counts}
    seed, attempts = s_cfg.seed, 0
    while True:
        attempts += 1
        try:
            cuts, waits = resolve_cuts(df, plans, seed, stratum)
            break
        except srs.ShortWaitlist as short:
            if attempts >= MAX_ATTEMPTS:
                raise InputDataError(f"ScalableSRS found no exact sample in {attempts} attempts ({short}); "
                                     "lower sampling.delta") from None
            seed = srs.derived_seed(s_cfg.seed, attempts)
            log.warning("sample: %s (probability <= 2*delta); retrying with derived seed %d", short, seed)
    k = key_column(seed, F.col("row_id"))
    labelled = df.withColumn("_set", set_column(plans, cuts, k, F.col("row_id"), stratum))
    return Drawn(labelled, plans, targets, counts, seed, attempts, waits)


def run(ctx: StageContext) -> StageResult:
    cfg, spark = ctx.cfg, ctx.spark
    s_cfg = cfg.sampling
    log.info("sample: reading %s (%s)", cfg.input.path, cfg.input.format)
    report = read_input(spark, cfg, str(ctx.out / "_quarantine"))
    df = report.good
    try:
        log.info("sample: %s rows read from %d file(s), %s quarantined", f"{report.rows_read:,}",
                 len(report.files), f"{report.rows_bad:,}")
        stratum = None
        if s_cfg.stratify_by:
            if s_cfg.stratify_by not in df.columns:
                raise InputDataError(f"{cfg.source_of('sampling.stratify_by')}: sampling.stratify_by column "
                                     f"{s_cfg.stratify_by!r} is not in the input (columns: {', '.join(df.columns)})")
            stratum = F.coalesce(F.col(s_cfg.stratify_by).cast("string"), F.lit(NULL_STRATUM))
        with temporary_conf(spark, "spark.sql.ansi.enabled", "false"):
            drawn = draw(df, s_cfg, stratum, report.rows_read - report.rows_bad)
            drawn.labelled.filter(F.col("_set").isNotNull()).write.partitionBy("_set").parquet(str(ctx.out / "_sets"))
        plans, targets, counts = drawn.plans, drawn.targets, drawn.counts
        seed, attempts, waits = drawn.seed, drawn.attempts, drawn.waitlists
        rows, digests = {}, {}
        for name in (n for n in ("train", "validation", "test") if any(n in p.sets for p in plans.values())):
            os.replace(ctx.out / "_sets" / f"_set={name}", ctx.out / name)
            rows[name] = spark.read.parquet(str(ctx.out / name)).count()
            digests[name] = _digests(spark, str(ctx.out / name))
            log.info("sample: %s: %s rows", name, f"{rows[name]:,}")
        shutil.rmtree(ctx.out / "_sets")
    finally:
        df.unpersist()
    requested = {name: sum(t.get(name, 0) for t in targets.values()) for name in rows}
    if rows != requested:  # a broken invariant, never a silent wrong size
        raise RuntimeError(f"ScalableSRS wrote {rows} rows but planned {requested}")
    sample_report = {
        "method": "scalable_srs", "seed": s_cfg.seed, "seed_used": seed, "attempts": attempts,
        "delta": s_cfg.delta, "n": sum(counts.values()), "stratify_by": s_cfg.stratify_by,
        "sets": {name: {"requested": requested[name], "obtained": rows[name], "digest": digests[name]}
                 for name in rows},
        "strata": {str(s): {"n": counts[s], "requested": targets[s], "waitlist": waits[str(s)]} for s in counts},
        "inclusion_rates": inclusion_rates(targets, counts),
    }
    (ctx.out / "sample_report.json").write_text(json.dumps(sample_report, indent=2) + "\n")
    details = {**sample_report, "input": report.summary(), "num_features": report.num_features}
    summary = [f"input: {report.rows_read:,} rows, {report.rows_bad:,} quarantined; ScalableSRS "
               + ", ".join(f"{k} {v:,}" for k, v in rows.items())
               + (f" (retried {attempts - 1}x)" if attempts > 1 else "")]
    return StageResult(rows=rows, details=details, summary=summary)

