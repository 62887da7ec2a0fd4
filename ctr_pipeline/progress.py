"""Progress lines for long Spark work: while a stage runs, a watcher thread logs one line every
``spark.progress_seconds`` while Spark jobs are running: tasks done of the running Spark stages, rows
read and written so far, and the time since the pipeline stage started.

Rows come from Spark's status store, which counts a task's records when the task ends (tested); a long
single task (one gzip file) may show no rows until it ends.
"""
from __future__ import annotations

import contextlib
import logging
import threading
import time
from dataclasses import dataclass
from typing import Iterator, Optional

from .spark import started

log = logging.getLogger("ctr_pipeline.progress")


@dataclass(frozen=True)
class Snapshot:
    """What the running Spark stages have done so far."""

    stages: int
    tasks_done: int
    tasks: int
    rows_read: int
    rows_written: int


def elapsed_text(seconds: float) -> str:
    """1m05s, 2h03m, 42s."""
    s = int(seconds)
    if s >= 3600:
        return f"{s // 3600}h{s % 3600 // 60:02d}m"
    return f"{s // 60}m{s % 60:02d}s" if s >= 60 else f"{s}s"


def progress_line(stage: str, snap: Snapshot, seconds: float) -> str:
    """One line: ``sample: working, 3 of 8 tasks done in 1 Spark stage, 1,250,000 rows read, 1m05s``."""
    parts = [f"{snap.tasks_done:,} of {snap.tasks:,} tasks done in {snap.stages} Spark stage"
             + ("s" if snap.stages != 1 else "")]
    if snap.rows_read:
        parts.append(f"{snap.rows_read:,} rows read")
    if snap.rows_written:
        parts.append(f"{snap.rows_written:,} rows written")
    return f"{stage}: working, {', '.join(parts)}, {elapsed_text(seconds)}"


def snapshot(spark) -> Optional[Snapshot]:
    """The running Spark stages of ``spark`` (None when none runs)."""
    active = spark.sparkContext._jsc.sc().statusStore().activeStages()
    stages = [active.apply(i) for i in range(active.size())]
    if not stages:
        return None
    return Snapshot(len(stages), sum(s.numCompleteTasks() for s in stages), sum(s.numTasks() for s in stages),
                    sum(s.inputRecords() + s.shuffleReadRecords() for s in stages),
                    sum(s.outputRecords() for s in stages))


@contextlib.contextmanager
def watch(spark, stage: str, every: float) -> Iterator[None]:
    """Log a progress line every ``every`` seconds while the body runs (0: no lines) and Spark works: when
    Spark stages run at the line's time and already ran ``min(2 s, every / 2)`` before it. A stage that works
    in the driver and runs one short Spark job at that moment gets no line saying that a Spark stage is under
    way after all that time; a :class:`~ctr_pipeline.spark.LazySession` not started gets none."""
    if every <= 0:
        yield
        return
    stop = threading.Event()
    t0 = time.perf_counter()
    look_back = min(2.0, every / 2)

    def looked() -> Optional[Snapshot]:
        running = started(spark)   # a session not started (a stage working in the driver) has nothing to say
        if running is None:
            return None
        try:
            return snapshot(running)
        except Exception as err:   # noqa: BLE001 - a progress line must never fail the stage
            log.debug("progress: no snapshot (%s)", err)
            return None

    def loop() -> None:
        while not stop.wait(every - look_back):
            before = looked()
            if stop.wait(look_back):
                return
            snap = looked() if before is not None else None
            if snap is not None:
                log.info("%s", progress_line(stage, snap, time.perf_counter() - t0))

    thread = threading.Thread(target=loop, name=f"progress-{stage}", daemon=True)
    thread.start()
    try:
        yield
    finally:
        stop.set()
        thread.join(timeout=5)
