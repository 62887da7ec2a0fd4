"""Seeded generator of click logs in the Criteo DAC layout (label, I1-I13, C1-C26, tab-separated).

The structure imitates the real Criteo data: Zipf-distributed categoricals with up to 10^5 values per
field, fields with many missing values, heavy-tailed integer counts, a positive rate near 4%, and a
label that depends nonlinearly on several fields plus one pairwise interaction (C5 x C7). Pure numpy;
the output depends only on (rows, seed, day, drift).

Daily windows for the refresh job: ``day`` d > 0 draws other rows, and with ``drift`` the click model
moves linearly with the day (per-value effects along a fixed random direction, the log-odds intercept
up by ``0.2 * drift * d``), so a model trained on day 1 is stale on day 3.
"""
from __future__ import annotations

import gzip
import io
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Optional

import numpy as np

# Per-field cardinality (capped at 1e5) and missing share, shaped after Criteo DAC's day 0.
CAT_CARDINALITY = (1460, 583, 100_000, 100_000, 305, 24, 12_517, 633, 3, 93_145, 5_683, 100_000, 3_194,
                   27, 14_992, 100_000, 10, 5_652, 2_173, 4, 100_000, 18, 15, 100_000, 105, 100_000)
CAT_MISSING = (0.0, 0.0, 0.03, 0.03, 0.0, 0.12, 0.0, 0.0, 0.0, 0.0, 0.0, 0.03, 0.0, 0.0, 0.0, 0.03, 0.0,
               0.0, 0.44, 0.44, 0.03, 0.0, 0.0, 0.03, 0.44, 0.44)
NUM_MISSING = (0.45, 0.0, 0.21, 0.22, 0.03, 0.22, 0.04, 0.0, 0.04, 0.45, 0.04, 0.77, 0.22)
NUM_SCALE = (3.0, 100.0, 20.0, 7.0, 18_000.0, 110.0, 16.0, 12.0, 100.0, 0.6, 3.0, 2.0, 8.0)
TARGET_RATE = 0.04
CHUNK_ROWS = 200_000


@dataclass(frozen=True)
class _World:
    """Everything shared by all rows for one seed: vocabularies, Zipf tables and per-value effects."""

    vocab: list[np.ndarray]
    cdf: list[np.ndarray]
    effects: dict[int, np.ndarray]
    pair_effect: np.ndarray
    intercept: float


def _zipf_cdf(n: int, exponent: float) -> np.ndarray:
    weights = 1.0 / np.arange(1, n + 1, dtype=np.float64) ** exponent
    cdf = np.cumsum(weights)
    return cdf / cdf[-1]


def _vocab(rng: np.random.Generator, n: int) -> np.ndarray:
    ids = rng.choice(np.iinfo(np.uint32).max, size=n, replace=False).astype(np.uint32)
    return np.char.mod("%08x", ids).astype(object)


def _draw_ranks(rng: np.random.Generator, cdf: np.ndarray, rows: int) -> np.ndarray:
    return np.minimum(np.searchsorted(cdf, rng.random(rows)), len(cdf) - 1)


def _logit_parts(world: _World, ranks: list[np.ndarray], missing_cat: list[np.ndarray],
                 nums: list[np.ndarray]) -> np.ndarray:
    """Label log-odds before the intercept: nonlinear numeric effects, per-value effects, one interaction."""
    i1, i3, i5 = nums[0], nums[2], nums[4]
    z = 0.9 * np.tanh(np.log1p(np.nan_to_num(i1, nan=0.0)) - 1.0)
    z += np.where(np.isnan(i1), -0.35, 0.0)
    z += np.where(np.log1p(np.nan_to_num(i5, nan=0.0)) > 9.0, 0.6, -0.1)
    z -= 0.25 * np.square(np.log1p(np.nan_to_num(i3, nan=1.0)) - 2.0) / 4.0
    for field, table in world.effects.items():
        z += np.where(missing_cat[field], 0.0, table[ranks[field]])
    c5, c7 = ranks[4], ranks[6]
    z += world.pair_effect[(c5 % 16) * 16 + (c7 % 16)]
    return z


def _make_world(seed: int) -> _World:
    rng = np.random.default_rng([seed, 0])
    vocab = [_vocab(rng, n) for n in CAT_CARDINALITY]
    cdf = [_zipf_cdf(n, 1.05 + 0.3 * rng.random()) for n in CAT_CARDINALITY]
    effects = {f: rng.normal(0.0, s, CAT_CARDINALITY[f]) for f, s in ((0, 0.5), (1, 0.7), (5, 0.4), (13, 0.6))}
    pair = np.zeros(256)
    hot = rng.choice(256, size=24, replace=False)
    pair[hot] = rng.normal(1.2, 0.3, size=24)
    world = _World(vocab, cdf, effects, pair, 0.0)
    # Choose the intercept (bisection) so that a calibration draw hits the target positive rate.
    z = _logit_parts(world, *_draw_features(world, np.random.default_rng([seed, 1]), 50_000))
    lo, hi = -12.0, 4.0
    for _ in range(60):
        mid = (lo + hi) / 2
        rate = float(np.mean(1.0 / (1.0 + np.exp(-(z + mid)))))
        lo, hi = (mid, hi) if rate < TARGET_RATE else (lo, mid)
    return _World(vocab, cdf, effects, pair, (lo + hi) / 2)


def _drifted(world: _World, seed: int, day: int, drift: float) -> _World:
    """The world of day ``day``: effects moved by ``drift * day`` along one fixed direction per seed."""
    if not day or not drift:
        return world
    rng = np.random.default_rng([seed, 1_000_003])
    step = drift * day
    effects = {f: table + step * rng.normal(0.0, 0.6, len(table)) for f, table in world.effects.items()}
    pair = world.pair_effect + step * rng.normal(0.0, 0.5, len(world.pair_effect))
    return _World(world.vocab, world.cdf, effects, pair, world.intercept + 0.2 * step)


def _draw_features(world: _World, rng: np.random.Generator, rows: int):
    ranks = [_draw_ranks(rng, cdf, rows) for cdf in world.cdf]
    missing_cat = [rng.random(rows) < share for share in CAT_MISSING]
    nums = []
    for i, (share, scale) in enumerate(zip(NUM_MISSING, NUM_SCALE)):
        values = np.floor(rng.lognormal(np.log(scale), 1.3, rows))
        if i == 1:  # I2 has some -1 values in the real data
            values = np.where(rng.random(rows) < 0.05, -1.0, values)
        values[rng.random(rows) < share] = np.nan
        nums.append(values)
    return ranks, missing_cat, nums


def _format_chunk(world: _World, ranks, missing_cat, nums, labels: np.ndarray) -> str:
    cols: list[np.ndarray] = [labels.astype(np.int8).astype(str).astype(object)]
    for values in nums:
        text = np.where(np.isnan(values), 0, values).astype(np.int64).astype(str).astype(object)
        text[np.isnan(values)] = ""
        cols.append(text)
    for field in range(len(CAT_CARDINALITY)):
        text = world.vocab[field][ranks[field]]
        text[missing_cat[field]] = ""
        cols.append(text)
    buf = io.StringIO()
    for row in zip(*cols):
        buf.write("\t".join(row))
        buf.write("\n")
    return buf.getvalue()


def generate(rows: int, out: str | Path, seed: int = 7,
             progress: Optional[Callable[[int, int], None]] = None, day: int = 0, drift: float = 0.0) -> dict:
    """Write ``rows`` demo rows to ``out`` (gzip if it ends in .gz); return {rows, positives, path}.

    Deterministic per (rows, seed, day, drift): chunk c uses the random stream (seed, 2 + c) on day 0,
    (seed, day, 2 + c) on a later day.
    """
    if rows < 1:
        raise ValueError("rows must be >= 1")
    if day < 0:
        raise ValueError("day must be >= 0")
    world = _drifted(_make_world(seed), seed, day, drift)
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(out.name + ".tmp")
    opener = (lambda p: gzip.open(p, "wt", compresslevel=1, encoding="ascii")) if out.suffix == ".gz" \
        else (lambda p: open(p, "w", encoding="ascii"))
    positives = 0
    with opener(tmp) as fh:
        for chunk, start in enumerate(range(0, rows, CHUNK_ROWS)):
            n = min(CHUNK_ROWS, rows - start)
            rng = np.random.default_rng([seed, 2 + chunk] if not day else [seed, day, 2 + chunk])
            ranks, missing_cat, nums = _draw_features(world, rng, n)
            p = 1.0 / (1.0 + np.exp(-(_logit_parts(world, ranks, missing_cat, nums) + world.intercept)))
            labels = rng.random(n) < p
            positives += int(labels.sum())
            fh.write(_format_chunk(world, ranks, missing_cat, nums, labels))
            if progress:
                progress(start + n, rows)
    tmp.replace(out)
    return {"rows": rows, "positives": positives, "positive_rate": positives / rows, "path": str(out)}
