"""ScalableSRS (X. Meng, "Scalable Simple Random Sampling and Stratified Sampling", ICML 2013), pure.

Every row gets a 64-bit key, a deterministic function of (seed, row_id), so reruns, task retries and any
partitioning give the same sample. Sets are consecutive intervals of key order: with cumulative sizes
K_1 < K_2 < ... the first set is the K_1 smallest keys, the second the next K_2 - K_1, and so on. For
each cut K_j Meng's thresholds give an interval [lo_j, hi_j) of keys that holds the K_j-th smallest key
with probability >= 1 - 2*delta; keys below the first interval are accepted, keys above the last
rejected, keys inside an interval waitlisted. One pass counts rows per region and collects the
waitlisted (key, row_id) pairs (O(sqrt(k)) of them); :func:`resolve` then finds each cut exactly, or
reports that it fell outside its interval so that the caller retries with :func:`derived_seed`.

Keys are handled as *signed* 64-bit integers (unsigned key - 2**63) so that Spark's signed longs and
Python ints order them the same way. Nothing here imports Spark or mrjob.
"""
from __future__ import annotations

import bisect
import math
from dataclasses import dataclass
from typing import Iterable, Mapping, Optional, Sequence

import numpy as np

# the rows' keys (re-exported: a row's key is part of this module's API)
from ctr_pipeline.rowhash import MASK, MAX_KEY, MAX_ROW_ID, MIN_KEY, SIGN, key, keys, mix64, mix64_array  # noqa: F401


def derived_seed(seed: int, attempt: int) -> int:
    """The seed of retry ``attempt`` (1, 2, ...): deterministic, so a rerun retries the same way."""
    return mix64(seed ^ mix64(attempt)) & ((1 << 62) - 1)


def thresholds(k: int, n: int, delta: float) -> tuple[float, float]:
    """(q_low, q_high) of Meng's Theorem for an exact sample of k out of n, failure prob <= 2*delta."""
    if n <= 0 or not 0 <= k <= n:
        raise ValueError(f"need 0 <= k <= n and n > 0, got k={k}, n={n}")
    if k == 0:
        return 0.0, 0.0
    if k == n:
        return 1.0, 1.0
    p = k / n
    g1 = -math.log(delta) / n
    g2 = -2.0 * math.log(delta) / (3.0 * n)
    q_high = min(1.0, p + g1 + math.sqrt(g1 * g1 + 2.0 * g1 * p))
    q_low = max(0.0, p + g2 - math.sqrt(g2 * g2 + 3.0 * g2 * p))
    return q_low, q_high


def _to_key(q: float) -> int:
    """The signed key at quantile q in [0, 1] (q = 1 maps past the largest key)."""
    return min(int(q * (1 << 64)), 1 << 64) - SIGN


@dataclass(frozen=True)
class StratumPlan:
    """Cuts and regions for one stratum. ``boundaries`` split the key range into regions: region r holds
    keys with ``bisect_right(boundaries, key) == r``; odd regions are waitlists, even ones certain."""

    stratum: Optional[str]
    n: int
    sets: tuple[str, ...]            # sets with a positive target, in key order
    targets: tuple[int, ...]         # rows wanted per set
    boundaries: tuple[int, ...]
    reach: int = MAX_KEY + 1         # rows with keys >= reach can never be sampled (q_high of the last cut)

    @property
    def cumulative(self) -> list[int]:
        out, total = [], 0
        for k in self.targets:
            total += k
            out.append(total)
        return out

    def region(self, k: int) -> int:
        return bisect.bisect_right(self.boundaries, k)

    @staticmethod
    def is_waitlist(region: int) -> bool:
        return region % 2 == 1


def plan_stratum(stratum: Optional[str], n: int, targets: Mapping[str, int], delta: float) -> StratumPlan:
    """Regions for drawing ``targets`` (set -> rows, in key order) out of ``n`` rows."""
    sets = tuple(name for name, k in targets.items() if k > 0)
    ks = tuple(targets[name] for name in sets)
    if sum(ks) > n:
        raise ValueError(f"targets {dict(targets)} exceed the {n} rows of stratum {stratum!r}")
    intervals = []
    total = 0
    for k in ks:
        total += k
        lo, hi = (_to_key(q) for q in thresholds(total, n, delta))
        if hi > lo:
            intervals.append([lo, hi])
    merged: list[list[int]] = []
    for lo, hi in sorted(intervals):
        if merged and lo <= merged[-1][1]:
            merged[-1][1] = max(merged[-1][1], hi)
        else:
            merged.append([lo, hi])
    boundaries = tuple(b for pair in merged for b in pair)
    reach = _to_key(thresholds(total, n, delta)[1]) if ks else MIN_KEY
    return StratumPlan(stratum, n, sets, ks, boundaries, reach)


@dataclass
class Drawn:
    """What a draw used and found, for the sample report (the Spark and the driver engine)."""

    plans: dict
    targets: dict
    counts: dict
    seed: int                        # the seed whose keys made the sample (a derived one after a retry)
    attempts: int
    waitlists: dict                  # waitlisted rows per stratum


class ShortWaitlist(Exception):
    """A cut fell outside its waitlist interval (probability <= 2*delta): retry with a derived seed."""


def resolve(plan: StratumPlan, region_counts: Mapping[int, int],
            waitlist: Iterable[tuple[int, int]]) -> list[tuple[int, int]]:
    """Exact cuts: per set, the largest (key, row_id) that belongs to it or to an earlier set.

    ``region_counts`` maps region -> rows; the last region (keys above every waitlist: rejected rows)
    may be left out, its count is what ``plan.n`` leaves. ``waitlist`` holds the (key, row_id) of every
    row in a waitlist region. A row belongs to the first set j with (key, row_id) <= cut_j, or to none.
    Raises ShortWaitlist when a cut falls inside a certain region, ValueError on inconsistent input.
    """
    last = len(plan.boundaries)
    region_counts = dict(region_counts)
    counted = sum(n for r, n in region_counts.items() if r != last)
    if last not in region_counts:
        region_counts[last] = plan.n - counted
    if counted + region_counts[last] != plan.n or region_counts[last] < 0:
        raise ValueError(f"stratum {plan.stratum!r}: regions hold {counted + region_counts[last]} rows, "
                         f"expected {plan.n}")
    by_region: dict[int, list[tuple[int, int]]] = {}
    for item in waitlist:
        by_region.setdefault(plan.region(item[0]), []).append(item)
    for r in by_region:
        by_region[r].sort()
        if len(by_region[r]) != region_counts.get(r, 0):
            raise ValueError(f"stratum {plan.stratum!r}: waitlist region {r} has {len(by_region[r])} items but "
                             f"{region_counts.get(r, 0)} rows")
    cuts = []
    for name, target in zip(plan.sets, plan.cumulative):
        below = 0
        for r in range(len(plan.boundaries) + 1):
            count = region_counts.get(r, 0)
            if target <= below + count:
                if plan.is_waitlist(r):
                    cuts.append(by_region[r][target - below - 1] if target > below else _end_of(plan, r - 1))
                elif target == below + count:
                    cuts.append(_end_of(plan, r))
                elif target == below:
                    cuts.append(_end_of(plan, r - 1))
                else:
                    raise ShortWaitlist(f"stratum {plan.stratum!r}: the cut after set {name!r} "
                                        f"(row {target} of {plan.n}) fell outside its waitlist")
                break
            below += count
    return cuts


def _end_of(plan: StratumPlan, region: int) -> tuple[int, int]:
    """A cut just after every key of ``region`` (region -1 means before all keys)."""
    if region < 0:
        return (MIN_KEY - 1, MAX_ROW_ID)
    if region >= len(plan.boundaries):
        return (MAX_KEY, MAX_ROW_ID)
    return (plan.boundaries[region] - 1, MAX_ROW_ID)


def assign(cuts: Sequence[tuple[int, int]], sets: Sequence[str], k: int, row_id: int) -> Optional[str]:
    """The set a row belongs to under ``cuts``, or None."""
    item = (k, row_id)
    for name, cut in zip(sets, cuts):
        if item <= cut:
            return name
    return None


# ------------------------------------------------------------------------------------------ sizes

def allocate(total: int, weights: Mapping[str, int]) -> dict[str, int]:
    """Split ``total`` over strata in proportion to ``weights`` (largest remainder; exact sum)."""
    size = sum(weights.values())
    if size == 0:
        return {s: 0 for s in weights}
    raw = {s: total * w / size for s, w in weights.items()}
    out = {s: int(math.floor(v)) for s, v in raw.items()}
    left = total - sum(out.values())
    for s in sorted(raw, key=lambda s: (-(raw[s] - out[s]), str(s)))[:left]:
        out[s] += 1
    return out


def resolve_size(size: float | int, n: int) -> int:
    """A set size as rows: an int is a row count, a float a fraction of ``n`` (1.0 means all rows)."""
    if isinstance(size, bool):
        raise ValueError("a size must be a number")
    if isinstance(size, int):
        return size
    return int(math.floor(size * n + 0.5))


def digest(row_ids: Iterable[int]) -> str:
    """Order-independent digest of a set of row ids: count and sum of mixed ids, mod 2**64."""
    count, total = 0, 0
    for rid in row_ids:
        count += 1
        total = (total + mix64(rid & MASK)) & MASK
    return f"{count:x}-{total:016x}"


def digest_array(row_ids: np.ndarray) -> str:
    """:func:`digest` of an int64 array of row ids, vectorised (uint64 sums wrap mod 2**64)."""
    mixed = mix64_array(np.asarray(row_ids, dtype=np.int64).view(np.uint64))
    return f"{len(mixed):x}-{int(mixed.sum(dtype=np.uint64)):016x}"


def digest_count(digest_text: str) -> int:
    """The number of row ids a digest covers."""
    return int(digest_text.split("-")[0], 16)


def combine_digests(parts: Iterable[str]) -> str:
    """Digest of the union of disjoint parts (e.g. per partition)."""
    count, total = 0, 0
    for part in parts:
        c, t = part.split("-")
        count += int(c, 16)
        total = (total + int(t, 16)) & MASK
    return f"{count:x}-{total:016x}"


# ------------------------------------------------------------------------------------------ driver

def region_summary(plan: StratumPlan, seed: int, row_ids: Iterable[int]) -> tuple[dict[int, int], list]:
    """One pass over a stratum's rows: rows per region and the waitlisted (key, row_id) pairs."""
    counts: dict[int, int] = {}
    waitlist = []
    for rid in row_ids:
        k = key(seed, rid)
        r = plan.region(k)
        counts[r] = counts.get(r, 0) + 1
        if plan.is_waitlist(r):
            waitlist.append((k, rid))
    return counts, waitlist


def draw_in_memory(strata: Mapping[Optional[str], Sequence[int]], targets: Mapping[Optional[str], Mapping[str, int]],
                   seed: int, delta: float, max_attempts: int = 5) -> tuple[dict[str, list[int]], int, int]:
    """Reference driver on in-memory row ids: (set -> row ids, seed used, attempts).

    The Spark and mrjob adapters do the same steps distributed; tests compare them with this.
    """
    plans = {s: plan_stratum(s, len(ids), targets[s], delta) for s, ids in strata.items()}
    for attempt in range(max_attempts):
        used = seed if attempt == 0 else derived_seed(seed, attempt)
        try:
            cuts = {s: resolve(p, *region_summary(p, used, strata[s])) for s, p in plans.items()}
        except ShortWaitlist:
            continue
        out: dict[str, list[int]] = {}
        for s, ids in strata.items():
            for rid in ids:
                name = assign(cuts[s], plans[s].sets, key(used, rid), rid)
                if name is not None:
                    out.setdefault(name, []).append(rid)
        return out, used, attempt + 1
    raise ShortWaitlist(f"no exact sample after {max_attempts} attempts (delta {delta} is too large?)")
