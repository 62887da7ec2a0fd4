"""The Spark engine's candidate files, counted and split by the driver where it reads them itself.

:func:`sampling.spark_srs.draw` writes the candidates (about k + O(sqrt(k)) rows) in its one Spark pass,
partitioned by stratum index and region (``_si=<i>/_r=<r>/``). What is left is small: rows per region,
the waitlisted (key, row_id) pairs, and the waitlist regions' rows split at the cuts. With a local master
and a local run directory the driver does it with pyarrow, in well under the time of the Spark jobs that
do it elsewhere (:mod:`sampling.spark_srs`): the counts come from the Parquet footers, the waitlists from
the ``row_id`` column of the waitlist files, and those files are split and written by the driver.
"""
from __future__ import annotations

import uuid
from typing import Iterator, Mapping

import numpy as np

from ctr_pipeline.rowhash import keys
from ctr_pipeline.schema import SPLIT_NAMES
from ctr_pipeline.storage import Location

from .driver import sets_of_rows


def candidate_regions(path: Location, plans: Mapping) -> Iterator[tuple]:
    """(stratum, plan, region, directory) of each region directory under the candidates ``path``."""
    for i, (s, plan) in enumerate(plans.items()):
        stratum_dir = path / f"_si={i}"
        if not stratum_dir.is_dir():
            continue
        for region_dir in sorted(stratum_dir.iterdir(), key=lambda d: d.name):
            if region_dir.name.startswith("_r="):
                yield s, plan, int(region_dir.name[3:]), region_dir


def row_ids(directory: Location) -> np.ndarray:
    """The ``row_id`` column of the local Parquet parts under ``directory``, read with pyarrow."""
    import pyarrow.parquet as pq

    ids = [pq.read_table(str(f.path), columns=["row_id"]).column("row_id").to_numpy()
           for f in directory.parquet_parts()]
    return np.concatenate(ids) if ids else np.empty(0, np.int64)


def counts_in_driver(path: Location, plans: Mapping, seed: int) -> tuple[dict, dict]:
    """(rows per region, waitlisted (key, row_id) pairs) per stratum of the local candidates ``path``."""
    import pyarrow.parquet as pq

    counts: dict = {s: {} for s in plans}
    waitlists: dict = {s: [] for s in plans}
    for s, plan, region, region_dir in candidate_regions(path, plans):
        counts[s][region] = sum(pq.ParquetFile(str(f.path)).metadata.num_rows for f in region_dir.parquet_parts())
        if plan.is_waitlist(region):
            ids = row_ids(region_dir)
            waitlists[s].extend(zip(keys(seed, ids).tolist(), ids.tolist()))
    return counts, waitlists


def split_in_driver(waiting: list[tuple], cuts: Mapping, seed: int, out: Location) -> None:
    """Write the rows of each waitlist region ``(stratum, plan, region, directory)`` in ``waiting`` into
    ``out/<set>/`` by the stratum's ``cuts``, a file per part file and set, with the part's schema."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    for s, plan, _region, region_dir in waiting:
        for part in region_dir.parquet_parts():
            table = pq.read_table(str(part.path))
            ids = table.column("row_id").to_numpy()
            chosen = sets_of_rows(plan, cuts[s], keys(seed, ids), ids)
            for i in np.unique(chosen[chosen >= 0]):
                dest = out / SPLIT_NAMES[i]
                dest.mkdir()
                pq.write_table(table.filter(pa.array(chosen == i)),
                               str(dest / f"{uuid.uuid4().hex[:8]}-{part.name}"), coerce_timestamps="us")

