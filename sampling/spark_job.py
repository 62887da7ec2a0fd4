"""Spark adapter of the sampling stage: read and validate the input, split it, write Parquet sets.

This version splits with Spark's ``randomSplit`` (approximate sizes); each set lands in
``splits/<name>/`` with the stable ``row_id`` of its records, bad rows in ``splits/_quarantine/``.
"""
from __future__ import annotations

import logging

from ctr_pipeline.readers.spark import read_input
from ctr_pipeline.stage import StageContext, StageResult

from .core import REST, check_split_rows, split_plan

log = logging.getLogger("ctr_pipeline.sampling")


def run(ctx: StageContext) -> StageResult:
    cfg = ctx.cfg
    log.info("sample: reading %s (%s)", cfg.input.path, cfg.input.format)
    report = read_input(ctx.spark, cfg, str(ctx.out / "_quarantine"))
    try:
        log.info("sample: %s rows read from %d file(s), %s quarantined", f"{report.rows_read:,}",
                 len(report.files), f"{report.rows_bad:,}")
        plan = split_plan(cfg.sampling)
        sets = report.good.randomSplit([share for _, share in plan], seed=cfg.sampling.seed)
        rows = {}
        for (name, _), part in zip(plan, sets):
            if name == REST:
                continue
            path = str(ctx.out / name)
            part.write.parquet(path)
            rows[name] = ctx.spark.read.parquet(path).count()
            log.info("sample: %s: %s rows", name, f"{rows[name]:,}")
        check_split_rows(rows, report.rows_read - report.rows_bad)
    finally:
        report.good.unpersist()
    details = {"method": "randomSplit", "seed": cfg.sampling.seed, "shares": dict(plan), "input": report.summary(),
               "num_features": report.num_features}
    summary = [f"input: {report.rows_read:,} rows, {report.rows_bad:,} quarantined; "
               + ", ".join(f"{k} {v:,}" for k, v in rows.items())]
    return StageResult(rows=rows, details=details, summary=summary)
