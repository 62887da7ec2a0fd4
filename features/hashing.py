"""Stable hashes the feature transform depends on (pure; the same in every process and on every host).

* :func:`bucket_of` puts ``column=value`` strings into hash buckets (the hashing trick, crosses). It is
  pandas' SipHash (``pandas.util.hash_array``) with a fixed key, vectorised; tests pin known values so
  a library change that moved buckets would fail loudly instead of silently changing saved models.
* :func:`fold_of` assigns a row to a fold from its ``row_id`` with the rows' SplitMix64 key (the sampler's), the
  same function the Spark side computes natively (``ctr_pipeline.rowsample.key_column``).
"""
from __future__ import annotations

import numpy as np
import pandas as pd

from ctr_pipeline.rowhash import keys

HASH_KEY = "ctr-pipeline-v1!"  # 16 characters, as pandas requires
NULL_HASH = np.uint64(np.iinfo(np.uint64).max)
CROSS_SEP = "\x01"


def hash_strings(texts: np.ndarray) -> np.ndarray:
    """uint64 SipHash of each string of an object array."""
    return pd.util.hash_array(np.asarray(texts, dtype=object), hash_key=HASH_KEY, categorize=True)


def bucket_of(prefix: str, values: pd.Series, buckets: int) -> np.ndarray:
    """Bucket (0..buckets-1) of ``prefix + NUL + value`` for each value; -1 where the value is missing."""
    missing = values.isna().to_numpy()
    texts = (prefix + "\x00" + values.astype(object).where(~missing, "").astype(str)).to_numpy(dtype=object)
    out = (hash_strings(texts) % np.uint64(buckets)).astype(np.int64)
    out[missing] = -1
    return out


def cross_values(frame: pd.DataFrame, columns: tuple[str, ...]) -> pd.Series:
    """The crossed value of each row (values joined by U+0001), missing when any part is missing."""
    parts = [frame[c] for c in columns]
    missing = np.zeros(len(frame), dtype=bool)
    for p in parts:
        missing |= p.isna().to_numpy()
    joined = parts[0].astype(object).where(~missing, "").astype(str)
    for p in parts[1:]:
        joined = joined + CROSS_SEP + p.astype(object).where(~missing, "").astype(str)
    return joined.where(~missing, None)


def fold_of(row_ids: np.ndarray, folds: int, seed: int) -> np.ndarray:
    """Fold (0..folds-1) of each row id: reproducible, independent of partitioning and row order."""
    return np.mod(keys(seed, np.asarray(row_ids, dtype=np.int64)), folds)
