"""The driver engine of the sampling stage: ScalableSRS on rows the driver holds, sets written with pyarrow.

Used with the driver's reader (:mod:`ctr_pipeline.readers.local`) where Spark's master is local and the
run directory is on this machine. It selects exactly the rows of the Spark engine
(:mod:`sampling.spark_srs`): the same strata, plans, keys, region counts, waitlists, cuts and derived
seeds (:mod:`sampling.srs`, :mod:`sampling.core`), computed on numpy arrays instead of in Spark jobs.
The out-of-time split is the Spark engine's too: test holds the rows whose time lies after
(latest time - window); rows without a time are never in it.

Each set is written as Parquet part files with the input's columns, in row-id order, split so that a
later stage's Spark scan has a task per core.
"""
from __future__ import annotations

import uuid
from concurrent.futures import ThreadPoolExecutor
from typing import Optional

import numpy as np

from ctr_pipeline.config import parse_duration
from ctr_pipeline.errors import InputDataError
from ctr_pipeline.rowhash import MAX_KEY, MIN_KEY, keys
from ctr_pipeline.schema import SPLIT_NAMES
from ctr_pipeline.storage import Location

from . import srs
from .core import NULL_STRATUM, check_stratum_column, first_exact, retry_warning, stratum_name, stratum_plans

PART_ROWS = 100_000        # rows a part file holds at least (when there are more parts than cores: at most 1M)
MAX_PART_ROWS = 1_000_000


def stratum_labels(table, column: str) -> np.ndarray:
    """Each row's stratum as Spark's ``coalesce(cast(column as string), '__null__')`` gives it; integer and
    string columns only (a double's text form is Spark's own, see :func:`unsupported_stratum`)."""
    import pyarrow as pa
    import pyarrow.compute as pc

    values = table.column(column)
    if not pa.types.is_string(values.type):
        values = pc.cast(values, pa.string())
    return np.asarray(pc.fill_null(values, NULL_STRATUM).to_numpy(zero_copy_only=False), dtype=object)


def unsupported_stratum(layout, column: Optional[str]) -> Optional[str]:
    """Why the driver cannot stratify by ``column`` (None when it can): a double column's values as
    strings are Spark's formatting (``1.0E-5``), which the driver does not reproduce."""
    if column and column in layout.numeric:
        return f"sampling.stratify_by {column!r} is a numeric column"
    return None


def _regions(plan: srs.StratumPlan, k: np.ndarray) -> np.ndarray:
    """:meth:`srs.StratumPlan.region` of every key (boundaries may lie past either end of the key range)."""
    region = np.zeros(len(k), dtype=np.int64)
    for b in plan.boundaries:
        if b <= MIN_KEY:
            region += 1
        elif b <= MAX_KEY:
            region += k >= b
    return region


def _at_or_below(k: np.ndarray, ids: np.ndarray, cut: tuple[int, int]) -> np.ndarray:
    """(k, row_id) <= cut in lexicographic order, for every row."""
    ck, cr = cut
    if ck > MAX_KEY:
        return np.ones(len(k), dtype=bool)
    if ck < MIN_KEY:
        return np.zeros(len(k), dtype=bool)
    return (k < ck) | ((k == ck) & (ids <= cr))


def resolve(plan: srs.StratumPlan, k: np.ndarray, ids: np.ndarray) -> tuple[list[tuple[int, int]], int]:
    """(:func:`srs.resolve`'s cuts, waitlisted rows) from one stratum's keys and row ids (raises
    :class:`srs.ShortWaitlist`)."""
    region = _regions(plan, k)
    counts = np.bincount(region, minlength=len(plan.boundaries) + 1)
    waiting = (region % 2) == 1
    waitlist = list(zip(k[waiting].tolist(), ids[waiting].tolist()))
    return srs.resolve(plan, {r: int(n) for r, n in enumerate(counts)}, waitlist), len(waitlist)


def draw_arrays(row_ids: np.ndarray, strata: Optional[np.ndarray], s_cfg) -> tuple[srs.Drawn, np.ndarray]:
    """(what the draw used, each row's set as an index into SPLIT_NAMES or -1) for rows ``row_ids`` with
    stratum labels ``strata`` (None: one stratum)."""
    if strata is None:
        members = {None: np.arange(len(row_ids))}
    else:
        values, inverse = np.unique(strata, return_inverse=True)
        order = np.argsort(inverse, kind="stable")
        bounds = np.cumsum(np.bincount(inverse, minlength=len(values)))[:-1]
        members = {str(v): idx for v, idx in zip(values, np.split(order, bounds))}
    counts = {s: len(idx) for s, idx in members.items()}
    targets, plans = stratum_plans(s_cfg, counts)

    def attempt(seed: int) -> dict:
        k = keys(seed, row_ids)
        return {s: resolve(plan, k[members[s]], row_ids[members[s]]) for s, plan in plans.items()}

    resolved, seed, attempts = first_exact(s_cfg.seed, attempt, retry_warning)
    cuts = {s: c for s, (c, _) in resolved.items()}
    waits = {stratum_name(s): n for s, (_, n) in resolved.items()}
    k = keys(seed, row_ids)
    chosen = np.full(len(row_ids), -1, dtype=np.int8)
    for s, plan in plans.items():
        idx = members[s]
        chosen[idx] = sets_of_rows(plan, cuts[s], k[idx], row_ids[idx])
    return srs.Drawn(plans, targets, counts, seed, attempts, waits), chosen


def sets_of_rows(plan: srs.StratumPlan, cuts, k: np.ndarray, ids: np.ndarray) -> np.ndarray:
    """Each row's set (an index into SPLIT_NAMES, -1 for none): the first of the stratum's sets whose cut
    (key, row_id) is at or above the row's."""
    chosen = np.full(len(ids), -1, dtype=np.int8)
    left = np.ones(len(ids), dtype=bool)
    for name, cut in zip(plan.sets, cuts):
        hit = left & _at_or_below(k, ids, cut)
        chosen[hit] = SPLIT_NAMES.index(name)
        left &= ~hit
    return chosen


def out_of_time(cfg, table) -> tuple[np.ndarray, dict]:
    """(is-test mask, facts) of the out-of-time split, as :func:`sampling.spark_job.out_of_time_window`."""
    column, seconds = cfg.input.time, parse_duration(cfg.sampling.out_of_time)
    times = table.column(column)
    timed = len(times) - times.null_count
    if timed == 0:
        raise InputDataError(f"input.time column {column!r} has no values: out-of-time split impossible")
    values = times.to_numpy(zero_copy_only=False)
    present = np.asarray(times.is_valid().to_numpy(zero_copy_only=False), dtype=bool)
    latest = int(values[present].max())
    cutoff = latest - seconds
    is_test = present & (np.where(present, values, 0) > cutoff)
    info = {"column": column, "window_seconds": seconds, "latest": latest, "cutoff": cutoff,
            "rows_without_time": len(times) - timed}
    return is_test, info


def parts_for(rows: int, cores: int) -> int:
    """Part files for a set: one per PART_ROWS up to one per core, and at least one per MAX_PART_ROWS."""
    return max(1, min(cores, -(-rows // PART_ROWS)), -(-rows // MAX_PART_ROWS))


def write_set(table, rows: np.ndarray, out: Location, cores: int) -> None:
    """Rows ``rows`` (indices, in order) of ``table`` as Parquet part files in ``out`` (a local directory),
    named as Spark names them; the parts are taken and written a few at a time, in threads."""
    import pyarrow.parquet as pq

    out.mkdir()
    parts = parts_for(len(rows), cores)
    step = -(-len(rows) // parts)
    tag = uuid.uuid4()

    def write(i: int) -> None:
        pq.write_table(table.take(rows[i * step:(i + 1) * step]), str(out / f"part-{i:05d}-{tag}-c000.snappy.parquet"))

    with ThreadPoolExecutor(min(parts, cores)) as pool:
        list(pool.map(write, range(parts)))
    (out / "_SUCCESS").write_bytes(b"")


def sample_in_driver(cfg, table, out: Location, cores: int):
    """Draw the sets of ``table`` (the good input rows) into ``out/<set>/``: (pool facts, the draw, rows per
    set and stratum). ``pool facts`` is the out-of-time split's report entry (None without one)."""
    s_cfg = cfg.sampling
    check_stratum_column(cfg, table.column_names)
    ids = table.column("row_id").to_numpy()
    is_test, oot = (None, None)
    if s_cfg.out_of_time:
        is_test, oot = out_of_time(cfg, table)
        oot["test_rows"] = int(is_test.sum())
        if oot["test_rows"] == 0:
            raise InputDataError(f"sampling.out_of_time {s_cfg.out_of_time!r} leaves the test set empty")
    strata = stratum_labels(table, s_cfg.stratify_by) if s_cfg.stratify_by else None
    pool = np.arange(len(ids)) if is_test is None else np.flatnonzero(~is_test)
    drawn, chosen_in_pool = draw_arrays(ids[pool], None if strata is None else strata[pool], s_cfg)
    chosen = np.full(len(ids), -1, dtype=np.int8)
    chosen[pool] = chosen_in_pool
    if is_test is not None:
        chosen[is_test] = SPLIT_NAMES.index("test")
    per_stratum = {}
    for i, name in enumerate(SPLIT_NAMES):
        rows = np.flatnonzero(chosen == i)
        if len(rows):
            write_set(table, rows, out / name, cores)
            if strata is not None:
                labels, n = np.unique(strata[rows], return_counts=True)
                per_stratum[name] = {str(v): int(c) for v, c in zip(labels, n)}
    return oot, drawn, per_stratum
