"""The evaluation report, pure: one self-contained HTML file (images embedded), a Markdown summary and
the lines the CLI prints, from the metrics dict the stage assembles."""
from __future__ import annotations

import base64
import html
import json
from typing import Any, Mapping, Optional

TREES = "trees"   # a shipped gbdt_lr model's own trees alone, compared with it
LABELS = {"xgboost": "XGBoost (this run)", "logistic_regression": "LogisticRegression",
          "gbt": "Spark MLlib GBTClassifier", "gbdt_lr": "GBDT leaves + LR", TREES: "its trees alone (XGBoost)"}
SHIPPED = {"xgboost": ("XGBoost (this run)", "XGBoost"), "gbdt_lr": ("GBDT leaves + LR (this run)", "gbdt_lr")}


def labels(metrics: Mapping[str, Any]) -> dict[str, str]:
    """LABELS, with the name of the model the run ships (metrics["model"]) for "xgboost"."""
    return {**LABELS, "xgboost": SHIPPED[metrics.get("model", "xgboost")][0]}


def short_name(metrics: Mapping[str, Any]) -> str:
    """The shipped model as comparison lines name it: XGBoost or gbdt_lr."""
    return SHIPPED[metrics.get("model", "xgboost")][1]
COLUMNS = [("rows", "rows", "{:,}"), ("positives", "positives", "{:,}"), ("base_rate", "CTR", "{:.4%}"),
           ("mxe", "MXE", "{:.5f}"), ("ne", "NE", "{:.4f}"), ("auc", "AUC", "{:.4f}"), ("pr_auc", "PR AUC", "{:.4f}"),
           ("calibration", "calibration", "{:.3f}")]


def _fmt(value: Any, pattern: str) -> str:
    if value is None:
        return "-"
    return pattern.format(value)


def model_rows(metrics: Mapping[str, Any]) -> list[tuple[str, str, Mapping[str, Any]]]:
    """(split, model label, metrics) for every split and model, the shipped one first; recalibrated rows too."""
    out = []
    names = labels(metrics)
    for split, m in metrics["splits"].items():
        out.append((split, names["xgboost"], m))
        if m.get("recalibrated"):
            out.append((split, names["xgboost"] + ", recalibrated", m["recalibrated"]))
        for name, per_split in metrics.get("baselines", {}).items():
            if split in per_split:
                out.append((split, names[name], per_split[split]))
                if per_split[split].get("recalibrated"):
                    out.append((split, names[name] + ", recalibrated", per_split[split]["recalibrated"]))
    return out


def verdict(interval: tuple[float, float], name: str, model: str = "XGBoost") -> str:
    """What a 95% interval of ``model``'s relative MXE improvement over ``name`` says, in words."""
    lo, hi = interval
    if lo > 0:
        return f"{model} is significantly better than {name}"
    if hi < 0:
        return f"{name} is significantly better than {model}"
    return f"{model} does not beat {name} significantly (the interval includes 0)"


def comparison_lines(metrics: Mapping[str, Any]) -> list[str]:
    lines = []
    model = short_name(metrics)
    for split, per_base in metrics.get("comparison", {}).items():
        for name, c in per_base.items():
            text = (f"{split}: {model} vs {name}: MXE improvement {c['relative_mxe_improvement']:+.2%}, "
                    f"AUC difference {c['auc_difference']:+.4f}")
            b = c.get("bootstrap")
            if b:
                lo, hi = b["relative_mxe_improvement"]["interval"]
                alo, ahi = b["auc_difference"]["interval"]
                text += (f" (95% paired bootstrap, {b['replicates']} replicates: MXE improvement [{lo:+.2%}, "
                         f"{hi:+.2%}], AUC difference [{alo:+.4f}, {ahi:+.4f}]): {verdict((lo, hi), name, model)}")
            lines.append(text)
    preferred = validation_preference(metrics)
    return lines + ([preferred] if preferred else [])


def validation_preference(metrics: Mapping[str, Any]) -> Optional[str]:
    """Which model has the lowest MXE on the validation split (None without one or without baselines)."""
    valid = metrics["splits"].get("validation")
    names = labels(metrics)
    scores = [(m["mxe"], names[name]) for name, per_split in metrics.get("baselines", {}).items()
              for split, m in per_split.items() if split == "validation"]
    if valid is None or not scores:
        return None
    ranked = sorted([(valid["mxe"], names["xgboost"]), *scores])
    (best, label), rest = ranked[0], ranked[1:]
    others = ", ".join(f"{other} {mxe:.5f}" for mxe, other in rest)
    return f"validation prefers {label}: MXE {best:.5f} (against {others})"


def summary_lines(metrics: Mapping[str, Any]) -> list[str]:
    """What the CLI prints at the end of a run."""
    lines = []
    for split, label, m in model_rows(metrics):
        short = "" if label == labels(metrics)["xgboost"] else f" [{label.replace('Spark MLlib ', '')}]"
        lines.append(f"{split}{short}: AUC {m['auc']:.4f}  MXE (log loss) {m['mxe']:.5f}  NE {m['ne']:.4f}  "
                     f"calibration {m['calibration']:.3f}  rows {m['rows']:,}  positives {m['positives']:,} "
                     f"({m['base_rate']:.2%})")
    return lines + comparison_lines(metrics)


def _table(headers: list[str], rows: list[list[str]]) -> str:
    head = "".join(f"<th>{html.escape(h)}</th>" for h in headers)
    body = "".join("<tr>" + "".join(f"<td>{html.escape(c)}</td>" for c in r) + "</tr>" for r in rows)
    return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


def _md_table(headers: list[str], rows: list[list[str]]) -> str:
    return "\n".join(["| " + " | ".join(headers) + " |", "|" + "---|" * len(headers)]
                     + ["| " + " | ".join(r) + " |" for r in rows])


def _metric_rows(metrics: Mapping[str, Any]) -> tuple[list[str], list[list[str]]]:
    headers = ["split", "model"] + [c[1] for c in COLUMNS]
    rows = [[split, label] + [_fmt(m.get(k), f) for k, _, f in COLUMNS] for split, label, m in model_rows(metrics)]
    return headers, rows


def html_report(title: str, metrics: Mapping[str, Any], images: Mapping[str, bytes],
                notes: Optional[list[str]] = None) -> str:
    headers, rows = _metric_rows(metrics)
    parts = [f"<h1>{html.escape(title)}</h1>"]
    parts += [f"<p>{html.escape(n)}</p>" for n in notes or []]
    parts.append("<h2>Metrics</h2>" + _table(headers, rows))
    comp = comparison_lines(metrics)
    if comp:
        parts.append(f"<h2>{html.escape(short_name(metrics))} against the baselines</h2><ul>"
                     + "".join(f"<li>{html.escape(c)}</li>" for c in comp) + "</ul>")
    parts.append("<h2>Plots</h2>")
    for name, png in images.items():
        data = base64.b64encode(png).decode("ascii")
        parts.append(f'<figure><img alt="{html.escape(name)}" src="data:image/png;base64,{data}">'
                     f"<figcaption>{html.escape(name)}</figcaption></figure>")
    for split, m in metrics["splits"].items():
        rel = m.get("reliability") or []
        if rel:
            parts.append(f"<h2>Reliability, {html.escape(split)} ({html.escape(short_name(metrics))})</h2>" + _table(
                ["bin", "rows", "mean prediction", "observed CTR", "calibration"],
                [[str(b["bin"]), f"{b['rows']:,}", f"{b['mean_prediction']:.5f}", f"{b['observed_ctr']:.5f}",
                  _fmt(b["calibration"], "{:.3f}")] for b in rel]))
        seg = m.get("segments") or []
        if seg:
            parts.append(f"<h2>Segments by {html.escape(str(metrics.get('segment_by')))}, {html.escape(split)}</h2>"
                         + _table(["segment", "rows", "positives", "CTR", "MXE", "NE", "AUC", "calibration"],
                                  [[str(s["segment"]), f"{s['rows']:,}", f"{s['positives']:,}",
                                    f"{s['base_rate']:.4%}", _fmt(s["mxe"], "{:.5f}"), _fmt(s["ne"], "{:.4f}"),
                                    _fmt(s["auc"], "{:.4f}"), _fmt(s["calibration"], "{:.3f}")] for s in seg]))
    imp = metrics.get("importances", {})
    if imp.get("by_column"):
        parts.append("<h2>Importance per raw column</h2>" + _table(
            ["column", "total gain", "share", "splits", "mean gain"],
            [[str(r["source"]), f"{r['total_gain']:.4g}", f"{r['share']:.2%}", f"{r['weight']:.0f}",
              _fmt(r["gain"], "{:.4g}")] for r in imp["by_column"]]))
    if imp.get("top"):
        parts.append("<h2>Top features</h2>" + _table(
            ["feature", "column", "total gain", "gain", "splits", "cover"],
            [[str(r["name"]), str(r["source"]), f"{r['total_gain']:.4g}", f"{r['gain']:.4g}",
              f"{r['weight']:.0f}", f"{r['cover']:.4g}"] for r in imp["top"]]))
    style = ("body{font-family:sans-serif;max-width:1000px;margin:2em auto}table{border-collapse:collapse;"
             "margin:1em 0}td,th{border:1px solid #ccc;padding:2px 6px;text-align:right}img{max-width:100%}")
    return (f"<!DOCTYPE html>\n<html><head><meta charset=\"utf-8\"><title>{html.escape(title)}</title>"
            f"<style>{style}</style></head><body>\n" + "\n".join(parts) + "\n</body></html>\n")


def markdown_summary(title: str, metrics: Mapping[str, Any], notes: Optional[list[str]] = None) -> str:
    headers, rows = _metric_rows(metrics)
    out = [f"# {title}", "", *[f"{n}\n" for n in notes or []], _md_table(headers, rows), ""]
    comp = comparison_lines(metrics)
    if comp:
        out += [f"## {short_name(metrics)} against the baselines", "", *[f"- {c}" for c in comp], ""]
    by_col = metrics.get("importances", {}).get("by_column") or []
    if by_col:
        out += ["## Importance per raw column (top 10)", "",
                _md_table(["column", "total gain share"], [[str(r["source"]), f"{r['share']:.2%}"]
                                                          for r in by_col[:10]]), ""]
    return "\n".join(out)


def model_notes(train: dict) -> list[str]:
    """What the training stage searched and how many trees early stopping kept, for the report."""
    from training.search import search_line

    out = []
    if train.get("search"):
        s = train["search"]
        out.append(f"Model selection: {search_line(s)} (space {json.dumps(s['space'])}; training.search_space).")
    if train.get("gbdt_lr"):
        g = train["gbdt_lr"]
        out.append(f"Shipped model: GBDT leaves + LR (training.model: gbdt_lr). Its {g['trees']} trees trained on "
                   f"train less a held-out {g['share']:.0%} (training.gbdt_lr_share); each row's leaf in every tree, "
                   f"one-hot, joined with the features ({g['columns']:,} columns), under an L2 logistic regression "
                   f"fit on {g['fit_rows']:,} of the held-out rows, its L2 strength {g['regParam']:g} chosen on 20% "
                   "of them. 'Its trees alone' scores the same trees without the logistic regression.")
    if train.get("early_stopping_rounds") and train.get("best_iteration") is not None:
        out.append(f"Early stopping on the validation split (training.early_stopping_rounds "
                   f"{train['early_stopping_rounds']}): the model keeps {train['best_iteration'] + 1} trees, up to "
                   "its best validation MXE.")
    return out
