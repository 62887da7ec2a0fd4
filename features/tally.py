"""Value tallies with Arrow, pure: rows and clicks per (value[, fold]) of a column.

Both feature engines count with these functions: the Spark engine tallies each task's Arrow batches and
lets Spark add the per-task tables up, the driver engine tallies the whole train split in one go. The
counts are integers, so both give the same tallies.
"""
from __future__ import annotations

from typing import Iterable


def batch_tally(values, y, fold=None):
    """One Arrow table (value[, fold], y_count, y_sum) of the non-null ``values`` with their labels ``y``
    (0/1) and, when given, their target-encoding ``fold``."""
    import pyarrow as pa
    import pyarrow.compute as pc

    t = pa.table({"value": values, **({"fold": fold} if fold is not None else {}), "y": y})
    t = t.filter(pc.is_valid(t["value"]))
    return t.group_by(_keys(fold is not None)).aggregate([("y", "count"), ("y", "sum")])


def merged_tally(tables: Iterable, with_fold: bool):
    """The :func:`batch_tally` tables added up: one Arrow table (value[, fold], n, clicks), or None when there
    are none."""
    import pyarrow as pa

    tables = list(tables)
    if not tables:
        return None
    t = pa.concat_tables(tables).group_by(_keys(with_fold)).aggregate([("y_count", "sum"), ("y_sum", "sum")])
    out = {"value": t["value"], **({"fold": t["fold"]} if with_fold else {}),
           "n": t["y_count_sum"].cast(pa.int64()), "clicks": t["y_sum_sum"].cast(pa.int64())}
    return pa.table(out)


def _keys(with_fold: bool) -> list[str]:
    return ["value", "fold"] if with_fold else ["value"]


def cross_text(columns: list, sep: str):
    """The values of ``columns`` (Arrow arrays) joined by ``sep``, null where any is null: what Spark's
    ``concat_ws`` gives under a ``when(all present)``."""
    import pyarrow as pa
    import pyarrow.compute as pc

    return pc.binary_join_element_wise(*[c.cast(pa.string()) for c in columns], sep)

