"""Feature summary statistics, pure: assemble what the Spark job measured and print it as a table.

Per raw column: coverage (non-missing share of train rows), cardinality, top values with count and
observed CTR (categorical), quantiles (numeric). Per output group: its width in the vector.
"""
from __future__ import annotations

from typing import Any, Mapping, Sequence

import pandas as pd

from .state import FittedTransform

SUMMARY_QUANTILES = (0.0, 0.01, 0.25, 0.5, 0.75, 0.99, 1.0)


def group_widths(t: FittedTransform) -> list[dict[str, Any]]:
    """Width of every output group, in vector order."""
    groups: dict[str, int] = {}
    for s in t.slots:
        key = s.kind.split(":")[0]
        groups[key] = groups.get(key, 0) + 1
    for col, vocab in t.vocab.items():
        groups[f"vocab:{col}"] = len(vocab) + 1
    if t.hash_offset is not None:
        groups["hash"] = t.spec.hash_buckets
    if t.cross_offset is not None:
        groups["cross"] = t.spec.cross_buckets
    return [{"group": g, "width": w} for g, w in groups.items()]


def column_summary(column: str, kind: str, rows: int, non_missing: int, cardinality: int,
                   top: Sequence[tuple[Any, int, int]] = (), quantiles: Mapping[float, float] | None = None
                   ) -> dict[str, Any]:
    """One raw column's entry; ``top`` holds (value, count, clicks)."""
    out: dict[str, Any] = {"column": column, "kind": kind, "coverage": non_missing / rows if rows else 0.0,
                           "non_missing": non_missing, "cardinality": cardinality}
    if kind == "categorical":
        out["top"] = [{"value": v, "count": int(n), "ctr": c / n if n else 0.0} for v, n, c in top]
    if quantiles is not None:
        out["quantiles"] = {f"p{round(p * 100):02d}": q for p, q in quantiles.items()}
    return out


def summary_table(summary: Mapping[str, Any]) -> str:
    """The summary as a fixed-width text table (printed by the CLI)."""
    lines = []
    cols = pd.DataFrame([{
        "column": c["column"], "kind": c["kind"], "coverage": f"{c['coverage']:.1%}",
        "distinct": f"{c['cardinality']:,}",
        "top / quantiles": (", ".join(f"{t['value']} ({t['count']:,}, ctr {t['ctr']:.3f})" for t in c["top"][:2])
                            if c["kind"] == "categorical" else
                            " ".join(f"{k}={v:.4g}" for k, v in c.get("quantiles", {}).items()
                                     if k in ("p01", "p50", "p99") and v is not None)),
    } for c in summary["columns"]])
    if len(cols):
        lines.append(cols.to_string(index=False, max_colwidth=70))
    lines.append("groups: " + ", ".join(f"{g['group']} {g['width']:,}" for g in summary["groups"])
                 + f"; vector width {summary['width']:,}")
    return "\n".join(lines)
