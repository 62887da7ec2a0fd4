"""Fitting, pure: turn statistics of the train split into a :class:`FittedTransform`.

The Spark adapter computes the statistics (value counts, per-fold click tallies, quantiles) with Spark
aggregations and hands them here as small pandas frames; tests hand them in by hand.
"""
from __future__ import annotations

from typing import Mapping, Optional, Sequence

import numpy as np
import pandas as pd

from .spec import FeatureSpec
from .state import FittedTransform, Slot, Totals

NUMERIC_NAMES = {"raw": "{c}", "log1p": "{c}:log1p", "quantile": "{c}:q{b}"}


def quantile_probabilities(buckets: int) -> list[float]:
    """Cut points of ``buckets`` equal-frequency buckets: 1/b, 2/b, ..., (b-1)/b."""
    return [i / buckets for i in range(1, buckets)]


def vocabulary(tally: pd.DataFrame, min_count: int) -> pd.Index:
    """Values with at least ``min_count`` rows, most frequent first (ties by value): a stable order."""
    kept = tally[tally["n"] >= min_count]
    kept = kept.sort_values(["n", "value"], ascending=[False, True], kind="mergesort")
    return pd.Index(kept["value"].astype(object).to_numpy())


def target_table(tally: pd.DataFrame, folds: int) -> pd.DataFrame:
    """Per value: n, clicks overall and n<f>, c<f> per fold, from rows of (value, fold, n, clicks)."""
    wide = tally.pivot_table(index="value", columns="fold", values=["n", "clicks"], aggfunc="sum", fill_value=0)
    out = pd.DataFrame(index=wide.index)
    for f in range(folds):
        out[f"n{f}"] = wide["n"][f].astype(np.int64) if f in wide["n"].columns else 0
        out[f"c{f}"] = wide["clicks"][f].astype(np.int64) if f in wide["clicks"].columns else 0
    out.insert(0, "clicks", sum(out[f"c{f}"] for f in range(folds)))
    out.insert(0, "n", sum(out[f"n{f}"] for f in range(folds)))
    out.index = pd.Index(out.index.astype(object), name=None)
    return out


def build_transform(spec: FeatureSpec, totals: Totals, quantiles: Mapping[str, Sequence[float]],
                    tallies: Mapping[str, pd.DataFrame], fold_tallies: Mapping[str, pd.DataFrame],
                    meta: Mapping[str, object] | None = None) -> FittedTransform:
    """Lay out the vector and fit every table.

    ``tallies[column]``: rows (value, n) of the train split for vocabulary and count columns (vocabulary
    columns may be pre-filtered to n >= min_count). ``fold_tallies[column]``: rows (value, fold, n,
    clicks) for target-encoded columns. ``quantiles[column]``: train quantiles at
    :func:`quantile_probabilities` for quantile columns.
    """
    slots: list[Slot] = []

    def slot(name: str, kind: str, source: str) -> None:
        slots.append(Slot(len(slots), name, kind, source))

    bounds: dict[str, list[float]] = {}
    for col, transform in spec.numeric:
        if transform == "quantile":
            bounds[col] = sorted(set(float(q) for q in quantiles.get(col, []) if q is not None and np.isfinite(q)))
        slot(NUMERIC_NAMES[transform].format(c=col, b=spec.quantile_buckets), f"numeric:{transform}", col)
    for feat in spec.time_features:
        slot(f"{feat}({spec.time})", f"time:{feat}", spec.time)
    for col in spec.counts:
        slot(f"count({col})", "count", col)
    for col in spec.target_encoding:
        slot(f"ctr({col})", "ctr", col)
    width = len(slots)
    offsets, vocab = {}, {}
    for col in spec.columns_of("vocab"):
        vocab[col] = vocabulary(tallies[col], spec.min_count)
        offsets[col] = width
        width += len(vocab[col]) + 1
    hash_offset = cross_offset = None
    if spec.columns_of("hash"):
        hash_offset, width = width, width + spec.hash_buckets
    if spec.crosses:
        cross_offset, width = width, width + spec.cross_buckets
    counts = {}
    for col in spec.counts:
        t = tallies[col]
        counts[col] = pd.Series(t["n"].to_numpy(np.int64), index=pd.Index(t["value"].astype(object).to_numpy()))
    target = {col: target_table(fold_tallies[col], spec.folds) for col in spec.target_encoding}
    return FittedTransform(spec=spec, width=width, slots=slots, totals=totals, quantiles=bounds,
                           vocab_offsets=offsets, vocab=vocab, counts=counts, target=target,
                           hash_offset=hash_offset, cross_offset=cross_offset, meta=dict(meta or {}))


def assemble(spec: FeatureSpec, totals: Totals, numeric_stats: Mapping[str, tuple], quantiles: Mapping[str, Sequence],
             tallies: Mapping[str, pd.DataFrame], fold_tallies: Mapping[str, pd.DataFrame],
             cat_stats: Mapping[str, tuple], buckets: Optional[pd.DataFrame], meta: Mapping[str, object]):
    """(transform, summary, feature map) from what an engine measured on train.

    ``numeric_stats[column]``: (non-missing rows, distinct values, {probability: quantile}) of each numeric
    column and the time column; ``cat_stats[column]``: (non-missing rows, distinct values, top (value, n,
    clicks)) of each categorical column; ``buckets``: see :func:`.featuremap.feature_map`; the rest: see
    :func:`build_transform`."""
    from .featuremap import check_map, feature_map
    from .summary import column_summary, group_widths

    t = build_transform(spec, totals, quantiles, tallies, fold_tallies, meta=meta)
    fmap = feature_map(t, buckets)
    check_map(fmap, t.width)
    columns = [column_summary(c, "numeric", totals.rows, *numeric_stats[c][:2], quantiles=numeric_stats[c][2])
               for c in spec.raw_numeric]
    if spec.time:
        columns.append(column_summary(spec.time, "time", totals.rows, *numeric_stats[spec.time][:2],
                                      quantiles=numeric_stats[spec.time][2]))
    columns += [column_summary(c, "categorical", totals.rows, *cat_stats[c]) for c in spec.raw_categorical]
    summary = {"rows": totals.rows, "clicks": totals.clicks, "ctr": totals.ctr, "columns": columns,
               "groups": group_widths(t), "width": t.width}
    return t, summary, fmap
