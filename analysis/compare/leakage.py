"""The leakage check: do random splits overstate what an eavesdropper on a new network would get?

Every report carries it, beside the random-split table. On one feature
matrix, with one fixed model (a random forest of :data:`TREES` trees, no grid
search, so the check takes seconds), it measures

* the accuracy on **random** stratified 80/20 splits (the study's protocol);
* the accuracy on **unseen groups**: the same model trained on some sessions
  (or sources, or campaigns, whichever the data has: :func:`pick_grouping`)
  and tested on others it never saw (:mod:`.splits`);
* how well the features tell the **group** apart *within one class*: if
  captures of the same command from different sessions are easy to tell
  apart, the features carry a session signature a random split can exploit;
* with two or more campaigns, the **cross-campaign matrix**: train on
  campaign A, test on campaign B, for every pair, on the classes both hold
  (the diagonal: random splits within the campaign).

:func:`verdict` turns the first two into ``likely``, ``unlikely`` or
``unknown`` with a sentence a reader can act on.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any, Mapping, Sequence

import numpy as np

from echolab.analysis.compare.splits import GROUPINGS, plan_grouped, plural, random_splits, restrict_to_shared
from echolab.analysis.compare.trials import ProtocolError, Split, trial_seed

#: Trees of the check's random forest (fixed parameters: a quick, stable model, not the run's grid).
TREES = 50
#: Random splits and grouped splits (at most) the check averages over.
CHECK_TRIALS = 5
#: Leakage is likely when random splits beat unseen groups by this much skill (the share of the way from
#: chance to 100% an accuracy covers: (accuracy - chance) / (100 - chance)), i.e. 10 points of that range.
LIKELY_SKILL_GAP = 0.10
#: Groupings the check tries; it uses the one whose grouped trials evaluate the most classes (ties: this order).
CHECK_ORDER = ("session", "source", "campaign", "day", "device", "location")

VERDICTS = ("likely", "unlikely", "unknown")


@dataclass
class LeakageCheck:
    """What the check measured (accuracies in %), and what it concludes."""

    verdict: str
    reason: str
    feature: str = ""
    grouping: str | None = None
    n_groups: int = 0
    random_accuracy: float | None = None
    random_std: float | None = None
    unseen_accuracy: float | None = None
    unseen_std: float | None = None
    n_random: int = 0
    n_unseen: int = 0
    classes_evaluated: list[str] = field(default_factory=list)
    classes_dropped: list[str] = field(default_factory=list)
    chance: float | None = None  # % of the largest class in random test parts: what always guessing it scores
    unseen_chance: float | None = None  # the same for the grouped test parts (mean over trials)
    group_accuracy: float | None = None  # within-class group prediction
    group_chance: float | None = None
    cross: dict[str, Any] | None = None  # {"campaigns": [...], "accuracy": [[...]], "classes": [[...]]}
    model: str = f"random forest, {TREES} trees, fixed parameters"

    def to_json(self) -> dict[str, Any]:
        return asdict(self)

    def line(self) -> str:
        """``Leakage: likely`` (the line scripts read)."""
        return f"Leakage: {self.verdict}"

    def figures(self) -> str:
        """The figures the verdict rests on, in one sentence."""
        if self.grouping is None or self.unseen_accuracy is None:
            return self.reason
        parts = [f"random splits {self.random_accuracy:.1f}% (chance {self.chance:.1f}%) vs unseen "
                 f"{plural(self.grouping)} {self.unseen_accuracy:.1f}% (chance {self.unseen_chance:.1f}%), "
                 f"{self.model}, {self.feature}, {self.n_random} random and {self.n_unseen} grouped trials"]
        if self.classes_dropped:
            parts.append(f"grouped trials evaluated on the classes {', '.join(self.classes_evaluated)} "
                         f"(left out: {', '.join(self.classes_dropped)})")
        if self.group_accuracy is not None:
            parts.append(f"within a class the features tell the {self.grouping} apart {self.group_accuracy:.1f}% "
                         f"of the time (chance {self.group_chance:.1f}%)")
        return "; ".join(parts) + "."


def forest(seed: int) -> Any:
    from sklearn.ensemble import RandomForestClassifier

    return RandomForestClassifier(n_estimators=TREES, random_state=seed, n_jobs=1)


def pick_grouping(y: np.ndarray, groups: Mapping[str, Sequence[str]], *, seed: int = 0, trials: int = CHECK_TRIALS,
                  test_size: float = 0.2, cv_folds: int = 3) -> tuple[str, list[Split]] | None:
    """The grouping of :data:`CHECK_ORDER` whose grouped trials evaluate the most classes, and its trials.

    A grouping qualifies when it has a group of several captures (not every
    capture alone) and its grouped splits can be made.
    """
    y = np.asarray(y).astype(str)
    best: tuple[float, int, str, list[Split]] | None = None
    for rank, name in enumerate(CHECK_ORDER):
        if name not in groups:
            continue
        g = np.asarray(groups[name]).astype(str)
        distinct = set(g.tolist())
        if len(distinct) < 2 or len(distinct) == len(g):  # one group, or every capture alone: nothing to hold out
            continue
        try:
            splits = plan_grouped(y, g, name, trials=trials, seed=seed, test_size=test_size, cv_folds=cv_folds)
        except ProtocolError:
            continue
        width = float(np.mean([len(s.classes or set(y.tolist())) for s in splits]))
        if best is None or (width, -rank) > (best[0], best[1]):
            best = (width, -rank, name, splits)
    return None if best is None else (best[2], best[3])


def skill(accuracy: float, chance: float) -> float:
    """The share of the way from chance to 100% an accuracy covers (Cohen's kappa against the majority guess)."""
    return (accuracy - chance) / (100.0 - chance) if chance < 100.0 else 0.0


def _chance(y: np.ndarray, split: Split) -> float:
    return 100.0 * float(np.unique(y[split.test], return_counts=True)[1].max()) / len(split.test)


def _score(X: np.ndarray, y: np.ndarray, split: Split, seed: int) -> float:
    model = forest(trial_seed(seed, split.trial)).fit(X[split.train], y[split.train])
    return float(np.mean(model.predict(X[split.test]) == y[split.test]))


def check(X: np.ndarray, y: np.ndarray, groups: Mapping[str, Sequence[str]], *, feature: str = "", seed: int = 0,
          trials: int = CHECK_TRIALS, test_size: float = 0.2, cv_folds: int = 3,
          grouping: str | None = None) -> LeakageCheck:
    """Run the check on *X* (rows in the order of *y* and each grouping of *groups*)."""
    y = np.asarray(y).astype(str)
    X = np.asarray(X, dtype=float)
    base = LeakageCheck("unknown", "", feature=feature)
    try:
        rand = random_splits(y, trials, seed, test_size, cv_folds)
    except ProtocolError as exc:
        base.reason = f"no random splits: {exc}"
        return base
    r_acc = 100.0 * np.asarray([_score(X, y, s, seed) for s in rand])
    base.random_accuracy, base.random_std, base.n_random = float(r_acc.mean()), float(r_acc.std()), len(rand)
    base.chance = float(np.mean([_chance(y, s) for s in rand]))
    base.cross = cross_campaign(X, y, groups.get("campaign"), seed=seed, cv_folds=cv_folds)
    if grouping is not None:
        picked = (grouping, plan_grouped(y, np.asarray(groups[grouping]).astype(str), grouping, trials=trials,
                                         seed=seed, test_size=test_size, cv_folds=cv_folds))
    else:
        picked = pick_grouping(y, groups, seed=seed, trials=trials, test_size=test_size, cv_folds=cv_folds)
    if picked is None:
        base.reason = _nothing_to_hold_out(groups, y)
        return base
    grouping, splits = picked
    g = np.asarray(groups[grouping]).astype(str)
    base.grouping, base.n_groups = grouping, len(set(g.tolist()))
    base.unseen_chance = float(np.mean([_chance(y, s) for s in splits]))
    u_acc = 100.0 * np.asarray([_score(X, y, s, seed) for s in splits])
    base.unseen_accuracy, base.unseen_std, base.n_unseen = float(u_acc.mean()), float(u_acc.std()), len(splits)
    evaluated = sorted({c for s in splits for c in (s.classes or ())})
    base.classes_evaluated = evaluated
    base.classes_dropped = sorted({c for s in splits for c in s.dropped})
    base.group_accuracy, base.group_chance = group_from_features(X, y, g, seed=seed)
    base.verdict, base.reason = verdict(base)
    return base


def verdict(c: LeakageCheck) -> tuple[str, str]:
    """``likely`` / ``unlikely`` / ``unknown`` and the plain-language sentence behind it."""
    if c.unseen_accuracy is None or c.random_accuracy is None or c.grouping is None:
        return "unknown", c.reason or "the data has no groups to hold out"
    s_random = skill(c.random_accuracy, c.chance or 0.0)
    s_unseen = skill(c.unseen_accuracy, c.unseen_chance or 0.0)
    groups = plural(c.grouping)
    measured = (f"{c.random_accuracy:.1f}% on random splits (chance {c.chance:.1f}%), {c.unseen_accuracy:.1f}% on "
                f"{groups} the model never saw (chance {c.unseen_chance:.1f}%)")
    if s_random - s_unseen >= LIKELY_SKILL_GAP:
        return "likely", (
            f"random splits overstate what an eavesdropper on a new network would get: {measured}. Captures of one "
            f"{c.grouping} share something the features pick up, and a random split puts the same {c.grouping} in "
            f"the training and the test part. Quote the unseen-{c.grouping} figure, or collect every class in "
            f"several {groups}, interleaved")
    return "unlikely", (
        f"random splits and unseen {groups} agree within {100 * LIKELY_SKILL_GAP:.0f}% of the range above chance: "
        f"{measured}. What random splits measure carries over to new {groups} of this data; that says nothing "
        f"about networks, voices or devices it does not hold")


def _nothing_to_hold_out(groups: Mapping[str, Sequence[str]], y: np.ndarray) -> str:
    have = {k: len(set(v)) for k, v in groups.items()}
    shown = ", ".join(f"{have[k]} {k if have[k] == 1 else plural(k)}" for k in GROUPINGS if k in have)
    confounded = [k for k in GROUPINGS if k in groups and 1 < have[k] < len(y)  # not one group, not every capture alone
                  and all(len(set(y[np.asarray(groups[k]) == g].tolist())) == 1 for g in set(groups[k]))]
    why = (f"; every {confounded[0]} holds a single class, so {confounded[0]} and class cannot be told apart"
           if confounded else "")
    return ("nothing to hold out: no grouping puts a class in two groups of several captures "
            f"({shown}){why}. Random splits cannot be checked against unseen groups; collect a second campaign "
            "(another day, network or voice) to find out")


def group_from_features(X: np.ndarray, y: np.ndarray, g: np.ndarray, *, seed: int,
                        folds: int = 3) -> tuple[float | None, float | None]:
    """Accuracy (%) of predicting the group from the features within each class, and its chance level (%).

    For every class found in 2 or more groups (each with at least *folds*
    captures), stratified *folds*-fold predictions of the group among that
    class's captures; accuracy and chance (the largest group's share) are
    pooled over those classes, weighted by captures.
    """
    from sklearn.model_selection import StratifiedKFold, cross_val_predict

    hits = total = chance = 0.0
    for c in sorted(set(y.tolist())):
        rows = np.flatnonzero(y == c)
        names, n = np.unique(g[rows], return_counts=True)
        keep = rows[np.isin(g[rows], names[n >= folds])]
        if len(set(g[keep].tolist())) < 2:
            continue
        cv = StratifiedKFold(n_splits=folds, shuffle=True, random_state=seed)
        pred = cross_val_predict(forest(seed), X[keep], g[keep], cv=cv)
        hits += float(np.sum(pred == g[keep]))
        total += len(keep)
        chance += float(np.unique(g[keep], return_counts=True)[1].max())
    if not total:
        return None, None
    return 100.0 * hits / total, 100.0 * chance / total


def cross_campaign(X: np.ndarray, y: np.ndarray, campaigns: Sequence[str] | None, *, seed: int,
                   cv_folds: int = 3) -> dict[str, Any] | None:
    """Train on campaign A, test on campaign B, for every pair (on the classes both hold); None with one campaign.

    The diagonal is the accuracy of random 80/20 splits within the campaign
    (None where it is too small for them).
    """
    if campaigns is None:
        return None
    c = np.asarray(campaigns).astype(str)
    names = sorted(set(c.tolist()))
    if len(names) < 2:
        return None
    idx = np.arange(len(y))
    acc: list[list[float | None]] = []
    classes: list[list[int]] = []
    for a in names:
        row, row_classes = [], []
        for b in names:
            if a == b:
                try:
                    inner = idx[c == a]
                    within = random_splits(y[inner], 1, seed, cv_folds=cv_folds)[0]
                    split = Split(0, inner[within.train], inner[within.test])
                    row.append(100.0 * _score(X, y, split, seed))
                    row_classes.append(len(set(y[inner].tolist())))
                except ProtocolError:
                    row.append(None)
                    row_classes.append(0)
                continue
            split = restrict_to_shared(Split(0, idx[c == a], idx[c == b]), y, 1)
            row.append(None if split is None else 100.0 * _score(X, y, split, seed))
            row_classes.append(0 if split is None else len(split.classes or ()))
        acc.append(row)
        classes.append(row_classes)
    return {"campaigns": names, "accuracy": acc, "classes": classes}

