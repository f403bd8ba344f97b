"""Per-class accuracy and the most frequent confusions: the report's view of a run with many classes.

A confusion matrix can be read at the study's six classes; at 130 it is a
grey square that takes minutes and gigabytes to draw. Above
:data:`MATRIX_MAX_CLASSES` classes the report shows instead, per feature set
and for its best model, each class's accuracy (the share of its test
captures predicted right, i.e. its recall) and the class pairs most often
confused, all read from the run's stored mean confusion matrices
(``confusion_mean`` of the summary's cells).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Sequence

import numpy as np

if TYPE_CHECKING:
    from matplotlib.figure import Figure

#: Above this many classes the report draws no confusion matrices (per-class accuracy and top confusions instead).
MATRIX_MAX_CLASSES = 15
#: Confusions listed per feature set.
TOP_CONFUSIONS = 15


def best_model(cells: dict[str, Any]) -> str | None:
    """The model with the highest mean accuracy among those with a confusion matrix."""
    found = [(c["mean"], m) for m, c in cells.items() if c.get("n") and c.get("confusion_mean")]
    return max(found)[1] if found else None


def per_class(confusion: Sequence[Sequence[float]], classes: Sequence[str]) -> list[dict[str, Any]]:
    """Each class's accuracy (% of its test captures predicted right) and what it is most often taken for."""
    cm = np.asarray(confusion, dtype=float)
    totals = cm.sum(axis=1)
    off = cm.copy()
    np.fill_diagonal(off, 0.0)
    rows = []
    for i, label in enumerate(classes):
        j = int(off[i].argmax())
        rows.append({
            "class": label,
            "tested": float(totals[i]),
            "accuracy": 100.0 * cm[i, i] / totals[i] if totals[i] else None,
            "confused_with": classes[j] if off[i, j] > 0 else None,
            "confused_pct": 100.0 * off[i, j] / totals[i] if totals[i] and off[i, j] > 0 else None,
        })
    return rows


def top_confusions(confusion: Sequence[Sequence[float]], classes: Sequence[str],
                   top: int = TOP_CONFUSIONS) -> list[dict[str, Any]]:
    """The *top* (true, predicted) pairs by mean count per trial, with the share of the true class they take."""
    cm = np.asarray(confusion, dtype=float)
    totals = cm.sum(axis=1)
    off = cm.copy()
    np.fill_diagonal(off, 0.0)
    flat = np.argsort(off, axis=None)[::-1][:top]
    out = []
    for k in flat:
        i, j = divmod(int(k), cm.shape[1])
        if off[i, j] <= 0:
            break
        out.append({"true": classes[i], "predicted": classes[j], "per_trial": float(off[i, j]),
                    "pct_of_true": 100.0 * off[i, j] / totals[i] if totals[i] else None})
    return out


def class_views(s: dict[str, Any]) -> list[dict[str, Any]]:
    """Per feature set: its best model, the per-class rows (worst first) and the top confusions."""
    classes = s["classes"]
    views = []
    for f in s["features"]:
        cells = s["cells"][f["key"]]
        model = best_model(cells)
        if model is None:
            continue
        cm = cells[model]["confusion_mean"]
        rows = per_class(cm, classes)
        rows.sort(key=lambda r: (-1.0 if r["accuracy"] is None else r["accuracy"], r["class"]))
        views.append({"feature": f["key"], "model": model, "mean": cells[model]["mean"], "classes": rows,
                      "confusions": top_confusions(cm, classes)})
    return views


def per_class_figure(views: Sequence[dict[str, Any]], model_short: dict[str, str]) -> "Figure":
    """Each class's accuracy, sorted, one line per feature set (its best model): how the accuracy spreads."""
    from matplotlib.figure import Figure

    fig = Figure(figsize=(7.2, 3.8))
    ax = fig.subplots()
    for v in views:
        acc = sorted((r["accuracy"] for r in v["classes"] if r["accuracy"] is not None), reverse=True)
        ax.plot(np.arange(1, len(acc) + 1), acc, drawstyle="steps-mid",
                label=f"{v['feature']} ({model_short.get(v['model'], v['model'])}, mean {v['mean']:.1f}%)")
    ax.set_xlabel("classes, best first")
    ax.set_ylabel("accuracy of the class (%)")
    ax.set_ylim(-2, 102)
    ax.set_title("Per-class accuracy (recall), mean confusion over trials", fontsize=10)
    ax.legend(fontsize=7)
    ax.spines["top"].set_visible(False)
    ax.spines["right"].set_visible(False)
    ax.grid(axis="y", color="#e5e5e5", linewidth=0.8)
    fig.tight_layout()
    return fig


__all__ = ["MATRIX_MAX_CLASSES", "TOP_CONFUSIONS", "best_model", "class_views", "per_class", "per_class_figure",
           "top_confusions"]
