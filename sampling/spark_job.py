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
from pathlib import Path
from typing import Callable, Mapping, Optional

from pyspark import StorageLevel
from pyspark.sql import Column, DataFrame
from pyspark.sql import functions as F

from ctr_pipeline.config import parse_duration
from ctr_pipeline.errors import InputDataError
from ctr_pipeline.readers.spark import read_input
from ctr_pipeline.spark import temporary_conf
from ctr_pipeline.schema import SPLIT_NAMES
from ctr_pipeline.stage import StageContext, StageResult

from . import srs
from .core import NULL_STRATUM, inclusion_rates, plan_targets, stratum_name

log = logging.getLogger("ctr_pipeline.sampling")
MAX_ATTEMPTS = 5


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


def candidates(df: DataFrame, plans: Mapping, seed: int, stratum: Optional[Column]) -> DataFrame:
    """The one pass over the data: keys and regions, keeping only accepted and waitlisted rows (keys
    below each stratum's last boundary), persisted; the rest can never be sampled."""
    k = key_column(seed, F.col("row_id"))
    keyed = df.withColumn("_k", k).withColumn("_r", region_column(plans, F.col("_k"), stratum))
    keep = _per_stratum(stratum, {s: (F.col("_r") < F.lit(len(p.boundaries))) if p.boundaries else F.lit(True)
                                  for s, p in plans.items()})
    return keyed.filter(keep).persist(StorageLevel.MEMORY_AND_DISK)


def resolve_cuts(cands: DataFrame, plans: Mapping, stratum: Optional[Column]):
    """Rows per (stratum, region) and the waitlisted (key, row_id) from the candidates; exact cuts."""
    rows = (cands.select((stratum if stratum is not None else F.lit(None).cast("string")).alias("s"),
                         F.col("_k").alias("k"), F.col("row_id"), F.col("_r").alias("r"))
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
    sizes = {stratum_name(s): len(w) for s, w in waitlists.items()}
    return cuts, sizes


def _digests(spark, path: str) -> str:
    parts = (spark.read.parquet(path).select("row_id").rdd
             .mapPartitions(lambda it: [srs.digest(r[0] for r in it)]).collect())
    return srs.combine_digests(parts)


@dataclass
class Drawn:
    labelled: DataFrame              # the candidate rows with a `_set` column (persisted: see release)
    set_col: Column                  # the expression behind `_set`, to apply to other frames
    plans: dict
    targets: dict
    counts: dict
    seed: int                        # the seed whose keys made the sample (a derived one after a retry)
    attempts: int
    waitlists: dict                  # waitlisted rows per stratum
    cache: Optional[DataFrame] = None

    def release(self) -> None:
        if self.cache is not None:
            self.cache.unpersist()


def draw(df: DataFrame, s_cfg, stratum: Optional[Column], total: int) -> Drawn:
    """Plan, resolve (retrying with derived seeds) and label the candidates with their set; call with
    ANSI off and call ``release()`` when the sets are written."""
    counts = stratum_counts(df, stratum, total)
    targets = plan_targets(s_cfg, counts)
    plans = {s: srs.plan_stratum(s, counts[s], targets[s], s_cfg.delta) for s in counts}
    seed, attempts = s_cfg.seed, 0
    while True:
        attempts += 1
        cands = candidates(df, plans, seed, stratum)
        try:
            cuts, waits = resolve_cuts(cands, plans, stratum)
            break
        except srs.ShortWaitlist as short:
            cands.unpersist()
            if attempts >= MAX_ATTEMPTS:
                raise InputDataError(f"ScalableSRS found no exact sample in {attempts} attempts ({short}); "
                                     "lower sampling.delta") from None
            seed = srs.derived_seed(s_cfg.seed, attempts)
            log.warning("sample: %s (probability <= 2*delta); retrying with derived seed %d", short, seed)
    set_col = set_column(plans, cuts, key_column(seed, F.col("row_id")), F.col("row_id"), stratum)
    labelled = cands.withColumn("_set", set_column(plans, cuts, F.col("_k"), F.col("row_id"), stratum))
    return Drawn(labelled.drop("_k", "_r"), set_col, plans, targets, counts, seed, attempts, waits, cands)


def stratum_column(cfg, df: DataFrame) -> Optional[Column]:
    column = cfg.sampling.stratify_by
    if not column:
        return None
    if column not in df.columns:
        raise InputDataError(f"{cfg.source_of('sampling.stratify_by')}: sampling.stratify_by column {column!r} is "
                             f"not in the input (columns: {', '.join(df.columns)})")
    return F.coalesce(F.col(column).cast("string"), F.lit(NULL_STRATUM))


def out_of_time_window(cfg, df: DataFrame) -> tuple[Column, dict]:
    """(is-test column, facts): test = rows whose time lies in the last window up to the latest time."""
    column, seconds = cfg.input.time, parse_duration(cfg.sampling.out_of_time)
    facts = df.agg(F.max(column).alias("latest"), F.count(F.lit(1)).alias("rows"),
                   F.count(column).alias("timed")).first()
    if facts["latest"] is None:
        raise InputDataError(f"input.time column {column!r} has no values: out-of-time split impossible")
    cutoff = facts["latest"] - seconds
    is_test = F.coalesce(F.col(column) > F.lit(cutoff), F.lit(False))
    info = {"column": column, "window_seconds": seconds, "latest": facts["latest"], "cutoff": cutoff,
            "rows_without_time": facts["rows"] - facts["timed"]}
    return is_test, info


@dataclass
class Selection:
    """What the engine chose: the rows with their `_set`, the plan and how it was drawn."""

    labelled: DataFrame
    requested: dict
    report: dict
    release: Callable[[], None] = lambda: None


@dataclass
class Pool:
    """The rows ScalableSRS draws from: all of them, or those before the out-of-time test window."""

    rows: DataFrame
    size: int
    is_test: Optional[Column] = None
    out_of_time: Optional[dict] = None

    def label(self, df: DataFrame, set_col: Column) -> DataFrame:
        if self.is_test is None:
            return df.withColumn("_set", set_col)
        return df.withColumn("_set", F.when(self.is_test, F.lit("test")).otherwise(set_col))


def sampling_pool(cfg, df: DataFrame, total: int) -> Pool:
    if not cfg.sampling.out_of_time:
        return Pool(df, total)
    is_test, oot = out_of_time_window(cfg, df)
    rows = df.filter(~is_test)
    size = rows.count()
    oot["test_rows"] = total - size
    if oot["test_rows"] == 0:
        raise InputDataError(f"sampling.out_of_time {cfg.sampling.out_of_time!r} leaves the test set empty")
    return Pool(rows, size, is_test, oot)


def _selection(cfg, pool: Pool, labelled: DataFrame, targets: dict, counts: dict, engine: dict) -> Selection:
    s_cfg = cfg.sampling
    requested = {name: sum(t.get(name, 0) for t in targets.values()) for name in SPLIT_NAMES}
    if pool.out_of_time is not None:
        requested["test"] = pool.out_of_time["test_rows"]
    report = {"method": "scalable_srs", **engine, "seed": s_cfg.seed, "delta": s_cfg.delta,
              "n": sum(counts.values()) + (pool.out_of_time or {}).get("test_rows", 0),
              "stratify_by": s_cfg.stratify_by,
              "strata": {stratum_name(s): {"n": counts[s], "requested": targets[s],
                                           "waitlist": engine.get("waitlist", {}).get(stratum_name(s))}
                         for s in counts},
              "inclusion_rates": inclusion_rates(targets, counts), "out_of_time": pool.out_of_time}
    report.pop("waitlist", None)
    return Selection(labelled, {k: v for k, v in requested.items() if v}, report)


def select_with_spark(cfg, df: DataFrame, total: int) -> Selection:
    """ScalableSRS on Spark; with out_of_time, test is the last window and the rest is sampled."""
    pool = sampling_pool(cfg, df, total)
    drawn = draw(pool.rows, cfg.sampling, stratum_column(cfg, df), pool.size)
    engine = {"engine": "spark", "seed_used": drawn.seed, "attempts": drawn.attempts, "waitlist": drawn.waitlists}
    # without a time window every sampled row is a candidate; with one, test rows come from the full input
    labelled = drawn.labelled if pool.is_test is None else pool.label(df, drawn.set_col)
    selection = _selection(cfg, pool, labelled, drawn.targets, drawn.counts, engine)
    selection.release = drawn.release
    return selection


def select_with_mrjob(cfg, spark, df: DataFrame, total: int, workdir: Path) -> Selection:
    """ScalableSRS as the mrjob job (sampling/mr_srs.py) over JSON lines of (row_id, stratum column)."""
    from . import mr_srs

    s_cfg = cfg.sampling
    stratum_column(cfg, df)  # checks the column exists
    pool = sampling_pool(cfg, df, total)
    keep = ["row_id"] + ([s_cfg.stratify_by] if s_cfg.stratify_by else [])
    pool.rows.select(*keep).write.json(str(workdir / "input"))
    inputs = [str(p) for p in sorted((workdir / "input").glob("part-*"))]
    log.info("sample: running the mrjob sampler (-r %s) on %s rows", s_cfg.mrjob_runner, f"{pool.size:,}")
    info = mr_srs.run_srs(inputs, workdir / "job", lambda counts: plan_targets(s_cfg, counts), s_cfg.seed,
                          s_cfg.delta, runner=s_cfg.mrjob_runner, stratify_by=s_cfg.stratify_by,
                          max_attempts=MAX_ATTEMPTS, log=lambda msg: log.warning("sample: %s", msg))
    lines = spark.read.text(str(workdir / "job" / "assigned"))
    chosen = lines.select(F.substring_index("value", "\t", 1).alias("_set"),
                          F.get_json_object(F.expr("substring(value, instr(value, '\t') + 1)"), "$.row_id")
                          .cast("long").alias("row_id"))
    joined = df.join(chosen, "row_id", "left")
    labelled = joined
    if pool.is_test is not None:
        labelled = joined.withColumn("_set", F.when(pool.is_test, F.lit("test")).otherwise(F.col("_set")))
    engine = {"engine": "mrjob", "mrjob_runner": s_cfg.mrjob_runner, "seed_used": info["seed_used"],
              "attempts": info["attempts"], "waitlist": info["waitlists"]}
    return _selection(cfg, pool, labelled, info["targets"], info["counts"], engine)


def write_sets(spark, labelled: DataFrame, out: Path) -> tuple[dict, dict]:
    """One partitioned write of every set to ``out/<set>/``; (rows, digests) per set."""
    scratch = out / "_sets"
    labelled.filter(F.col("_set").isNotNull()).write.partitionBy("_set").parquet(str(scratch))
    rows, digests = {}, {}
    for name in SPLIT_NAMES:
        part = scratch / f"_set={name}"
        if not part.is_dir():
            continue
        os.replace(part, out / name)
        rows[name] = spark.read.parquet(str(out / name)).count()
        digests[name] = _digests(spark, str(out / name))
        log.info("sample: %s: %s rows", name, f"{rows[name]:,}")
    shutil.rmtree(scratch)
    return rows, digests


def run(ctx: StageContext) -> StageResult:
    cfg, spark = ctx.cfg, ctx.spark
    log.info("sample: reading %s (%s)", cfg.input.path, cfg.input.format)
    report = read_input(spark, cfg, str(ctx.out / "_quarantine"))
    try:
        log.info("sample: %s rows read from %d file(s), %s quarantined", f"{report.rows_read:,}",
                 len(report.files), f"{report.rows_bad:,}")
        total = report.rows_read - report.rows_bad
        with temporary_conf(spark, "spark.sql.ansi.enabled", "false"):
            if cfg.sampling.engine == "mrjob":
                chosen = select_with_mrjob(cfg, spark, report.good, total, ctx.out / "_mrjob")
            else:
                chosen = select_with_spark(cfg, report.good, total)
            rows, digests = write_sets(spark, chosen.labelled, ctx.out)
            chosen.release()
        shutil.rmtree(ctx.out / "_mrjob", ignore_errors=True)
    finally:
        report.good.unpersist()
    if rows != chosen.requested:  # a broken invariant, never a silent wrong size
        raise RuntimeError(f"ScalableSRS wrote {rows} rows but planned {chosen.requested}")
    sample_report = {**chosen.report, "sets": {name: {"requested": chosen.requested[name], "obtained": rows[name],
                                                      "digest": digests[name]} for name in rows}}
    (ctx.out / "sample_report.json").write_text(json.dumps(sample_report, indent=2) + "\n")
    details = {**sample_report, "input": report.summary(), "num_features": report.num_features}
    retried = sample_report["attempts"] - 1
    summary = [f"input: {report.rows_read:,} rows, {report.rows_bad:,} quarantined; ScalableSRS "
               + ", ".join(f"{k} {v:,}" for k, v in rows.items()) + (f" (retried {retried}x)" if retried else "")]
    return StageResult(rows=rows, details=details, summary=summary)
