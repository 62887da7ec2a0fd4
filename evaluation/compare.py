"""Side-by-side metrics of finished runs, pure (reads each run's evaluation/metrics.json)."""
from __future__ import annotations

import json
from pathlib import Path
from typing import Sequence

import pandas as pd

from ctr_pipeline.errors import UserError
from ctr_pipeline.runs import RunDir

from .report import labels

METRICS = ["rows", "mxe", "ne", "auc", "pr_auc", "calibration"]


def load_metrics(run: str | Path) -> dict:
    """The evaluate stage's metrics.json of a run directory (local or S3), found through its manifest."""
    path = RunDir(str(run)).path_of("evaluate") / "metrics.json"
    if not path.is_file():
        raise UserError(f"{run}: no evaluation/metrics.json; run 'ctr-pipeline evaluate --out {run}' first")
    try:
        return json.loads(path.read_text())
    except json.JSONDecodeError as exc:
        raise UserError(f"{path}: not valid JSON ({exc.msg} at line {exc.lineno})") from None


def comparison_table(runs: Sequence[str | Path]) -> pd.DataFrame:
    """One row per (run, split, model); ``mxe_vs_first`` is the relative MXE change against the first
    run's same split and model (negative: lower MXE, better)."""
    if len(runs) < 1:
        raise UserError("compare needs at least one run directory")
    rows = []
    first: dict[tuple[str, str], float] = {}
    for i, run in enumerate(runs):
        m = load_metrics(run)
        baselines = m.get("baselines", {})
        names = labels(m)
        for split, body in m.items():
            if not isinstance(body, dict) or "mxe" not in body:
                continue
            rows.append({"run": str(run), "split": split, "model": names["xgboost"],
                         **{k: body.get(k) for k in METRICS}})
            for name, per_split in baselines.items():
                if split in per_split:
                    rows.append({"run": str(run), "split": split, "model": names.get(name, name),
                                 **{k: per_split[split].get(k) for k in METRICS}})
            if i == 0:
                first.update({(r["split"], r["model"]): r["mxe"] for r in rows})
    table = pd.DataFrame(rows, columns=["run", "split", "model", *METRICS])
    ref = [first.get((s, mo)) for s, mo in zip(table["split"], table["model"])]
    table["mxe_vs_first"] = [(x - r) / r if r else None for x, r in zip(table["mxe"], ref)]
    return table


def _formatted(table: pd.DataFrame) -> pd.DataFrame:
    shown = table.copy()
    for col, fmt in (("mxe", "{:.5f}"), ("ne", "{:.4f}"), ("auc", "{:.4f}"), ("pr_auc", "{:.4f}"),
                     ("calibration", "{:.3f}"), ("mxe_vs_first", "{:+.2%}"), ("rows", "{:,.0f}")):
        shown[col] = [fmt.format(v) if v is not None and v == v else "-" for v in shown[col]]
    return shown


def format_table(table: pd.DataFrame) -> str:
    return _formatted(table).to_string(index=False)


def markdown(table: pd.DataFrame) -> str:
    shown = _formatted(table)
    lines = ["| " + " | ".join(shown.columns) + " |", "|" + "---|" * len(shown.columns)]
    lines += ["| " + " | ".join(str(v) for v in row) + " |" for row in shown.itertuples(index=False)]
    return "\n".join(lines) + "\n"
