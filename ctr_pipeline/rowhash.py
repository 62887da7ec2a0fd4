"""Stable row hashing, pure: every row's 64-bit key is a deterministic function of (seed, row_id).

The keys are SplitMix64 of the row id salted by the seed, as signed 64-bit integers (unsigned key - 2**63)
so that Spark's signed longs and Python ints order them the same way; for distinct row ids they are
uniform over the key range. The sampler (ScalableSRS, :mod:`sampling.srs`) draws its sets from them,
and every stage that needs a share of rows chosen the same way on any rerun, retry or partitioning uses
them too: target-encoding folds, cross-validation folds, exact capped samples, the rows a gbdt_lr
model holds out of its trees. The Spark side is :mod:`ctr_pipeline.rowsample`.
"""
from __future__ import annotations

import numpy as np

MASK = (1 << 64) - 1
SIGN = 1 << 63
GOLDEN = 0x9E3779B97F4A7C15
MIX1 = 0xBF58476D1CE4E5B9
MIX2 = 0x94D049BB133111EB
MIN_KEY, MAX_KEY = -SIGN, SIGN - 1          # signed key range
MAX_ROW_ID = (1 << 63) - 1


def mix64(x: int) -> int:
    """SplitMix64's finalizer on an unsigned 64-bit integer (a bijection with good avalanche)."""
    z = (x + GOLDEN) & MASK
    z = ((z ^ (z >> 30)) * MIX1) & MASK
    z = ((z ^ (z >> 27)) * MIX2) & MASK
    return z ^ (z >> 31)


def seed_salt(seed: int) -> int:
    return mix64(seed & MASK)


def key(seed: int, row_id: int) -> int:
    """Signed 64-bit sampling key of a row; uniform over the key range for distinct row ids."""
    return mix64((row_id & MASK) ^ seed_salt(seed)) - SIGN


def mix64_array(x: np.ndarray) -> np.ndarray:
    """Vectorised :func:`mix64` (uint64 in, uint64 out)."""
    with np.errstate(over="ignore"):
        z = x + np.uint64(GOLDEN)
        z = (z ^ (z >> np.uint64(30))) * np.uint64(MIX1)
        z = (z ^ (z >> np.uint64(27))) * np.uint64(MIX2)
    return z ^ (z >> np.uint64(31))


def keys(seed: int, row_ids: np.ndarray) -> np.ndarray:
    """Vectorised :func:`key` (int64 in, int64 out); equal to it element by element."""
    z = mix64_array(row_ids.astype(np.int64).view(np.uint64) ^ np.uint64(seed_salt(seed)))
    return (z ^ np.uint64(SIGN)).view(np.int64)


def share_bound(share: float) -> int:
    """The key below which a share ``share`` (0..1) of rows falls."""
    return int(-2 ** 63 + share * 2 ** 64)
