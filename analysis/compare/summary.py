"""A run's summary: per feature set and model, the trials' numbers and the paired tests.

The summary is JSON, stored in ``AnalysisRun.summary``; the report and
``echolab analyze show`` read only it, so they never recompute anything.
"""

from __future__ import annotations

import json
from collections import Counter
from typing import Any, Sequence

import numpy as np

from echolab.analysis.compare import stats
from echolab.analysis.compare.grids import ModelSpec
from echolab.analysis.compare.keys import PlannedTrial
from echolab.analysis.compare.matrices import FeatureMatrix
from echolab.analysis.compare.sources import DataSource
from echolab.analysis.compare.specs import RunSettings
from echolab.db.models import TrialResult


def summarize(plan: Sequence[PlannedTrial], rows: dict[str, TrialResult], src: DataSource, classes: list[str],
              matrices: dict[str, FeatureMatrix], specs: list[ModelSpec], settings: RunSettings,
              test_fraction: float | None) -> dict[str, Any]:
    """Everything the report needs, as JSON (stored in ``AnalysisRun.summary``)."""
    cells: dict[str, dict[str, Any]] = {}
    by_cell: dict[tuple[str, str], list[TrialResult]] = {}
    for key, feature, spec, _trial in plan:
        if key in rows:
            by_cell.setdefault((feature.key, spec.name), []).append(rows[key])
    for feature in settings.features:
        cells[feature.key] = {}
        for spec in specs:
            trial_rows = sorted(by_cell.get((feature.key, spec.name), []), key=lambda r: r.trial)
            cells[feature.key][spec.name] = _cell(trial_rows, classes)
    tests = _tests(cells, settings, specs, test_fraction)
    counts = Counter(src.y.tolist())
    return {
        "classes": classes,
        "class_counts": {c: counts[c] for c in classes},
        "campaigns": dict(sorted(Counter(src.groups.tolist()).items())),
        "class_by_campaign": _crosstab(src),
        "n_captures": int(len(src.y)),
        "features": [
            {"key": f.key, "set": f.set_name, "options": f.option_dict, "n_features": int(matrices[f.key].X.shape[1]),
             "names": matrices[f.key].names, "info": matrices[f.key].info}
            for f in settings.features
        ],
        "models": [{"name": s.name, "label": s.label, "short": s.short, "n_candidates": s.n_candidates()}
                   for s in specs],
        "cells": cells,
        "tests": tests,
    }


def _crosstab(src: DataSource) -> dict[str, dict[str, int]]:
    out: dict[str, dict[str, int]] = {}
    for g, label in zip(src.groups.tolist(), src.y.tolist()):
        out.setdefault(g, {}).setdefault(label, 0)
        out[g][label] += 1
    return dict(sorted(out.items()))


def _cell(rows: list[TrialResult], classes: list[str]) -> dict[str, Any]:
    acc = [r.accuracy for r in rows]
    f1 = [r.f1_macro or 0.0 for r in rows]
    d = stats.describe(acc)
    cell: dict[str, Any] = {
        "n": d.n, "mean": d.mean, "std": d.std, "median": d.median, "min": d.min, "max": d.max,
        "f1_mean": stats.describe(f1).mean, "f1_std": stats.describe(f1).std,
        "accuracies": acc, "f1": f1, "trials": [r.trial for r in rows],
        "seconds": float(sum(r.seconds or 0.0 for r in rows)),
        "convergence_warnings": int(sum(int(r.result.get("convergence_warnings", 0)) for r in rows)),
    }
    if rows:
        conf = np.asarray([r.result["confusion"] for r in rows], dtype=float)
        cell["confusion_mean"] = conf.mean(axis=0).tolist()
        chosen: dict[str, Counter[str]] = {}
        for r in rows:
            for p, v in r.best_params.items():
                chosen.setdefault(p, Counter())[json.dumps(v) if isinstance(v, list) else str(v)] += 1
        cell["params_chosen"] = {p: dict(c.most_common()) for p, c in chosen.items()}
        imps = [r.result.get("importances") for r in rows if r.result.get("importances")]
        if imps:
            arr = np.asarray(imps, dtype=float)
            cell["importances_mean"] = arr.mean(axis=0).tolist()
            cell["importances_std"] = arr.std(axis=0).tolist()
        groups = [r.result.get("test_group") for r in rows]
        if any(groups):
            cell["test_groups"] = groups
    return cell


def _tests(cells: dict[str, dict[str, Any]], settings: RunSettings, specs: list[ModelSpec],
           test_fraction: float | None) -> dict[str, Any]:
    between_models = {}
    best_models = {}
    for fkey, by_model in cells.items():
        series = {m: c["accuracies"] for m, c in by_model.items() if c["n"] and len(c["accuracies"]) == _n(by_model)}
        between_models[fkey] = [t.to_json() for t in stats.all_pairs(series, test_fraction=test_fraction)]
        best_models[fkey] = [t.to_json() for t in stats.best_vs_rest(series, test_fraction=test_fraction)]
    between_features = {}
    for spec in specs:
        series = {f: cells[f][spec.name]["accuracies"] for f in cells if cells[f][spec.name]["n"]}
        lengths = {len(v) for v in series.values()}
        if len(lengths) == 1:
            between_features[spec.name] = [t.to_json() for t in stats.all_pairs(series, test_fraction=test_fraction)]
    return {"between_models": between_models, "best_model": best_models, "between_features": between_features,
            "test_fraction": test_fraction}


def _n(by_model: dict[str, Any]) -> int:
    return max((c["n"] for c in by_model.values()), default=0)
