"""XGBoost boosters loaded once per Python process (a Spark worker scores many batches), by the digest of
their bytes. Pure: xgboost only."""
from __future__ import annotations

import hashlib
from typing import Any, Optional

_LOADED: dict[str, Any] = {}
_NARROWED: dict[str, Any] = {}


def digest(raw: bytes) -> str:
    return hashlib.sha256(raw).hexdigest()


def _cached(cache: dict, key: str, raw: bytes, threads: Optional[int], keep: int, make):
    if key not in cache:
        import xgboost

        booster = xgboost.Booster()
        booster.load_model(bytearray(raw))
        if threads:
            booster.set_param({"nthread": threads})
        while len(cache) >= keep:
            cache.pop(next(iter(cache)))
        cache[key] = make(booster)
    return cache[key]


def loaded(key: str, raw: bytes, threads: Optional[int] = None, keep: int = 1):
    """The booster of ``raw`` (by its digest ``key``), loaded once; at most ``keep`` are kept. ``threads``
    sets its nthread when it is loaded."""
    return _cached(_LOADED, key, raw, threads, keep, lambda booster: booster)


def narrowed(key: str, raw: bytes, threads: Optional[int] = None, keep: int = 1):
    """The booster of ``raw`` narrowed to the columns its trees split on (:mod:`ctr_pipeline.narrow`: the
    same predictions at a fraction of the cost on wide rows), built once; at most ``keep`` are kept."""
    from ctr_pipeline.narrow import narrow

    return _cached(_NARROWED, key, raw, threads, keep, narrow)
