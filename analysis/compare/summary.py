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
from echolab.analysis.compare.specs import AnalysisError, RunSettings
from echolab.analysis.compare.splits import ONE_OUT, plural
from echolab.analysis.compare.trials import Split
from echolab.db.records import TrialResult


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
            cells[feature.key][spec.name] = _cell(trial_rows, classes, matrices[feature.key].names)
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


def _cell(rows: list[TrialResult], classes: list[str], names: Sequence[str] = ()) -> dict[str, Any]:
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
        for r in rows:  # ties counted as ties ("sqrt = log2 (same model)"), not as the first of them
            choice = r.result.get("choice") or {p: json.dumps(v) if isinstance(v, list) else str(v)
                                                for p, v in r.best_params.items()}
            for p, v in choice.items():
                chosen.setdefault(p, Counter())[v] += 1
        cell["params_chosen"] = {p: dict(c.most_common()) for p, c in chosen.items()}
        arr = aligned_importances(rows, names)
        if arr is not None:
            cell["importances_mean"] = arr.mean(axis=0).tolist()
            cell["importances_std"] = arr.std(axis=0).tolist()
        groups = [r.result.get("test_group") for r in rows]
        if any(groups):
            cell["test_groups"] = groups
    return cell


def aligned_importances(rows: Sequence[TrialResult], names: Sequence[str]) -> np.ndarray | None:
    """Trials x columns of *names*: each trial's importances placed by column name.

    With features fit on each trial's training part, trials drop different
    constant columns, so their importance vectors differ in length and order;
    a column a trial dropped had no part in its model and counts 0 there.
    Without per-trial names, a trial's importances are in *names*' order.
    """
    index = {n: i for i, n in enumerate(names)}
    out = []
    for r in rows:
        imp = r.result.get("importances")
        if not imp:
            continue
        cols = r.result.get("feature_names") or list(names)
        if len(cols) != len(imp):
            raise AnalysisError(f"trial {r.trial} of {r.feature_set} {r.model}: {len(imp)} importances for "
                                f"{len(cols)} columns")
        row = np.zeros(len(names))
        for name, value in zip(cols, imp):
            if name not in index:
                raise AnalysisError(f"trial {r.trial} of {r.feature_set} {r.model} has a column {name!r} that the "
                                    f"whole data set does not")
            row[index[name]] = value
        out.append(row)
    return np.asarray(out) if out else None


#: How grave each leakage verdict is: the run's headline is its gravest feature set's.
SEVERITY = {"likely": 2, "unlikely": 1, "unknown": 0}


def leakage_features(settings: RunSettings) -> list[str]:
    """The feature sets the leakage check runs on: the first configuration of each set the run names
    (``histogram`` once however many bin counts a sweep adds); ablation groups only when nothing else."""
    from echolab.analysis.features.sets import ALL_SETS

    keys: dict[str, str] = {}
    for f in settings.features:
        if f.set_name in ALL_SETS:
            keys.setdefault(f.set_name, f.key)
    return list(keys.values()) or [settings.features[0].key]


def leakage_summary(src: DataSource, matrices: dict[str, FeatureMatrix], settings: RunSettings) -> dict[str, Any]:
    """The leakage check (:mod:`.leakage`) on each feature set of :func:`leakage_features`, for the report.

    Every set gets its own verdict (``by_feature``): one set's captures can carry
    a session signature another's do not. The headline is the gravest verdict
    (ties: the combined set, then the run's order), so a run never says
    "unlikely" while one of its sets says "likely".
    """
    from echolab.analysis.compare import leakage

    results = {}
    for key in leakage_features(settings):
        results[key] = leakage.check(matrices[key].X, src.y, src.groupings, feature=key, seed=settings.seed,
                                     test_size=settings.test_size, cv_folds=settings.cv_folds)
    order = list(results)
    head = max(order, key=lambda k: (SEVERITY.get(results[k].verdict, 0), k == "combined", -order.index(k)))
    result = results[head]
    return {**result.to_json(), "line": result.line(), "figures": result.figures(),
            "by_feature": {k: {"verdict": r.verdict, "line": r.line(), "figures": r.figures(), "reason": r.reason}
                           for k, r in results.items()}}


def split_summary(splits: Sequence[Split], settings: RunSettings) -> dict[str, Any]:
    """How the trials split the data, and the classes grouped trials were evaluated on."""
    out: dict[str, Any] = {"by": settings.split_by, "trials": len(splits),
                           "leave_one_out": any(s.test_group is not None for s in splits)}
    if out["leave_one_out"] and settings.split_by not in ONE_OUT:
        out["note"] = (f"too few {plural(settings.split_by)} for repeated grouped splits: one left out per trial "
                       f"({len(splits)} trials, not --trials {settings.trials})")
    dropped = sorted({c for s in splits for c in s.dropped})
    if dropped:
        out["dropped"] = dropped
        # one group out per trial on the classes every group holds: the same task in every trial
        out["common"] = all(s.common for s in splits)
        out["per_trial"] = [{"trial": s.trial, "test_group": s.test_group, "classes": list(s.classes or ()),
                             "dropped": list(s.dropped)} for s in splits]
    return out


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
