"""The feature map, pure: every vector index with a readable name, its group and its raw column.

Names: ``I5`` / ``I5:log1p`` / ``I5:q32``, ``hour(click_time)``, ``count(ip)``, ``ctr(app)``,
``C3=68fd1e64``, ``OOV(C3)``, ``C3=68fd1e64 (+2 more)`` for a hash bucket (its most frequent train
value and how many other values share it), ``cross:site_id*device_model=x*y``. ``source`` is the raw
column (or cross) an index belongs to, so importances can be summed per raw column.
"""
from __future__ import annotations

from typing import Optional

import numpy as np
import pandas as pd

from .hashing import CROSS_SEP
from .state import FittedTransform

COLUMNS = ["index", "name", "group", "source"]


def feature_map(t: FittedTransform, buckets: Optional[pd.DataFrame] = None) -> pd.DataFrame:
    """One row per index 0..width-1. ``buckets``: rows (block 'hash'|'cross', bucket, column, value,
    values) naming hash and cross buckets by their most frequent train value; unnamed buckets are
    ``hash[b]`` / ``cross[b]``."""
    rows: list[tuple[int, str, str, str]] = []
    for s in t.slots:
        rows.append((s.index, s.name, s.kind.split(":")[0], s.source))
    for col, vocab in t.vocab.items():
        off = t.vocab_offsets[col]
        rows.extend((off + i, f"{col}={v}", "vocab", col) for i, v in enumerate(vocab))
        rows.append((t.oov_index(col), f"OOV({col})", "vocab", col))
    named = {} if buckets is None else {(r.block, int(r.bucket)): r for r in buckets.itertuples(index=False)}
    for block, offset, width in (("hash", t.hash_offset, t.spec.hash_buckets),
                                 ("cross", t.cross_offset, t.spec.cross_buckets)):
        if offset is None:
            continue
        for b in range(width):
            r = named.get((block, b))
            if r is None:
                rows.append((offset + b, f"{block}[{b}]", block, block))
                continue
            value = str(r.value).replace(CROSS_SEP, "*")
            more = f" (+{int(r.values) - 1} more)" if int(r.values) > 1 else ""
            name = f"{r.column}={value}{more}" if block == "hash" else f"cross:{r.column}={value}{more}"
            rows.append((offset + b, name, block, r.column))
    out = pd.DataFrame(rows, columns=COLUMNS).sort_values("index", kind="mergesort").reset_index(drop=True)
    return out


def passthrough_map(width: int) -> pd.DataFrame:
    """libsvm input: index i is feature ``f<i>`` of the input vectors."""
    return pd.DataFrame({"index": range(width), "name": [f"f{i}" for i in range(width)],
                         "group": "input", "source": [f"f{i}" for i in range(width)]})


def check_map(fmap: pd.DataFrame, width: int) -> None:
    """The map covers exactly 0..width-1 (a bug here would misname every importance)."""
    if len(fmap) != width or not (fmap["index"].to_numpy() == np.arange(width)).all():
        raise RuntimeError(f"feature map has {len(fmap)} rows for a vector of width {width}")


def bucket_blocks(spec) -> dict[str, tuple[str, int]]:
    """{hashed column or cross name: (block 'hash' | 'cross', its width)} of a :class:`.spec.FeatureSpec`."""
    from .spec import cross_name

    blocks = {c: ("hash", spec.hash_buckets) for c in spec.columns_of("hash")}
    blocks.update({cross_name(c): ("cross", spec.cross_buckets) for c in spec.crosses})
    return blocks


def with_buckets(frame: pd.DataFrame, blocks: dict[str, tuple[str, int]]) -> pd.DataFrame:
    """``frame`` (column, value, ...; a default index) with each value's ``block`` and ``bucket``."""
    from .hashing import bucket_of

    bucket = np.zeros(len(frame), dtype=np.int64)
    block = np.empty(len(frame), dtype=object)
    for col, part in frame.groupby("column", sort=False):
        name, width = blocks[col]
        bucket[part.index.to_numpy()] = bucket_of(col, part["value"], width)
        block[part.index.to_numpy()] = name
    return frame.assign(block=block, bucket=bucket)


def named_buckets(tallies: pd.DataFrame, blocks: dict[str, tuple[str, int]]) -> pd.DataFrame:
    """Rows (block, bucket, column, value, values) for :func:`feature_map` from value tallies (column, value,
    n) of the hashed columns and crosses: each bucket's value with the most train rows (ties: the larger
    value, then the larger column name) and how many values share the bucket."""
    frame = with_buckets(tallies[tallies["column"].isin(list(blocks))].reset_index(drop=True), blocks)
    ranked = frame.sort_values(["block", "bucket", "n", "value", "column"],
                               ascending=[True, True, False, False, False], kind="mergesort")
    first = ranked.groupby(["block", "bucket"], sort=False)
    out = first[["column", "value"]].first()
    out["values"] = first.size()
    return out.reset_index()[["block", "bucket", "column", "value", "values"]]
