"""The report of an analysis run: ``index.html`` and ``summary.md`` with plots.

Everything comes from the run's stored summary (``AnalysisRun.summary``), so a
report can be written again at any time without recomputing. The study's own
numbers (``analysis/compare/study_results.toml``) are shown beside ours, labelled as
the study's, when the run's classes are the study's (beside any other classes
they would compare different tasks). Above
:data:`~echolab.analysis.compare.perclass.MATRIX_MAX_CLASSES` classes the
report shows per-class accuracy and the top confusions instead of confusion
matrices (:mod:`echolab.analysis.compare.perclass`), so that a 150-class run's
report is written in seconds and can be read. Plots are drawn on :class:`matplotlib.figure.Figure` objects of
their own (no pyplot, no backend switch), so importing or using this module
changes no global matplotlib state.
"""

from __future__ import annotations

import base64
import hashlib
import io
import json
import math
import tomllib
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from echolab.errors import EcholabError

if TYPE_CHECKING:
    from matplotlib.axes import Axes
    from matplotlib.figure import Figure as MplFigure

    from echolab.db.records import AnalysisRun

TEMPLATES = Path(__file__).with_name("templates")
STUDY_RESULTS = Path(__file__).with_name("study_results.toml")
#: Paired tests over fewer trials than this come with a caveat: their p-values rest on too few differences.
FEW_TRIALS = 10
#: What ``histogram`` without options means when its transformer does not say (the study's choice).
HISTOGRAM_DEFAULTS = {"bins": 15, "include_acks": False}
PALETTE = ["#4C72B0", "#DD8452", "#55A868", "#C44E52", "#8172B3", "#937860", "#DA8BC3", "#8C8C8C"]


class ReportError(EcholabError):
    """A report cannot be written (the run has no results yet, or the folder is unwritable)."""


def study_results() -> dict[str, Any]:
    """The study's published numbers (one data file)."""
    return tomllib.loads(STUDY_RESULTS.read_text())


@dataclass
class Figure:
    """One plot: its file name (next to the report) and its PNG bytes."""

    name: str
    title: str
    png: bytes

    @property
    def data_uri(self) -> str:
        return "data:image/png;base64," + base64.b64encode(self.png).decode()


def write_report(run: AnalysisRun, out_dir: Path | str, *, force: bool = False) -> Path:
    """Write ``index.html``, ``summary.md`` and the plots' PNGs for *run* into *out_dir*.

    A folder that already holds the report of exactly this run (same stored run,
    same study numbers, same templates and code: :func:`report_key`, kept in
    ``summary.json``) is left as it is, unless *force*: drawing the plots is
    most of the work.
    """
    if not run.summary:
        raise ReportError(
            f"run {run.name!r} has no results yet (status {run.status}); finish it with 'echolab analyze run' first"
        )
    out = Path(out_dir)
    key = report_key(run)
    if not force and _written(out, key):
        return out / "index.html"
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise ReportError(f"cannot create the report folder {out}: {exc.strerror or exc}") from exc
    ctx = report_context(run)
    written = []
    for fig in ctx["figures"]:
        (out / fig.name).write_bytes(fig.png)
        written.append(fig.name)
    from jinja2 import Environment, FileSystemLoader, select_autoescape

    from echolab.analysis.compare.stats import format_p

    env = Environment(loader=FileSystemLoader(TEMPLATES), autoescape=select_autoescape(["html"]),
                      trim_blocks=True, lstrip_blocks=True)
    env.filters["pct"] = _pct
    env.filters["p"] = format_p
    env.filters["signed"] = lambda v: "n/a" if v is None or _isnan(v) else f"{v:+.2f}"
    (out / "index.html").write_text(env.get_template("report.html").render(**ctx))
    (out / "summary.md").write_text(env.get_template("summary.md").render(**ctx))
    # Written last: a report cut short has no key, so the next call writes it again.
    (out / "summary.json").write_text(json.dumps({"name": run.name, "settings": run.settings,
                                                  "versions": run.versions, "fingerprint": run.fingerprint,
                                                  "summary": run.summary,
                                                  "report": {"key": key, "files": sorted(written)}},
                                                 indent=1, default=str))
    return out / "index.html"


def report_key(run: AnalysisRun) -> str:
    """A hash of everything a report shows or is made with: the stored run, the study's numbers,
    the templates and this module."""
    h = hashlib.sha256()
    shown = {"name": run.name, "status": run.status, "created_at": _utc(run.created_at),
             "finished_at": _utc(run.finished_at), "settings": run.settings, "versions": run.versions,
             "fingerprint": run.fingerprint, "summary": run.summary}
    h.update(json.dumps(shown, sort_keys=True, default=str).encode())
    for path in (STUDY_RESULTS, Path(__file__), *sorted(TEMPLATES.iterdir())):
        h.update(path.name.encode() + b"\0" + path.read_bytes())
    return h.hexdigest()


def _utc(when: datetime | None) -> str | None:
    """*when* as UTC text: a time read back from SQLite has lost its offset, one just set has not."""
    if when is None:
        return None
    if when.tzinfo is not None:
        when = when.astimezone(timezone.utc).replace(tzinfo=None)
    return when.isoformat()


def _written(out: Path, key: str) -> bool:
    """Whether *out* holds a complete report whose key is *key*."""
    try:
        stored = json.loads((out / "summary.json").read_text()).get("report") or {}
    except (OSError, ValueError, AttributeError):
        return False
    files = ["index.html", "summary.md", *stored.get("files", [])]
    return stored.get("key") == key and all((out / name).is_file() for name in files)


def _isnan(v: Any) -> bool:
    return isinstance(v, float) and math.isnan(v)


def _pct(v: Any, digits: int = 2) -> str:
    if v is None or _isnan(v):
        return "n/a"
    return f"{v:.{digits}f}"


# -- the context --------------------------------------------------------------------------


def report_context(run: AnalysisRun) -> dict[str, Any]:
    """Everything the templates show, computed from the run's summary."""
    from echolab.analysis.compare.perclass import MATRIX_MAX_CLASSES, class_views, per_class_figure

    s = run.summary or {}
    study_shown = study_classes(s["classes"])
    study = study_results() if study_shown else {}
    models = s["models"]
    features = s["features"]
    many = len(s["classes"]) > MATRIX_MAX_CLASSES
    views = class_views(s)
    figures: list[Figure] = []
    table1 = _table1(s, study)
    leak = s.get("leakage")
    with plain_text():  # class labels and names are data: a '$' in one is not matplotlib math
        figures.append(_fig_distributions(s))
        if many:
            short = {m["name"]: m["short"] for m in models}
            if views:
                figures.append(Figure("per-class.png", "Per-class accuracy", _png(per_class_figure(views, short))))
        else:
            figures.extend(_fig_confusions(s, f["key"]) for f in features)
        imp = [_fig_importances(s, f) for f in features]
        figures.extend(f for f in imp if f is not None)
        if table1:
            figures.append(_fig_bins(table1))
        comparison = None if s.get("open_world") else _fig_vs_study(s, study)  # the study's world was closed
        if comparison is not None:
            figures.append(comparison)
        open_world = _open_world(s)
        if open_world:
            figures.append(Figure("open-world.png", "Open world: precision and recall over the threshold",
                                  _png(open_world.pop("figure"))))
        if leak and leak.get("cross"):
            figures.append(_fig_cross(leak["cross"]))
    return {
        "run": run,
        "s": s,
        "settings": run.settings,
        "versions": run.versions,
        "models": models,
        "model_labels": {m["name"]: m["label"] for m in models},
        "model_short": {m["name"]: m["short"] for m in models},
        "features": features,
        "table2": _table2(s, study),
        "table1": table1,
        "ablations": _ablations(s, study),
        "f1": _f1_table(s),
        "params": _params(s),
        "tests": _tests(s),
        "timing": _timing(s),
        "figures": figures,
        "figure": {f.name: f for f in figures},
        "many_classes": many,
        "matrix_max": MATRIX_MAX_CLASSES,
        "class_views": views,
        "study_shown": study_shown,
        "study_source": study.get("source", "the study"),
        "study_tests": study.get("tests", {}),
        "ablations_study": study.get("ablations", {}),
        "provenance": provenance_lines(run.settings or {}),
        "leakage": leak or {"verdict": "unknown", "line": "Leakage: unknown",
                            "figures": "this run was made without the leakage check", "reason": ""},
        "leakage_by_feature": (leak or {}).get("by_feature") or {},
        "split": s.get("split", {"by": (run.settings or {}).get("split_by", "random")}),
        "open_world": open_world,
    }


def _open_world(s: dict[str, Any]) -> dict[str, Any] | None:
    """The open-world section's rows and figure (:mod:`.openeval`), or None for a closed-world run."""
    ow = s.get("open_world")
    if not ow:
        return None
    from echolab.analysis.compare.openeval import curves_figure

    short = {m["name"]: m["short"] for m in s["models"]}
    rows = [{"feature": fkey, "model": short.get(model, model), **cell}
            for fkey, by_model in ow["cells"].items() for model, cell in by_model.items() if cell.get("n")]
    return {**ow, "rows": rows, "figure": curves_figure(ow)}


def study_classes(classes: Any) -> bool:
    """Whether a run's classes are the study's (only then are its published numbers shown beside the run's)."""
    from echolab.prompts.classes import STUDY_CLASSES

    return set(classes) == set(STUDY_CLASSES)


def provenance_lines(settings: dict[str, Any]) -> dict[str, Any]:
    """Where the data came from, for the first screen: a headline and whether it is simulated."""
    prov = settings.get("provenance") or {}
    if not prov:
        return {"headline": f"not recorded for this run (data: {settings.get('data', 'unknown')})",
                "simulated": None, "real": None, "kinds": []}
    return prov


def _table2(s: dict[str, Any], study: dict[str, Any]) -> list[dict[str, Any]]:
    """Rows: feature sets; columns: models; our mean/std/median and the study's where it has them."""
    rows = []
    for f in s["features"]:
        cells = s["cells"][f["key"]]
        means = {m: c["mean"] for m, c in cells.items() if c["n"]}
        best = max(means, key=means.get) if means else None
        study_row = study.get("table2", {}).get(f["key"]) if not f["options"] else None
        rows.append({
            "feature": f["key"],
            "n_features": f["n_features"],
            "cells": [{"model": m["name"], "best": m["name"] == best, **cells[m["name"]]} for m in s["models"]],
            "study": [(study_row or {}).get(m["name"]) for m in s["models"]] if study_row else None,
        })
    return rows


def _table1(s: dict[str, Any], study: dict[str, Any]) -> list[dict[str, Any]]:
    """Random forest on histogram sets by bins, with/without ACKs, beside the study's Table I."""
    if not any(m["name"] == "random_forest" for m in s["models"]):
        return []
    found: dict[int, dict[bool, dict[str, Any]]] = {}
    swept = False
    for f in s["features"]:
        if f["set"] != "histogram" or set(f["options"]) - {"bins", "include_acks"}:
            continue
        swept = swept or "bins" in f["options"]
        opts = {**HISTOGRAM_DEFAULTS, **f["info"].get("params", {}), **f["options"]}
        cell = s["cells"][f["key"]]["random_forest"]
        if cell["n"]:
            found.setdefault(int(opts["bins"]), {})[bool(opts["include_acks"])] = cell
    if not swept:
        return []
    ref = study.get("table1", {})
    rows = []
    for bins in sorted(found):
        st = ref.get(str(bins))
        rows.append({"bins": bins, "with_ack": found[bins].get(True), "without_ack": found[bins].get(False),
                     "study_with": st[0] if st else None, "study_without": st[1] if st else None})
    return rows


def _ablations(s: dict[str, Any], study: dict[str, Any]) -> list[dict[str, Any]]:
    """Feature-group ablations in this run, with the study's random forest number for each."""
    from echolab.analysis.compare.specs import ABLATIONS

    ref = study.get("ablations", {})
    present = {f["key"] for f in s["features"]}
    return [
        {"name": name.replace("_", " "), "feature": spec.key, "study_rf": ref.get(name),
         "cells": [s["cells"][spec.key][m["name"]] for m in s["models"]]}
        for name, spec in ABLATIONS.items() if spec.key in present
    ]


def _f1_table(s: dict[str, Any]) -> list[dict[str, Any]]:
    return [{"feature": f["key"], "cells": [s["cells"][f["key"]][m["name"]] for m in s["models"]]} for f in s["features"]]


def _params(s: dict[str, Any]) -> list[dict[str, Any]]:
    """How often each hyper-parameter value was chosen, per feature set and model."""
    out = []
    for f in s["features"]:
        for m in s["models"]:
            cell = s["cells"][f["key"]][m["name"]]
            chosen = cell.get("params_chosen", {})
            if not chosen:
                continue
            text = "; ".join(
                f"{p}: " + ", ".join(f"{v} ({n})" for v, n in counts.items()) for p, counts in chosen.items()
            )
            out.append({"feature": f["key"], "model": m["label"], "text": text, "chosen": chosen, "n": cell["n"]})
    return out


def _tests(s: dict[str, Any]) -> dict[str, Any]:
    t = s.get("tests", {})
    counts = [c["n"] for by_model in s["cells"].values() for c in by_model.values() if c.get("n")]
    fewest = min(counts, default=0)
    caveat = None
    if fewest and fewest < FEW_TRIALS:
        caveat = (f"These tests rest on {fewest} paired trial{'s' if fewest != 1 else ''}: too few for their "
                  f"p-values to carry weight (a t-test on so few differences has little power and leans on an "
                  f"assumption of normality it cannot check; a Wilcoxon test cannot reach p < 0.05 below 6). "
                  f"Read them as a sketch; rerun with --trials {max(30, FEW_TRIALS)} or more before calling a "
                  f"difference significant")
    return {
        "caveat": caveat,
        "best_model": t.get("best_model", {}),
        "between_models": t.get("between_models", {}),
        "between_features": t.get("between_features", {}),
        "corrected": t.get("test_fraction") is not None,
    }


def _timing(s: dict[str, Any]) -> dict[str, Any]:
    per_model: dict[str, float] = {}
    warnings: dict[str, int] = {}
    for by_model in s["cells"].values():
        for m, c in by_model.items():
            per_model[m] = per_model.get(m, 0.0) + c.get("seconds", 0.0)
            warnings[m] = warnings.get(m, 0) + c.get("convergence_warnings", 0)
    return {"per_model": per_model, "warnings": warnings, **s.get("timing", {})}


# -- the plots ------------------------------------------------------------------------------


def plain_text() -> Any:
    """A context in which matplotlib draws text as given (``$...$`` is not parsed as math).

    Labels come from the lab's data; a label such as ``$\\undefinedmacro$`` would
    otherwise make every plot of the run fail to draw.
    """
    import matplotlib

    return matplotlib.rc_context({"text.parse_math": False})


def _figure(figsize: tuple[float, float]) -> MplFigure:
    """A figure of its own, drawn with the Agg renderer (pyplot's figure manager is not involved)."""
    from matplotlib.figure import Figure as MplFigure

    return MplFigure(figsize=figsize)


def _png(fig: MplFigure) -> bytes:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=110, bbox_inches="tight")
    return buf.getvalue()


def _style(ax: Axes) -> None:
    ax.spines["top"].set_visible(False)
    ax.spines["right"].set_visible(False)
    ax.grid(axis="y", color="#e5e5e5", linewidth=0.8)
    ax.set_axisbelow(True)


def _fig_distributions(s: dict[str, Any]) -> Figure:
    """Accuracy over trials per model, one panel per feature set (box plot with the trials as dots)."""
    feats = s["features"]
    ncol = min(3, len(feats))
    nrow = math.ceil(len(feats) / ncol)
    fig = _figure((4.6 * ncol, 3.6 * nrow))
    axes = fig.subplots(nrow, ncol, squeeze=False, sharey=True)
    rng = np.random.default_rng(0)
    for ax, f in zip(axes.flat, feats):
        data = [100 * np.asarray(s["cells"][f["key"]][m["name"]]["accuracies"]) for m in s["models"]]
        ax.boxplot(data, widths=0.55, showfliers=False, medianprops={"color": "#222"},
                   patch_artist=True, boxprops={"facecolor": "#dfe8f5", "edgecolor": "#4C72B0"})
        for i, d in enumerate(data):
            ax.scatter(i + 1 + rng.uniform(-0.18, 0.18, len(d)), d, s=6, alpha=0.45, color=PALETTE[i % len(PALETTE)])
        ax.set_xticks(range(1, len(data) + 1), [m["short"] for m in s["models"]], rotation=30)
        ax.set_title(f["key"], fontsize=10)
        _style(ax)
    for ax in axes.flat[len(feats):]:
        ax.axis("off")
    axes[0][0].set_ylabel("test accuracy (%)")
    fig.suptitle("Accuracy over trials", fontsize=12)
    fig.tight_layout()
    return Figure("accuracy.png", "Accuracy over trials", _png(fig))


def _fig_confusions(s: dict[str, Any], fkey: str) -> Figure:
    """Confusion matrices averaged over trials, rows normalised to % of each true class."""
    classes = s["classes"]
    models = [m for m in s["models"] if s["cells"][fkey][m["name"]].get("confusion_mean")]
    ncol = min(3, max(1, len(models)))
    nrow = max(1, math.ceil(len(models) / ncol))
    size = 0.55 * len(classes) + 2.0
    fig = _figure((size * ncol, size * nrow))
    axes = fig.subplots(nrow, ncol, squeeze=False)
    for ax, m in zip(axes.flat, models):
        cm = np.asarray(s["cells"][fkey][m["name"]]["confusion_mean"], dtype=float)
        row = cm.sum(axis=1, keepdims=True)
        pct = np.divide(100 * cm, row, out=np.zeros_like(cm), where=row > 0)
        ax.imshow(pct, cmap="Blues", vmin=0, vmax=100)
        for i in range(len(classes)):
            for j in range(len(classes)):
                if pct[i, j] >= 0.5:
                    ax.text(j, i, f"{pct[i, j]:.0f}", ha="center", va="center", fontsize=7,
                            color="white" if pct[i, j] > 60 else "#222")
        ax.set_xticks(range(len(classes)), classes, rotation=45, ha="right", fontsize=7)
        ax.set_yticks(range(len(classes)), classes, fontsize=7)
        ax.set_title(f'{m["short"]}: {s["cells"][fkey][m["name"]]["mean"]:.1f}%', fontsize=9)
        ax.set_xlabel("predicted", fontsize=7)
        ax.set_ylabel("true", fontsize=7)
    for ax in axes.flat[len(models):]:
        ax.axis("off")
    fig.suptitle(f"Confusion matrices, {fkey} (% of each true class, mean over trials)", fontsize=10)
    fig.tight_layout()
    return Figure(f"confusion-{_slug(fkey)}.png", f"Confusion matrices: {fkey}", _png(fig))


def _fig_importances(s: dict[str, Any], f: dict[str, Any], top: int = 20) -> Figure | None:
    """Random forest mean decrease in impurity per feature (mean over trials, with std)."""
    cell = s["cells"][f["key"]].get("random_forest")
    if not cell or not cell.get("importances_mean"):
        return None
    mean = np.asarray(cell["importances_mean"])
    std = np.asarray(cell.get("importances_std", np.zeros_like(mean)))
    names = f["names"] if len(f["names"]) == len(mean) else [f"f{i}" for i in range(len(mean))]
    order = np.argsort(mean)[::-1][:top][::-1]
    fig = _figure((6.4, 0.26 * len(order) + 1.2))
    ax = fig.subplots()
    ax.barh(range(len(order)), mean[order], xerr=std[order], color="#55A868", ecolor="#999", capsize=2)
    ax.set_yticks(range(len(order)), [names[i] for i in order], fontsize=7)
    ax.set_xlabel("mean decrease in impurity")
    ax.set_title(f"Random forest feature importance, {f['key']}", fontsize=10)
    ax.spines["top"].set_visible(False)
    ax.spines["right"].set_visible(False)
    fig.tight_layout()
    return Figure(f"importance-{_slug(f['key'])}.png", f"Feature importance: {f['key']}", _png(fig))


def _fig_bins(table1: list[dict[str, Any]]) -> Figure:
    fig = _figure((6.4, 3.6))
    ax = fig.subplots()
    bins = [r["bins"] for r in table1]
    for flag, label, color in (("with_ack", "with ACK", "#4C72B0"), ("without_ack", "without ACK", "#DD8452")):
        ys = [r[flag]["mean"] if r[flag] else np.nan for r in table1]
        ax.plot(bins, ys, "o-", color=color, label=f"this run, {label}")
        st = [r["study_with" if flag == "with_ack" else "study_without"] for r in table1]
        ax.plot(bins, [np.nan if v is None else v for v in st], "s--", color=color, alpha=0.5,
                label=f"study, {label}")
    ax.set_xscale("log")
    ax.set_xticks(bins, [str(b) for b in bins])
    ax.set_xlabel("histogram bins")
    ax.set_ylabel("mean accuracy (%)")
    ax.set_title("Random forest on the histogram set by number of bins (Table I)", fontsize=10)
    ax.legend(fontsize=7)
    _style(ax)
    fig.tight_layout()
    return Figure("bins.png", "Bins sweep", _png(fig))


def _fig_vs_study(s: dict[str, Any], study: dict[str, Any]) -> Figure | None:
    """Our mean accuracy beside the study's, per model, for the study's three feature sets."""
    ref = study.get("table2", {})
    feats = [f for f in s["features"] if not f["options"] and f["key"] in ref]
    if not feats:
        return None
    fig = _figure((4.6 * len(feats), 3.4))
    axes = fig.subplots(1, len(feats), squeeze=False, sharey=True)
    for ax, f in zip(axes.flat, feats):
        names = [m["name"] for m in s["models"]]
        ours = [s["cells"][f["key"]][n]["mean"] for n in names]
        ours_sd = [s["cells"][f["key"]][n]["std"] for n in names]
        theirs = [ref[f["key"]].get(n, [np.nan, np.nan])[0] for n in names]
        theirs_sd = [ref[f["key"]].get(n, [np.nan, np.nan])[1] for n in names]
        x = np.arange(len(names))
        ax.errorbar(x - 0.12, ours, yerr=ours_sd, fmt="o", color="#4C72B0", capsize=3, label="this run (mean ± sd)")
        ax.errorbar(x + 0.12, theirs, yerr=theirs_sd, fmt="s", color="#999999", capsize=3,
                    label="study, published (mean ± sd)")
        ax.set_xticks(x, [m["short"] for m in s["models"]], rotation=30)
        ax.set_xlim(-0.6, len(names) - 0.4)
        ax.set_title(f["key"], fontsize=10)
        _style(ax)
    axes[0][0].set_ylabel("mean accuracy (%)")
    axes[0][-1].legend(fontsize=7, loc="lower right")
    fig.tight_layout()
    return Figure("vs-study.png", "This run and the study", _png(fig))


def _fig_cross(cross: dict[str, Any]) -> Figure:
    """Train on campaign A (row), test on campaign B (column); the diagonal: random splits within A."""
    names = cross["campaigns"]
    acc = np.asarray([[np.nan if v is None else v for v in row] for row in cross["accuracy"]], dtype=float)
    size = 0.9 * len(names) + 2.4
    fig = _figure((size + 1.0, size))
    ax = fig.subplots()
    im = ax.imshow(acc, cmap="RdYlGn", vmin=0, vmax=100)
    for i in range(len(names)):
        for j in range(len(names)):
            text = "n/a" if np.isnan(acc[i, j]) else f"{acc[i, j]:.0f}%\n{cross['classes'][i][j]} cl."
            ax.text(j, i, text, ha="center", va="center", fontsize=7, color="#222")
    ax.set_xticks(range(len(names)), names, rotation=35, ha="right", fontsize=7)
    ax.set_yticks(range(len(names)), names, fontsize=7)
    ax.set_xlabel("tested on campaign")
    ax.set_ylabel("trained on campaign")
    fig.colorbar(im, ax=ax, fraction=0.046, pad=0.04, label="accuracy %")
    ax.set_title("Cross-campaign accuracy (diagonal: random splits within the campaign)", fontsize=9)
    fig.tight_layout()
    return Figure("cross-campaign.png", "Cross-campaign accuracy", _png(fig))


def _slug(text: str) -> str:
    return "".join(ch if ch.isalnum() else "-" for ch in text).strip("-")
