"""Pure feature planning: which columns go where in the vector (no Spark here)."""
from __future__ import annotations

from dataclasses import dataclass

from ctr_pipeline.config import resolved_columns
from ctr_pipeline.schema import Config

NUMERIC_BLOCK = "_numeric"
CATEGORICAL_BLOCK = "_categorical"


@dataclass(frozen=True)
class FeaturePlan:
    """Numeric columns pass through (missing -> NaN, which XGBoost treats as missing) at indices
    0..len(numeric)-1; categorical columns follow, hashed or one-hot indexed. ``passthrough`` means the
    input already is a vector (libsvm)."""

    numeric: tuple[str, ...]
    categorical: tuple[str, ...]
    encoding: str
    hash_buckets: int
    passthrough: bool = False

    def blocks(self) -> list[str]:
        return ([NUMERIC_BLOCK] if self.numeric else []) + ([CATEGORICAL_BLOCK] if self.categorical else [])


def plan_features(cfg: Config) -> FeaturePlan:
    numeric, categorical = resolved_columns(cfg)
    if cfg.input.format == "libsvm":
        return FeaturePlan((), (), cfg.features.categorical_encoding, cfg.features.hash_buckets, passthrough=True)
    return FeaturePlan(tuple(numeric), tuple(categorical), cfg.features.categorical_encoding,
                       cfg.features.hash_buckets)
