"""Plots with matplotlib on the headless Agg backend; each function returns PNG bytes of a fixed size."""
from __future__ import annotations

import io
from typing import Mapping, Sequence

SIZE = (6.4, 4.8)   # inches at DPI: 640 x 480 pixels
DPI = 100


def _figure():
    import matplotlib

    matplotlib.use("Agg", force=True)
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=SIZE, dpi=DPI)
    return plt, fig, ax


def _png(plt, fig) -> bytes:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=DPI)   # no tight bbox: the size stays SIZE * DPI
    plt.close(fig)
    return buf.getvalue()


def roc(curves: Mapping[str, tuple[Sequence[float], Sequence[float], float]]) -> bytes:
    """``curves[label] = (fpr, tpr, auc)``."""
    plt, fig, ax = _figure()
    for label, (x, y, auc) in curves.items():
        ax.plot(x, y, label=f"{label} (AUC {auc:.4f})")
    ax.plot([0, 1], [0, 1], color="grey", linestyle=":", linewidth=1)
    ax.set(xlabel="false positive rate", ylabel="true positive rate", title="ROC", xlim=(0, 1), ylim=(0, 1))
    ax.legend(loc="lower right", fontsize=8)
    return _png(plt, fig)


def precision_recall(curves: Mapping[str, tuple[Sequence[float], Sequence[float], float]], base_rate: float) -> bytes:
    """``curves[label] = (recall, precision, average precision)``."""
    plt, fig, ax = _figure()
    for label, (x, y, ap) in curves.items():
        ax.plot(x, y, label=f"{label} (AP {ap:.4f})")
    ax.axhline(base_rate, color="grey", linestyle=":", linewidth=1, label=f"base rate {base_rate:.4f}")
    ax.set(xlabel="recall", ylabel="precision", title="Precision-recall", xlim=(0, 1), ylim=(0, 1))
    ax.legend(loc="upper right", fontsize=8)
    return _png(plt, fig)


def reliability(bins: Sequence[Mapping[str, float]], label: str) -> bytes:
    plt, fig, ax = _figure()
    x = [b["mean_prediction"] for b in bins]
    y = [b["observed_ctr"] for b in bins]
    top = max(max(x), max(y)) * 1.05 if x else 1.0
    ax.plot([0, top], [0, top], color="grey", linestyle=":", linewidth=1, label="perfect calibration")
    ax.plot(x, y, marker="o", label=label)
    ax.set(xlabel="mean predicted probability (bin)", ylabel="observed CTR (bin)", title="Reliability",
           xlim=(0, top), ylim=(0, top))
    ax.legend(loc="upper left", fontsize=8)
    return _png(plt, fig)


def learning_curves(history: Mapping[str, Mapping[str, Sequence[float]]], best: int | None) -> bytes:
    """``history[set][metric]`` per round (training / validation log loss)."""
    plt, fig, ax = _figure()
    for name, metrics in history.items():
        for metric, values in metrics.items():
            ax.plot(range(1, len(values) + 1), values, label=f"{name} {metric}")
    if best is not None:
        ax.axvline(best + 1, color="grey", linestyle=":", linewidth=1, label=f"best iteration {best + 1}")
    ax.set(xlabel="boosting round", ylabel="MXE (log loss)", title="Learning curves")
    ax.legend(loc="upper right", fontsize=8)
    return _png(plt, fig)


def lines(x: Sequence[float], series: Mapping[str, Sequence[float]], xlabel: str, ylabel: str, title: str) -> bytes:
    """One line per ``series[label]`` over ``x`` (None values are gaps)."""
    plt, fig, ax = _figure()
    for label, values in series.items():
        ax.plot(list(x), [float("nan") if v is None else v for v in values], marker=".", label=label)
    ax.set(xlabel=xlabel, ylabel=ylabel, title=title)
    ax.legend(loc="upper right", fontsize=8)
    return _png(plt, fig)


def importances(names: Sequence[str], values: Sequence[float], title: str) -> bytes:
    plt, fig, ax = _figure()
    names, values = list(names)[::-1], list(values)[::-1]
    ax.barh(range(len(values)), values)
    ax.set_yticks(range(len(names)), [n if len(n) <= 40 else n[:37] + "..." for n in names], fontsize=7)
    ax.set(xlabel="total gain", title=title)
    fig.subplots_adjust(left=0.38, right=0.97)
    return _png(plt, fig)


def message(text: str) -> bytes:
    """A placeholder image that says why a plot is missing (e.g. no training history)."""
    plt, fig, ax = _figure()
    ax.axis("off")
    ax.text(0.5, 0.5, text, ha="center", va="center", wrap=True)
    return _png(plt, fig)
