"""Pure sampling plans: rows wanted per (stratum, set) from the config and the stratum sizes."""
from __future__ import annotations

import logging
from typing import Callable, Mapping, Optional, Sequence, TypeVar

from ctr_pipeline.errors import InputDataError
from ctr_pipeline.schema import SPLIT_NAMES, SamplingConfig

from . import srs

Stratum = Optional[str]
ALL_STRATA = "__all__"      # how reports and the mrjob job name the stratum of an unstratified sample
NULL_STRATUM = "__null__"   # the stratum of rows whose stratify column is null
MAX_ATTEMPTS = 5            # seeds tried before ScalableSRS gives up (each fails with probability <= 2*delta)
T = TypeVar("T")
log = logging.getLogger("ctr_pipeline.sampling")


def stratum_name(stratum: Stratum) -> str:
    return ALL_STRATA if stratum is None else str(stratum)
DOWNSAMPLED_SETS = ("train", "validation")  # strata_rates apply to these; test keeps the natural rates


def sampled_sets(cfg: SamplingConfig) -> tuple[str, ...]:
    """The sets ScalableSRS draws: all three, or train and validation when test is out of time."""
    return ("train", "validation") if cfg.out_of_time else SPLIT_NAMES


def requested_sizes(cfg: SamplingConfig, n: int) -> dict[str, int]:
    """Rows wanted per set out of ``n`` good rows; raises naming the sizes when they cannot be met."""
    if n <= 0:
        raise InputDataError("the input has no usable rows to sample from"
                             + (" before the out-of-time test window" if cfg.out_of_time else ""))
    sizes = {name: srs.resolve_size(getattr(cfg, name), n) for name in sampled_sets(cfg)}
    if sum(sizes.values()) > n:
        shown = ", ".join(f"{k}={getattr(cfg, k)!r} ({v:,} rows)" for k, v in sizes.items())
        raise InputDataError(f"sampling sizes {shown} add up to {sum(sizes.values()):,} rows but the input has "
                             f"only {n:,} good rows; lower sampling.train/validation/test")
    for name in (n for n in ("train", "test") if n in sizes):
        if sizes[name] == 0:
            raise InputDataError(f"sampling.{name} = {getattr(cfg, name)!r} gives 0 rows out of {n:,}; "
                                 "use more input rows or a larger size")
    return sizes


def _cumulative_allocation(sizes: dict[str, int], counts: Mapping[Stratum, int]) -> dict[Stratum, dict[str, int]]:
    """Per stratum and set, rows in proportion to stratum size, exact per-set totals, never more than a
    stratum has (allocating cumulative totals keeps each stratum's sum within its size)."""
    out: dict[Stratum, dict[str, int]] = {s: {} for s in counts}
    previous = {s: 0 for s in counts}
    running = 0
    for name, k in sizes.items():
        running += k
        cumulative = srs.allocate(running, counts)
        for s in counts:  # repair the rare non-monotone step of largest-remainder rounding
            cumulative[s] = max(cumulative[s], previous[s])
        excess = sum(cumulative.values()) - running
        for s in sorted(counts, key=lambda s: (cumulative[s] - running * counts[s] / sum(counts.values())),
                        reverse=True):
            if excess <= 0:
                break
            if cumulative[s] > previous[s]:
                cumulative[s] -= 1
                excess -= 1
        for s in counts:
            out[s][name] = cumulative[s] - previous[s]
        previous = cumulative
    return out


def plan_targets(cfg: SamplingConfig, counts: Mapping[Stratum, int]) -> dict[Stratum, dict[str, int]]:
    """Rows wanted per stratum and set. Without stratify_by there is one stratum, None."""
    sizes = requested_sizes(cfg, sum(counts.values()))
    targets = _cumulative_allocation(sizes, counts)
    unknown = sorted(set(cfg.strata_rates) - {str(s) for s in counts})
    if unknown:
        raise InputDataError(f"sampling.strata_rates names value(s) {', '.join(unknown)} that column "
                             f"{cfg.stratify_by!r} does not have (it has {', '.join(map(str, counts))})")
    for s, per_set in targets.items():
        rate = cfg.strata_rates.get(str(s), 1.0)
        for name in DOWNSAMPLED_SETS:
            if name in per_set:
                per_set[name] = int(per_set[name] * rate + 0.5)
    for name, given in cfg.strata_sizes.items():
        per_stratum = {str(k): v for k, v in given.items()}  # YAML may give 0/1 as integers
        unknown = sorted(set(map(str, per_stratum)) - {str(s) for s in counts})
        if unknown:
            raise InputDataError(f"sampling.strata_sizes[{name!r}] names value(s) {', '.join(unknown)} that column "
                                 f"{cfg.stratify_by!r} does not have (it has {', '.join(map(str, counts))})")
        for s in counts:
            if str(s) in per_stratum and name in targets[s]:
                targets[s][name] = int(per_stratum[str(s)])
    for s, per_set in targets.items():
        if sum(per_set.values()) > counts[s]:
            raise InputDataError(f"stratum {s!r} of {cfg.stratify_by!r} has {counts[s]:,} rows but the sets ask "
                                 f"for {per_set}; lower sampling.strata_sizes or the set sizes")
    return targets


def check_stratum_column(cfg, columns: Sequence[str]) -> None:
    """Stop when ``sampling.stratify_by`` names a column the input does not have (``cfg``: the whole config)."""
    column = cfg.sampling.stratify_by
    if column and column not in columns:
        raise InputDataError(f"{cfg.source_of('sampling.stratify_by')}: sampling.stratify_by column {column!r} is "
                             f"not in the input (columns: {', '.join(columns)})")


def stratum_plans(cfg: SamplingConfig, counts: Mapping[Stratum, int]) -> tuple[dict, dict[Stratum, srs.StratumPlan]]:
    """(rows wanted per stratum and set, each stratum's ScalableSRS plan)."""
    targets = plan_targets(cfg, counts)
    return targets, {s: srs.plan_stratum(s, counts[s], targets[s], cfg.delta) for s in counts}


def inclusion_rates(targets: Mapping[Stratum, Mapping[str, int]],
                    counts: Mapping[Stratum, int]) -> dict[str, dict[str, float]]:
    """Per set, the share of each stratum's rows that it holds (what evaluation needs to correct for
    negative downsampling: w = rate of negatives / rate of positives in train)."""
    out: dict[str, dict[str, float]] = {}
    for s, per_set in targets.items():
        for name, k in per_set.items():
            out.setdefault(name, {})[stratum_name(s)] = k / counts[s] if counts[s] else 0.0
    return out


def retry_warning(why: str, seed: int) -> None:
    log.warning("sample: %s (probability <= 2*delta); retrying with derived seed %d", why, seed)


def first_exact(seed: int, attempt: Callable[[int], T], warn: Callable[[str, int], None]) -> tuple[T, int, int]:
    """(``attempt(seed)``, the seed used, attempts): on :class:`srs.ShortWaitlist` the next derived seed is
    tried (``warn(why, seed)`` says so), up to MAX_ATTEMPTS seeds in all."""
    used, attempts = seed, 0
    while True:
        attempts += 1
        try:
            return attempt(used), used, attempts
        except srs.ShortWaitlist as short:
            if attempts >= MAX_ATTEMPTS:
                raise InputDataError(f"ScalableSRS found no exact sample in {attempts} attempts ({short}); "
                                     "lower sampling.delta") from None
            used = srs.derived_seed(seed, attempts)
            warn(str(short), used)
