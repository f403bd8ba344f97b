"""The defense comparison: the strongest attacks on each defense, both ways, against what it costs.

For each defense spec (:mod:`echolab.analysis.defenses`) every good,
undefended capture is defended in memory (seeded per capture, as ``echolab
defend`` writes them) and each attack (a sequence feature set with its own
classifier: k-FP's forest on ``kfp``, CUMUL's SVM on ``cumul`` by default) runs
the study's trial protocol (:func:`echolab.analysis.compare.trials.run_trial`)
in three ways on the same splits:

* ``undefended``: trained and tested on undefended traffic (the baseline);
* ``trained_undefended``: trained on undefended traffic, tested on the defended
  twins of the test captures (an attacker who does not know the defense);
* ``trained_defended``: trained and tested on defended traffic (an attacker who
  knows it: the number that matters).

The splits are made once, on the undefended captures (random, or grouped by
``split_by``), and used for every defense: a defended capture is always on
its original's side, so no request is trained on in one form and tested on in
another. A defense that learns from the lab's captures (WTF-PAD's histograms,
the anonymity sets' schedules) learns from a history of them
(:func:`echolab.analysis.defenses.dataset.learned_defense`), which its trials
then leave out, on both sides: every capture the attacker trains or is tested
on is new traffic to it, as to a deployed defense, and its overhead is that of
new traffic. The result holds each defense's overhead (bandwidth and delay over
the data set, :mod:`echolab.analysis.defenses.overhead`), the table, the
Pareto front (defenses no other beats on bandwidth, delay and accuracy at
once), the best defense per overhead budget and published anchors, marked as
published: they come from other data, other class counts and other attacks.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Sequence

import numpy as np

from echolab.analysis.compare.specs import AnalysisError
from echolab.progress import ProgressCallback

if TYPE_CHECKING:
    from matplotlib.figure import Figure

#: Attacks run by default: each sequence set with the classifier of its paper.
DEFAULT_ATTACKS: tuple[tuple[str, str], ...] = (("kfp", "kfp_forest"), ("cumul", "cumul_svm"))
#: Each set's own classifier, when --features names a set and no model.
OWN_MODEL = {"kfp": "kfp_forest", "cumul": "cumul_svm", "sequence": "deep_cnn"}
MODES = ("undefended", "trained_undefended", "trained_defended")
#: Overhead budgets (bandwidth, delay; fractions) for "the best defense within a budget".
DEFAULT_BUDGETS: tuple[tuple[float, float], ...] = ((0.1, 0.0), (0.5, 0.1), (1.0, 0.3), (6.0, 4.0))

#: Published results, shown as published: other data, other class counts, other attacks.
PUBLISHED: tuple[dict[str, Any], ...] = (
    {"label": "BuFLO on an Echo (Kennedy et al., CNS 2019)", "defense": "buflo", "accuracy": 0.147,
     "undefended": 0.338, "bandwidth": 5.48, "delay": 3.30, "classes": 100},
    {"label": "Adaptive padding + d*-privacy (Wang et al., WiSec 2020), attacker trained defended",
     "defense": "wtfpad+dstar", "accuracy": 0.3218, "undefended": 0.9289, "bandwidth": None, "delay": None,
     "classes": 100},
    {"label": "WTF-PAD vs k-NN (Juarez et al., ESORICS 2016; websites)", "defense": "wtfpad", "accuracy": 0.20,
     "undefended": 0.90, "bandwidth": 0.60, "delay": 0.0, "classes": None},
    {"label": "FRONT (Gong & Wang, USENIX Security 2020; websites)", "defense": "front", "accuracy": None,
     "undefended": None, "bandwidth": 0.33, "delay": 0.0, "classes": None},
)


@dataclass
class DefenseComparison:
    """What :func:`compare_defenses` found (see the module's docstring)."""

    defenses: list[str]
    attacks: list[str]  # "SET/MODEL"
    classes: list[str]
    captures: int
    split_by: str
    trials: int
    overheads: dict[str, dict[str, float]]  # spec -> totals of echolab.analysis.defenses.overhead
    accuracy: dict[str, dict[str, dict[str, list[float]]]]  # spec -> attack -> mode -> per-trial accuracy
    baseline: dict[str, list[float]]  # attack -> per-trial accuracy, undefended
    seconds: dict[str, float] = field(default_factory=dict)

    @property
    def chance(self) -> float:
        return 1.0 / len(self.classes) if self.classes else 0.0

    def worst(self, spec: str) -> float:
        """The defender's worst case: the best attack's mean accuracy, in the better mode for the attacker."""
        return max(float(np.mean(v)) for modes in self.accuracy[spec].values()
                   for m, v in modes.items() if m != "undefended")

    def rows(self) -> list[dict[str, Any]]:
        """The table: one row per defense and attack (undefended first), accuracies in both modes."""
        out = []
        for attack, acc in self.baseline.items():
            out.append({"defense": "none", "attack": attack, "undefended": _mean(acc), "trained_undefended": None,
                        "trained_defended": None, "bandwidth": 0.0, "delay": 0.0, "published": False})
        for spec in self.defenses:
            o = self.overheads[spec]
            for attack in self.attacks:
                modes = self.accuracy[spec][attack]
                out.append({"defense": spec, "attack": attack, "undefended": _mean(self.baseline[attack]),
                            "trained_undefended": _mean(modes["trained_undefended"]),
                            "trained_defended": _mean(modes["trained_defended"]),
                            "bandwidth": o["bandwidth"], "delay": o["delay"], "published": False})
        for p in PUBLISHED:
            out.append({"defense": p["label"], "attack": "published", "undefended": p["undefended"],
                        "trained_undefended": None, "trained_defended": p["accuracy"], "bandwidth": p["bandwidth"],
                        "delay": p["delay"], "published": True})
        return out

    def pareto(self) -> list[str]:
        """Defenses no other matches or beats on bandwidth, delay and worst-case accuracy, one of them strictly."""
        pts = {s: (self.overheads[s]["bandwidth"], self.overheads[s]["delay"], self.worst(s)) for s in self.defenses}
        front = []
        for s, p in pts.items():
            beaten = any(all(q[i] <= p[i] for i in range(3)) and any(q[i] < p[i] for i in range(3))
                         for t, q in pts.items() if t != s)
            if not beaten:
                front.append(s)
        return sorted(front, key=lambda s: pts[s])

    def best_within(self, budgets: Sequence[tuple[float, float]] = DEFAULT_BUDGETS) -> list[dict[str, Any]]:
        """Per (bandwidth, delay) budget: the defense with the lowest worst-case accuracy that fits it."""
        out = []
        for bw, delay in budgets:
            fits = [s for s in self.defenses
                    if self.overheads[s]["bandwidth"] <= bw + 1e-12 and self.overheads[s]["delay"] <= delay + 1e-12]
            best = min(fits, key=lambda s: (self.worst(s), self.overheads[s]["bandwidth"])) if fits else None
            acc = self.worst(best) if best else None
            out.append({"bandwidth_budget": bw, "delay_budget": delay, "defense": best, "accuracy": acc,
                        "bandwidth": self.overheads[best]["bandwidth"] if best else None,
                        "delay": self.overheads[best]["delay"] if best else None,
                        "within_twice_chance": acc is not None and acc <= 2 * self.chance})
        return out

    def to_json(self) -> dict[str, Any]:
        return {"defenses": self.defenses, "attacks": self.attacks, "classes": self.classes,
                "captures": self.captures, "split_by": self.split_by, "trials": self.trials, "chance": self.chance,
                "overheads": self.overheads, "accuracy": self.accuracy, "baseline": self.baseline,
                "rows": self.rows(), "pareto": self.pareto(), "best_within": self.best_within(),
                "seconds": self.seconds}

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> "DefenseComparison":
        """The comparison back from :meth:`to_json` (to redraw or re-rank it)."""
        return cls(**{k: data[k] for k in ("defenses", "attacks", "classes", "captures", "split_by", "trials",
                                            "overheads", "accuracy", "baseline")}, seconds=data.get("seconds", {}))

    def figure(self) -> "Figure":
        """The Pareto plot: worst-case accuracy against bandwidth and against delay overhead."""
        from matplotlib.figure import Figure

        fig = Figure(figsize=(11, 4.5))
        front = set(self.pareto())
        for ax, key, label in zip(fig.subplots(1, 2), ("bandwidth", "delay"),
                                  ("bandwidth overhead (%)", "delay overhead (%)")):
            for s in self.defenses:
                x = 100 * self.overheads[s][key]
                for mode, marker in (("trained_undefended", "v"), ("trained_defended", "o")):
                    y = 100 * max(float(np.mean(m[mode])) for m in self.accuracy[s].values())
                    ax.scatter([x], [y], marker=marker, color="tab:red" if s in front else "tab:blue",
                               label=None)
                if s in front:  # only the front is named: the others crowd the plot
                    ax.annotate(s, (x, 100 * self.worst(s)), fontsize=7, xytext=(3, 3), textcoords="offset points")
            for p in PUBLISHED:
                if p.get(key) is not None and p.get("accuracy") is not None:
                    ax.scatter([100 * p[key]], [100 * p["accuracy"]], marker="s", facecolors="none",
                               edgecolors="black")
                    ax.annotate("published: " + p["defense"], (100 * p[key], 100 * p["accuracy"]), fontsize=7,
                                xytext=(3, -9), textcoords="offset points")
            base = max(float(np.mean(v)) for v in self.baseline.values())
            ax.axhline(100 * base, color="gray", linestyle=":", label="undefended")
            ax.axhline(200 * self.chance, color="green", linestyle="--", label="twice chance")
            ax.set_xscale("symlog", linthresh=10)
            ax.set_xlim(left=0)
            ax.set_xlabel(label)
            ax.set_ylabel("best attack's accuracy (%)")
            ax.set_ylim(0, 100)
        handles = [fig.axes[0].scatter([], [], marker="v", color="gray", label="attacker trained undefended"),
                   fig.axes[0].scatter([], [], marker="o", color="gray", label="attacker trained defended"),
                   fig.axes[0].scatter([], [], marker="o", color="tab:red", label="Pareto front"),
                   fig.axes[0].scatter([], [], marker="s", facecolors="none", edgecolors="black",
                                       label="published (other data)")]
        fig.legend(handles=handles + fig.axes[0].get_lines(), fontsize=7, loc="lower center", ncol=6)
        fig.suptitle(f"Defenses: {self.captures} captures, {len(self.classes)} classes, split {self.split_by}; "
                     "named: the Pareto front")
        fig.tight_layout(rect=(0, 0.08, 1, 1))
        return fig


def _mean(values: Sequence[float]) -> float | None:
    return float(np.mean(values)) if len(values) else None


def parse_attacks(features: Sequence[str] = (), models: Sequence[str] = ()) -> list[tuple[str, str]]:
    """(set, model) pairs: each set with each named model, or with its own (:data:`OWN_MODEL`)."""
    from echolab.analysis.features.sets import SEQUENCE_SETS

    if not features:
        return [(f, m) for f, _ in DEFAULT_ATTACKS for m in models] if models else list(DEFAULT_ATTACKS)
    out = []
    for f in features:
        name = f.partition(":")[0]
        if name not in SEQUENCE_SETS:
            raise AnalysisError(f"the {name} set needs TCP headers, which a defended packet trace does not have; "
                                f"choose from {', '.join(SEQUENCE_SETS)}")
        out += [(f, m) for m in (models or [OWN_MODEL[name]])]
    return out


def compare_defenses(catalog: Any, defenses: Sequence[str], *, features: Sequence[str] = (),
                     models: Sequence[str] = (), campaigns: Sequence[str | int] = (), trials: int = 5,
                     split_by: str = "random", seed: int = 0, device_ip: str | None = None,
                     grids_path: str | None = None, progress: ProgressCallback | None = None) -> DefenseComparison:
    """Run the attacks on each defense both ways (see the module's docstring); nothing is written to *catalog*."""
    from echolab.analysis.compare.sources import catalog_source
    from echolab.analysis.defenses.dataset import defended_sequences, learned_defense
    from echolab.analysis.defenses.overhead import total_overhead
    from echolab.analysis.defenses.registry import parse_defense

    parsed = [parse_defense(d) for d in defenses]  # bad specs fail before any work
    if not parsed:
        raise AnalysisError("name at least one defense (--defense SPEC)")
    attacks = parse_attacks(features, models)
    src = catalog_source(catalog, device_ip=device_ip, campaigns=campaigns, progress=progress).canonical()
    seqs = {i: (np.asarray(r.seq_times_us, dtype=np.int64) / 1e6, np.asarray(r.seq_sizes, dtype=np.int64))
            for i, r in enumerate(src.records)}
    splits = _splits(src, split_by, trials, seed)
    classes = src.classes()
    specs = _models(attacks, grids_path)
    started = time.perf_counter()
    base_x = {f: _matrix(src.records, f) for f, _ in attacks}
    baseline = {f"{f}/{m}": _trials(base_x[f], base_x[f], src.y, splits, specs[m], classes, seed)
                for f, m in attacks}
    seconds = {"undefended": time.perf_counter() - started}
    overheads, accuracy, names = {}, {}, []
    labels = {i: str(label) for i, label in enumerate(src.y)}  # what a labelled defense (anonymity sets) reads
    for k, defense in enumerate(parsed, start=1):
        t0 = time.perf_counter()
        # A defense that learns does so from a history of the captures, which the trials then leave out:
        # every capture an attacker trains or is tested on is new traffic to it, as to a deployed defense.
        learned = learned_defense(defense, seqs, seed=seed, labels=labels)
        defended, cost = defended_sequences(learned.defense, seqs, seed=seed, labels=labels)
        records = [_trace_record(defended[i]) for i in range(len(src.records))]
        history = set(learned.history)
        overheads[defense.spec] = total_overhead([cost[i] for i in range(len(src.records)) if i not in history])
        chosen = _without(splits, history)
        result = {}
        for f, m in attacks:
            dx = _matrix(records, f)
            result[f"{f}/{m}"] = {
                "trained_undefended": _trials(base_x[f], dx, src.y, chosen, specs[m], classes, seed),
                "trained_defended": _trials(dx, dx, src.y, chosen, specs[m], classes, seed)}
        accuracy[defense.spec] = result
        names.append(defense.spec)
        seconds[defense.spec] = time.perf_counter() - t0
        if progress is not None:
            progress("defenses", k, len(parsed))
    return DefenseComparison(defenses=names, attacks=[f"{f}/{m}" for f, m in attacks], classes=classes,
                             captures=len(src.y), split_by=split_by, trials=len(splits), overheads=overheads,
                             accuracy=accuracy, baseline=baseline, seconds=seconds)


def attack_accuracy(catalog: Any, *, features: Sequence[str] = (), models: Sequence[str] = (),
                    campaigns: Sequence[str | int] = (), trials: int = 5, split_by: str = "random", seed: int = 0,
                    device_ip: str | None = None, grids_path: str | None = None) -> dict[str, list[float]]:
    """Each attack's per-trial accuracy trained and tested on the captures as they are (attack -> accuracies).

    :func:`compare_defenses`' undefended baseline, on the same protocol, for data a defense already
    shaped on the wire: a campaign collected under a live defense (``collect --defense``) names its
    campaign here, and is compared with the trace simulation of that defense on an undefended one.
    """
    from echolab.analysis.compare.sources import catalog_source

    attacks = parse_attacks(features, models)
    src = catalog_source(catalog, device_ip=device_ip, campaigns=campaigns).canonical()
    splits = _splits(src, split_by, trials, seed)
    specs = _models(attacks, grids_path)
    classes = src.classes()
    out = {}
    for f, m in attacks:
        x = _matrix(src.records, f)
        out[f"{f}/{m}"] = _trials(x, x, src.y, splits, specs[m], classes, seed)
    return out


def _splits(src: Any, split_by: str, trials: int, seed: int) -> list[Any]:
    from echolab.analysis.compare.splits import SPLIT_MODES, plan_grouped, random_splits

    if split_by not in SPLIT_MODES:
        raise AnalysisError(f"--split-by must be one of {', '.join(SPLIT_MODES)}, not {split_by!r}")
    if split_by == "random":
        return random_splits(src.y, trials, seed)
    if split_by not in src.groupings:
        raise AnalysisError(f"the data does not know each capture's {split_by}")
    return plan_grouped(src.y, src.groupings[split_by], split_by, trials=trials, seed=seed)


def _models(attacks: Sequence[tuple[str, str]], grids_path: str | None) -> dict[str, Any]:
    from echolab.analysis.compare.grids import load_grids, select_models

    grids = load_grids(grids_path)
    return {s.name: s for s in select_models(grids, sorted({m for _, m in attacks}))}


def _matrix(records: Sequence[Any], feature: str) -> np.ndarray:
    from echolab.analysis.compare.specs import FeatureSpec
    from echolab.analysis.features.sets import make_transformer

    spec = FeatureSpec.parse(feature)
    return make_transformer(spec.set_name, **spec.option_dict).fit(records).transform(records)


def _trace_record(defended: Any) -> Any:
    from echolab.analysis.features.sets import sequence_record
    from echolab.captures.trace import TRACE_DEVICE

    return sequence_record(defended.times_us(), defended.sizes.tolist(), TRACE_DEVICE)


def _without(splits: Sequence[Any], rows: set[int]) -> list[Any]:
    """*splits* with *rows* (a learning defense's history) left out of both sides."""
    if not rows:
        return list(splits)
    from dataclasses import replace

    drop = np.asarray(sorted(rows))
    return [replace(s, train=np.setdiff1d(np.asarray(s.train), drop), test=np.setdiff1d(np.asarray(s.test), drop))
            for s in splits]


def _trials(train_x: np.ndarray, test_x: np.ndarray, y: np.ndarray, splits: Sequence[Any], spec: Any,
            classes: Sequence[str], seed: int) -> list[float]:
    """Accuracy per split: trained on *train_x*'s training rows, tested on *test_x*'s test rows."""
    from echolab.analysis.compare.trials import Split, run_trial

    n = len(y)
    X = np.vstack([train_x, test_x])
    Y = np.concatenate([y, y])
    out = []
    for split in splits:
        stacked = Split(split.trial, np.asarray(split.train), np.asarray(split.test) + n, split.test_group,
                        split.classes, split.dropped)
        out.append(run_trial(X, Y, stacked, spec, classes, seed=seed).accuracy)
    return out
