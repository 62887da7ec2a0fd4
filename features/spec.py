"""The feature specification: what becomes of each raw column, resolved from the config (pure).

The config has already been validated (:func:`ctr_pipeline.config.build_config` checks every column
the features section names); this module only resolves defaults and per-column overrides into one
frozen, hashable description that the fitted transform carries along.
"""
from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, dataclass
from typing import Any, Optional

from ctr_pipeline.config import resolved_columns
from ctr_pipeline.schema import Config


@dataclass(frozen=True)
class FeatureSpec:
    """``numeric``/``categorical`` pair each used column with its transform/encoding (none dropped).

    ``raw_numeric``/``raw_categorical`` list every column of the input (for the summary), ``crosses``
    hold column tuples. ``passthrough`` is the libsvm case: the input already is a vector.
    """

    numeric: tuple[tuple[str, str], ...] = ()
    categorical: tuple[tuple[str, str], ...] = ()
    raw_numeric: tuple[str, ...] = ()
    raw_categorical: tuple[str, ...] = ()
    counts: tuple[str, ...] = ()
    target_encoding: tuple[str, ...] = ()
    crosses: tuple[tuple[str, ...], ...] = ()
    time: Optional[str] = None
    time_features: tuple[str, ...] = ()
    weight: Optional[str] = None
    quantile_buckets: int = 32
    min_count: int = 5
    hash_buckets: int = 1 << 18
    cross_buckets: int = 1 << 16
    smoothing: float = 20.0
    folds: int = 5
    seed: int = 17
    top_values: int = 10
    passthrough: bool = False

    def to_dict(self) -> dict[str, Any]:
        return json.loads(json.dumps(asdict(self)))

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "FeatureSpec":
        nested = {"numeric", "categorical", "crosses"}
        return cls(**{k: (tuple(tuple(x) for x in v) if k in nested else tuple(v) if isinstance(v, list) else v)
                      for k, v in data.items()})

    def digest(self) -> str:
        """A short stable hash of the whole specification (stored with the fitted transform)."""
        return hashlib.sha256(json.dumps(self.to_dict(), sort_keys=True).encode()).hexdigest()[:16]

    def columns_of(self, encoding: str) -> tuple[str, ...]:
        return tuple(c for c, e in self.categorical if e == encoding)

    def numeric_of(self, transform: str) -> tuple[str, ...]:
        return tuple(c for c, t in self.numeric if t == transform)

    @property
    def cross_names(self) -> tuple[str, ...]:
        return tuple(cross_name(c) for c in self.crosses)

    def input_columns(self) -> list[str]:
        """Raw columns the transform reads (besides row_id and label)."""
        used = [c for c, _ in self.numeric] + [c for c, _ in self.categorical]
        used += [*self.counts, *self.target_encoding, *(c for cross in self.crosses for c in cross)]
        if self.time and self.time_features:
            used.append(self.time)
        if self.weight:
            used.append(self.weight)
        return list(dict.fromkeys(used))

    def is_empty(self) -> bool:
        return not (self.numeric or self.categorical or self.counts or self.target_encoding or self.crosses
                    or (self.time and self.time_features))


def cross_name(columns: tuple[str, ...]) -> str:
    return "*".join(columns)


def resolve_spec(cfg: Config) -> FeatureSpec:
    f = cfg.features
    if cfg.input.format == "libsvm":
        return FeatureSpec(passthrough=True)
    numeric, categorical = resolved_columns(cfg)
    raw_numeric = tuple(c for c in numeric if c != f.weight)
    num = tuple((c, f.columns.get(c, f.numeric_transform)) for c in raw_numeric)
    cat = tuple((c, f.columns.get(c, f.categorical_encoding)) for c in categorical)
    return FeatureSpec(
        numeric=tuple(p for p in num if p[1] != "none"),
        categorical=tuple(p for p in cat if p[1] != "none"),
        raw_numeric=raw_numeric, raw_categorical=tuple(categorical),
        counts=f.counts, target_encoding=f.target_encoding,
        crosses=tuple(tuple(p.strip() for p in c.split("*")) for c in f.crosses),
        time=cfg.input.time, time_features=f.time_features if cfg.input.time else (),
        weight=f.weight, quantile_buckets=f.quantile_buckets, min_count=f.min_count,
        hash_buckets=f.hash_buckets, cross_buckets=f.cross_buckets, smoothing=f.smoothing, folds=f.folds,
        seed=f.seed, top_values=f.top_values)
