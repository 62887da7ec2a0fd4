"""Spark adapter of the sampling stage: ScalableSRS over the validated input, no global sort.

Each set lands in ``splits/<name>/`` (Parquet with the stable ``row_id``) and
``splits/sample_report.json`` records requested and obtained sizes, strata, waitlists, seeds and
digests. The engine is the Spark job (:mod:`sampling.spark_srs`) or the mrjob job
(:mod:`sampling.mr_srs`); both run the same core and select the same rows.
"""
from __future__ import annotations

import contextlib
import json
import logging
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Optional

from pyspark.sql import Column, DataFrame
from pyspark.sql import functions as F

from ctr_pipeline.config import parse_duration
from ctr_pipeline.errors import InputDataError, UserError
from ctr_pipeline.readers.local import local_problem, read_local
from ctr_pipeline.readers.spark import open_input, read_input
from ctr_pipeline.rowsample import id_digest
from ctr_pipeline.schema import SPLIT_NAMES
from ctr_pipeline.spark import driver_reads, engine_choice, shape, temporary_conf
from ctr_pipeline.stage import StageContext, StageResult
from ctr_pipeline.storage import Location

from . import srs
from .core import MAX_ATTEMPTS, NULL_STRATUM, check_stratum_column, inclusion_rates, plan_targets, stratum_name
from .driver import sample_in_driver, unsupported_stratum
from .spark_srs import draw

log = logging.getLogger("ctr_pipeline.sampling")


def stratum_expr(column: str) -> Column:
    """A row's stratum label: the column's value as a string, NULL_STRATUM for null."""
    return F.coalesce(F.col(column).cast("string"), F.lit(NULL_STRATUM))


def stratum_column(cfg, df: DataFrame) -> Optional[Column]:
    check_stratum_column(cfg, df.columns)
    return stratum_expr(cfg.sampling.stratify_by) if cfg.sampling.stratify_by else None


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
class Pool:
    """The rows ScalableSRS draws from: all of them, or those before the out-of-time test window."""

    rows: DataFrame
    size: int
    is_test: Optional[Column] = None
    out_of_time: Optional[dict] = None


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


def engine_report(cfg, out_of_time: Optional[dict], targets: dict, counts: dict, engine: dict,
                  waitlists: dict) -> tuple[dict, dict]:
    """(requested rows per set, report) for any engine; ``out_of_time``: the out-of-time split's facts."""
    s_cfg = cfg.sampling
    requested = {name: sum(t.get(name, 0) for t in targets.values()) for name in SPLIT_NAMES}
    if out_of_time is not None:
        requested["test"] = out_of_time["test_rows"]
    report = {"method": "scalable_srs", **engine, "seed": s_cfg.seed, "delta": s_cfg.delta,
              "n": sum(counts.values()) + (out_of_time or {}).get("test_rows", 0),
              "stratify_by": s_cfg.stratify_by,
              "strata": {stratum_name(s): {"n": counts[s], "requested": targets[s],
                                           "waitlist": waitlists.get(stratum_name(s))} for s in counts},
              "inclusion_rates": inclusion_rates(targets, counts), "out_of_time": out_of_time}
    return {k: v for k, v in requested.items() if v}, report


def sample_with_spark(cfg, spark, df: DataFrame, total: int, out: Location) -> tuple[dict, dict]:
    """The Spark engine: sets straight into ``out/<set>/``; the out-of-time test set by one filter."""
    pool = sampling_pool(cfg, df, total)
    drawn = draw(spark, pool.rows, cfg.sampling, stratum_column(cfg, df), pool.size, out)
    if pool.is_test is not None:
        df.filter(pool.is_test).write.parquet(str(out / "test"))
    engine = {"engine": "spark", "seed_used": drawn.seed, "attempts": drawn.attempts}
    return engine_report(cfg, pool.out_of_time, drawn.targets, drawn.counts, engine, drawn.waitlists)


def emr_mrjob_conf(cfg, work: Location, local_dir: Path) -> str:
    """Write the EMR runner's mrjob.conf, generated from ``emr.definition``; the run must be on S3."""
    import yaml

    from ctr_pipeline.aws import AwsSettings
    from emr_configs.definition import load
    from emr_configs.mrjob_conf import mrjob_conf

    if work.is_local:
        raise UserError(f"{cfg.source_of('sampling.mrjob_runner')}: sampling.mrjob_runner 'emr' reads and writes "
                        "S3: give an s3:// run directory (--out s3://bucket/prefix)")
    conf = mrjob_conf(load(cfg.emr.definition), AwsSettings.from_config(cfg).endpoint_url)
    path = local_dir / "mrjob.conf"
    path.write_text(yaml.safe_dump(conf))
    return str(path)


def run_mrjob(cfg, work: Location, size: int) -> dict:
    """Run the mrjob sampler on the JSON lines in ``work/input``; its output lands in ``work/assigned``.

    The EMR runner reads the input from S3; the other runners read local files (a run directory on S3
    is copied to a local temporary directory first). Plan files stay local to the driver.
    """
    from . import mr_srs

    s_cfg = cfg.sampling
    log.info("sample: running the mrjob sampler (-r %s) on %s rows", s_cfg.mrjob_runner, f"{size:,}")
    with contextlib.ExitStack() as stack:
        local_work = stack.enter_context(tempfile.TemporaryDirectory(prefix="ctr-mrjob-"))
        conf_path = emr_mrjob_conf(cfg, work, Path(local_work)) if s_cfg.mrjob_runner == "emr" else None
        if s_cfg.mrjob_runner == "emr" or work.is_local:
            inputs = [str(p) for p in (work / "input").glob("part-*")]
        else:
            copied = stack.enter_context((work / "input").local_path())
            inputs = [str(p) for p in sorted(copied.glob("part-*"))]
        info = mr_srs.run_srs(inputs, Path(local_work), lambda counts: plan_targets(s_cfg, counts), s_cfg.seed,
                              s_cfg.delta, runner=s_cfg.mrjob_runner, stratify_by=s_cfg.stratify_by,
                              max_attempts=MAX_ATTEMPTS, log=lambda msg: log.warning("sample: %s", msg),
                              conf_path=conf_path)
        (work / "assigned").upload_tree(Path(local_work) / "assigned")
    return info


def sample_with_mrjob(cfg, spark, df: DataFrame, total: int, out: Location) -> tuple[dict, dict]:
    """The mrjob engine over JSON lines of (row_id, stratify column); chosen rows are written from ``df``."""
    s_cfg = cfg.sampling
    stratum_column(cfg, df)  # checks the column exists
    pool = sampling_pool(cfg, df, total)
    work = out / "_mrjob"
    keep = ["row_id"] + ([s_cfg.stratify_by] if s_cfg.stratify_by else [])
    pool.rows.select(*keep).write.json(str(work / "input"))
    info = run_mrjob(cfg, work, pool.size)
    lines = spark.read.text(str(work / "assigned"))
    chosen = lines.select(F.substring_index("value", "\t", 1).alias("_set"),
                          F.get_json_object(F.expr("substring(value, instr(value, '\t') + 1)"), "$.row_id")
                          .cast("long").alias("row_id"))
    labelled = df.join(chosen, "row_id", "left")
    if pool.is_test is not None:
        labelled = labelled.withColumn("_set", F.when(pool.is_test, F.lit("test")).otherwise(F.col("_set")))
    scratch = out / "_sets"
    labelled.filter(F.col("_set").isNotNull()).write.partitionBy("_set").parquet(str(scratch))
    for part in scratch.glob("_set=*"):
        part.move_to(out / part.name[len("_set="):])
    scratch.rmtree()
    work.rmtree()
    engine = {"engine": "mrjob", "mrjob_runner": s_cfg.mrjob_runner, "seed_used": info["seed_used"],
              "attempts": info["attempts"]}
    return engine_report(cfg, pool.out_of_time, info["targets"], info["counts"], engine, info["waitlists"])


def local_digest(split: Location) -> str:
    """:func:`sampling.srs.digest` of the row ids in a local set's Parquet files, read with pyarrow (the
    ``row_id`` column only): no Spark job."""
    from .candidates import row_ids

    return srs.digest_array(row_ids(split))


def describe_sets(spark, out: Location, stratify_by: Optional[str] = None,
                  per_stratum: Optional[dict] = None) -> tuple[dict, dict, dict]:
    """Rows, order-independent row-id digest and (when stratified) rows per stratum of each set; a local
    set's digest is read by the driver (:func:`local_digest`), any other's is one Spark aggregate.
    ``per_stratum``: the rows per set and stratum when the caller knows them (else counted by Spark)."""
    rows, digests, known = {}, {}, per_stratum is not None
    per_stratum = dict(per_stratum or {})
    for name in SPLIT_NAMES:
        if not (out / name).is_dir():
            continue
        if stratify_by and not known:
            strata = stratum_expr(stratify_by).alias("s")
            per_stratum[name] = {r["s"]: r["count"] for r in
                                 spark.read.parquet(str(out / name)).groupBy(strata).count().collect()}
        if (out / name).is_local:
            digests[name] = local_digest(out / name)
        else:
            with temporary_conf(spark, "spark.sql.ansi.enabled", "false"):
                digests[name] = id_digest(spark.read.parquet(str(out / name)).select("row_id"))
        rows[name] = srs.digest_count(digests[name])  # the digest pass counted the rows too
        log.info("sample: %s: %s rows", name, f"{rows[name]:,}")
    return rows, digests, per_stratum


def driver_problem(cfg, spark, out: Location, source) -> Optional[str]:
    """Why the driver engine cannot draw this sample (None when it can)."""
    if not driver_reads(spark, out):
        return "Spark's master or the run directory is not on this machine"
    return local_problem(spark, source) or unsupported_stratum(source.layout, cfg.sampling.stratify_by)


def engine_for(cfg, spark, out: Location, source) -> str:
    """``sampling.engine`` resolved: ``auto`` is the driver engine where it can run, else Spark."""
    setting = cfg.sampling.engine
    if setting in ("spark", "mrjob"):
        return setting
    return engine_choice(cfg, "sampling.engine", driver_problem(cfg, spark, out, source),
                         "reads the input and draws the sets", log)


def sample_with_driver(cfg, spark, table, out: Location) -> tuple[dict, dict, dict]:
    """The driver engine (:mod:`sampling.driver`): (requested rows per set, report, rows per set and stratum)."""
    oot, drawn, per_stratum = sample_in_driver(cfg, table, out, shape(spark).parallelism)
    engine = {"engine": "driver", "seed_used": drawn.seed, "attempts": drawn.attempts}
    return (*engine_report(cfg, oot, drawn.targets, drawn.counts, engine, drawn.waitlists), per_stratum)


def run(ctx: StageContext) -> StageResult:
    cfg, spark = ctx.cfg, ctx.spark
    log.info("sample: reading %s (%s)", cfg.input.path, cfg.input.format)
    source = open_input(spark, cfg)
    engine = engine_for(cfg, spark, ctx.out, source)
    if engine == "driver":
        report = read_local(spark, source, ctx.out / "_quarantine")
    else:
        report = read_input(spark, cfg, str(ctx.out / "_quarantine"), source=source)
    try:
        log.info("sample: %s rows read from %d file(s), %s quarantined", f"{report.rows_read:,}",
                 len(report.files), f"{report.rows_bad:,}")
        total = report.rows_read - report.rows_bad
        known = None
        if engine == "driver":
            requested, chosen, known = sample_with_driver(cfg, spark, report.good, ctx.out)
        else:
            draw_with = sample_with_mrjob if engine == "mrjob" else sample_with_spark
            with temporary_conf(spark, "spark.sql.ansi.enabled", "false"):
                requested, chosen = draw_with(cfg, spark, report.good, total, ctx.out)
        report.release()
        rows, digests, per_stratum = describe_sets(spark, ctx.out, cfg.sampling.stratify_by,
                                                   known if cfg.sampling.stratify_by else None)
    finally:
        report.release()
    if rows != requested:  # a broken invariant, never a silent wrong size
        raise RuntimeError(f"ScalableSRS wrote {rows} rows but planned {requested}")
    for stratum, facts in chosen["strata"].items():
        if per_stratum:
            facts["obtained"] = {name: per_stratum[name].get(stratum, 0) for name in rows}
    sample_report = {**chosen, "sets": {name: {"requested": requested[name], "obtained": rows[name],
                                               "digest": digests[name]} for name in rows}}
    (ctx.out / "sample_report.json").write_text(json.dumps(sample_report, indent=2) + "\n")
    details = {**sample_report, "input": report.summary(), "num_features": report.num_features}
    retried = sample_report["attempts"] - 1
    summary = [f"input: {report.rows_read:,} rows, {report.rows_bad:,} quarantined; ScalableSRS "
               + ", ".join(f"{k} {v:,}" for k, v in rows.items()) + (f" (retried {retried}x)" if retried else "")]
    return StageResult(rows=rows, details=details, summary=summary)
