"""Run stages against a run directory: skip finished ones, refuse stale or mismatched ones, publish.

The order of work for one stage: check upstream is complete -> skip if already complete with the same
settings -> run into a staging directory -> publish by rename -> record in the manifest.
"""
from __future__ import annotations

import importlib
import logging
import time
import uuid
from typing import Any, Callable, Iterable, Optional

from .config import section_hash, to_dict
from .errors import RunFailed, StageError, UserError
from .failures import explain
from .progress import watch
from .runs import CONFIG_SECTIONS, STAGES, UPSTREAM, RunDir
from .scratch import jvm_errors
from .spark import LazySession
from .schema import Config
from .stage import StageContext, StageResult

log = logging.getLogger("ctr_pipeline.pipeline")

# Stage name -> module with run(ctx) -> StageResult, imported only when the stage runs.
STAGE_MODULES = {"sample": "sampling.spark_job", "features": "features.spark_job",
                 "train": "training.spark_job", "evaluate": "evaluation.spark_job"}


def _changed_keys(old: dict[str, Any], new: dict[str, Any]) -> list[str]:
    keys = []
    for section in sorted(set(old) | set(new)):
        a, b = old.get(section, {}), new.get(section, {})
        keys += [f"{section}.{k}: {a.get(k)!r} -> {b.get(k)!r}" for k in sorted(set(a) | set(b)) if a.get(k) != b.get(k)]
    return keys


def check_can_run(stage: str, run: RunDir) -> None:
    """Raise naming the command to run first when an upstream stage is missing or stale."""
    for up in UPSTREAM[stage]:
        if not run.is_complete(up):
            raise StageError(f"{stage} needs a complete, current '{up}' stage in {run.root}; run "
                             f"'ctr-pipeline {up} --out {run.root}' (or 'ctr-pipeline run') first")


# Stages that read every row an upstream stage wrote: the counts they find must be the counts recorded.
READS_ALL_OF = {"features": "sample", "train": "features", "evaluate": "features"}


def check_rows_read(stage: str, rows: dict[str, int], run: RunDir) -> None:
    """Stop, before anything is published, when a stage found fewer (or more) rows in a split than the
    upstream stage recorded writing: a file of the run directory was removed or changed since."""
    upstream = READS_ALL_OF.get(stage)
    written = (run.stage_record(upstream) or {}).get("rows", {}) if upstream else {}
    for split, got in rows.items():
        want = written.get(split)
        if want is not None and got != want:
            raise StageError(f"{stage}: the {upstream} stage's {split} split ({run.path_of(upstream)}) holds "
                             f"{got:,} rows, but that stage recorded writing {want:,}: files of the run directory "
                             f"were removed or changed since, so nothing was published; run 'ctr-pipeline {upstream} "
                             f"--force --out {run.root}' and the stages after it")


def run_stage(stage: str, cfg: Config, run: RunDir, spark_factory: Callable[[], Any], force: bool,
              options: Optional[dict] = None) -> dict:
    """Run one stage (or skip it when complete); return its manifest record. ``spark_factory``: a
    :class:`~ctr_pipeline.spark.LazySession`, or a callable giving the session; either is called only when
    the stage asks the session something."""
    sections = CONFIG_SECTIONS[stage]
    current = {s: to_dict(cfg)[s] for s in sections}
    record = run.stage_record(stage)
    if not force and run.is_complete(stage):
        if record.get("config_hash") != section_hash(cfg, *sections):
            changed = "; ".join(_changed_keys(record.get("config", {}), current))
            raise StageError(f"{stage} is already complete in {run.root} with other settings ({changed}); add "
                             f"--force to redo it (and the stages after it)")
        log.info("%s: already complete (%s), skipping; --force redoes it", stage, run.path_of(stage))
        return record
    check_can_run(stage, run)
    module = importlib.import_module(STAGE_MODULES[stage])
    spark = spark_factory if isinstance(spark_factory, LazySession) else LazySession(spark_factory)
    staging = run.new_staging(stage)
    log.info("%s: started", stage)
    started, t0 = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()), time.perf_counter()
    try:
        ctx = StageContext(spark, cfg, run, staging, dict(options or {}), run.final_location(stage, staging))
        with watch(spark, stage, cfg.spark.progress_seconds):
            result: StageResult = module.run(ctx)
        check_rows_read(stage, result.rows, run)
        location = run.publish(stage, staging)
    except BaseException as exc:
        run.discard(staging)
        if isinstance(exc, Exception) and not isinstance(exc, (UserError, RunFailed)):
            raise RunFailed(f"{stage} stage failed: {explain(exc, jvm_errors())}") from exc
        raise
    seconds = time.perf_counter() - t0
    manifest = run.manifest()
    record = {
        "status": "complete", "token": uuid.uuid4().hex, "started": started, "seconds": round(seconds, 3),
        "upstream": {up: manifest["stages"][up]["token"] for up in UPSTREAM[stage]},
        "config_hash": section_hash(cfg, *sections), "config": current,
        "rows": result.rows, "details": result.details, "summary": result.summary,
        "location": location, "output": str(run.root / location),
    }
    run.record_stage(stage, record, to_dict(cfg))
    rows = ", ".join(f"{k}={v:,}" for k, v in result.rows.items())
    log.info("%s: done in %.1fs (%s) -> %s", stage, seconds, rows, run.path_of(stage))
    return record


def run_stages(stages: Iterable[str], cfg: Config, run: RunDir, spark_factory: Callable[[], Any],
               force: bool = False, options: Optional[dict] = None) -> dict[str, dict]:
    """Run ``stages`` in pipeline order; ``force`` redoes them even when complete."""
    records = {}
    for stage in STAGES:
        if stage in stages:
            records[stage] = run_stage(stage, cfg, run, spark_factory, force, options)
    return records
