"""Pure split planning: which sets to draw and with what weights (no Spark here)."""
from __future__ import annotations

from ctr_pipeline.errors import InputDataError
from ctr_pipeline.schema import SamplingConfig

REST = "_rest"  # rows in no split when the shares sum to less than 1


def split_plan(cfg: SamplingConfig) -> list[tuple[str, float]]:
    """(name, share) of each set to draw, in order; a trailing REST share takes what is left over."""
    plan = [(name, share) for name, share in
            (("train", cfg.train), ("validation", cfg.validation), ("test", cfg.test)) if share > 0]
    rest = 1.0 - sum(share for _, share in plan)
    if rest > 1e-9:
        plan.append((REST, rest))
    return plan


def check_split_rows(rows: dict[str, int], total: int) -> None:
    """Every requested set must have rows: a tiny input can leave a set empty."""
    empty = [name for name, n in rows.items() if n == 0]
    if empty:
        raise InputDataError(f"split(s) {', '.join(empty)} came out empty from {total:,} input rows; use more "
                             "input rows or larger sampling shares")

