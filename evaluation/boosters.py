"""XGBoost boosters loaded once per Python process (a Spark worker scores many batches), by the digest of
their bytes. Pure: xgboost only."""
from __future__ import annotations

import hashlib
from typing import Any, Optional

_LOADED: dict[str, Any] = {}


def digest(raw: bytes) -> str:
    return hashlib.sha256(raw).hexdigest()


def loaded(key: str, raw: bytes, threads: Optional[int] = None, keep: int = 1):
    """The booster of ``raw`` (by its digest ``key``), loaded once; at most ``keep`` are kept. ``threads``
    sets its nthread when it is loaded."""
    if key not in _LOADED:
        import xgboost

        booster = xgboost.Booster()
        booster.load_model(bytearray(raw))
        if threads:
            booster.set_param({"nthread": threads})
        while len(_LOADED) >= keep:
            _LOADED.pop(next(iter(_LOADED)))
        _LOADED[key] = booster
    return _LOADED[key]
