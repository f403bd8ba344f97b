"""The splits that define a run's trials: the study's random ones, and grouped ones that keep groups apart.

A random 80/20 split puts captures of one recording session in both the
training and the test part. Whatever is particular to a session (the
connection's state, its windows, the network) then identifies the session,
and when a session holds one class, the session identifies the class: the
accuracy measures the session, not what an eavesdropper on a new network
would get. Grouped splits keep every group (:data:`GROUPINGS`) on one side:

* ``source``: the pieces cut from one long capture;
* ``session``: captures of one collection session: a campaign's captures
  without a quiet gap longer than :data:`SESSION_GAP_S` between them (pieces
  of one long capture are one session);
* ``day``, ``campaign``, ``device``, ``location``: as the catalog records them.

Groupings with many groups (sources, sessions) get repeated grouped,
stratified 80/20 splits (:func:`grouped_splits`); groupings with few (days,
campaigns, devices, locations, or fewer than five groups of any kind) leave
one group out per trial (:func:`leave_one_group_out`). Groups may hold
different classes (a campaign may collect only some): one-group-out trials
are evaluated on the classes every group holds (so each trial measures the
same task), repeated grouped splits on the classes both sides of the trial
hold, and the split says which (:attr:`Split.classes`).

:func:`check_captures` says, before anything runs, which classes have too few
captures (or groups) for the protocol, in one line.
"""

from __future__ import annotations

import math
from collections import Counter
from datetime import datetime
from typing import Any, Iterable, Mapping, Sequence

import numpy as np

from echolab.analysis.compare.trials import ProtocolError, Split, trial_seed

#: What ``--split-by`` groups captures by (``random`` is the study's ungrouped protocol).
GROUPINGS = ("source", "session", "day", "campaign", "device", "location")
SPLIT_MODES = ("random", *GROUPINGS)
#: Groupings whose groups are many and small: repeated grouped 80/20 splits, not one group out per trial.
MANY_GROUPS = ("source", "session")
#: Groupings that leave one group out per trial whatever their count: ``--trials`` does not apply to them.
ONE_OUT = tuple(g for g in GROUPINGS if g not in MANY_GROUPS)
#: A quiet gap longer than this (seconds) between two captures of a campaign starts a new session.
SESSION_GAP_S = 30 * 60

_PLURAL = {"source": "sources", "session": "sessions", "day": "days", "campaign": "campaigns",
           "device": "devices", "location": "locations"}


def plural(grouping: str) -> str:
    return _PLURAL.get(grouping, grouping + "s")


# -- the groups of captures --------------------------------------------------------------------


def capture_groups(captures: Sequence[Any]) -> dict[str, list[str]]:
    """Every grouping of :data:`GROUPINGS` for catalog ``Capture`` rows, in their order."""
    out: dict[str, list[str]] = {g: [] for g in GROUPINGS}
    # A defended capture (echolab.analysis.defenses) is grouped with its original, so twins share a side.
    roots = [getattr(c, "original", None) or c for c in captures]
    sessions = sessions_of(roots)
    for own, cap, session in zip(captures, roots, sessions):
        campaign = cap.campaign
        out["source"].append(cap.source_sha256 or cap.sha256 or f"capture {cap.id}")
        out["session"].append(session)
        when = _time(cap)
        out["day"].append(when.date().isoformat() if when else "unknown day")
        out["campaign"].append(own.campaign.name if own.campaign is not None else "")
        device = campaign.device if campaign is not None else None
        out["device"].append(device.name if device is not None else (cap.device_ip or "unknown device"))
        out["location"].append((campaign.location if campaign is not None else None) or "unknown location")
    return out


def sessions_of(captures: Sequence[Any], gap_s: float = SESSION_GAP_S) -> list[str]:
    """The collection session of each capture (see the module's docstring).

    A capture without a time is a session of its own source (its long capture,
    or itself): nothing says which others were taken with it.
    """
    names: dict[int, str] = {}
    by_campaign: dict[str, list[tuple[datetime, datetime, int]]] = {}
    for i, cap in enumerate(captures):
        start = _time(cap)
        campaign = cap.campaign.name if cap.campaign is not None else ""
        if start is None:
            names[i] = f"{campaign} source {(cap.source_sha256 or cap.sha256 or str(cap.id))[:12]}"
            continue
        end = cap.ended_at if getattr(cap, "ended_at", None) is not None else start
        by_campaign.setdefault(campaign, []).append((start, max(start, end), i))
    for campaign, items in by_campaign.items():
        items.sort()
        number, last_end = 0, None
        for start, end, i in items:
            if last_end is not None and (start - last_end).total_seconds() > gap_s:
                number += 1
            last_end = end if last_end is None else max(last_end, end)
            names[i] = f"{campaign} session {number + 1}"
    # Pieces of one long capture are one session: the session of its first piece.
    first: dict[str, str] = {}
    for i, cap in enumerate(captures):
        if cap.source_sha256:
            names[i] = first.setdefault(cap.source_sha256, names[i])
    return [names[i] for i in range(len(captures))]


def _time(cap: Any) -> datetime | None:
    return getattr(cap, "started_at", None)


# -- what the data allows --------------------------------------------------------------------


def min_per_class(test_size: float, cv_folds: int) -> int:
    """Captures a class needs for a stratified split with *cv_folds*-fold CV on its training part."""
    return max(cv_folds + 1, math.ceil(cv_folds / (1.0 - test_size)))


def check_captures(y: np.ndarray, *, test_size: float = 0.2, cv_folds: int = 3) -> None:
    """Raise one :class:`ProtocolError` line naming every class with too few captures for random splits."""
    need = min_per_class(test_size, cv_folds)
    counts = Counter(np.asarray(y).tolist())
    short = sorted((c for c in counts if counts[c] < need), key=lambda c: (counts[c], c))
    if short:
        listed = ", ".join(f"{c} has {counts[c]}" for c in short)
        raise ProtocolError(
            f"too few captures for the protocol ({_pct(1 - test_size)}/{_pct(test_size)} stratified splits with "
            f"{cv_folds}-fold cross-validation on the training part need at least {need} per class): {listed}; "
            f"collect more of {'it' if len(short) == 1 else 'them'}, or leave {'it' if len(short) == 1 else 'them'} out")
    if len(counts) < 2:
        raise ProtocolError(f"the data holds {len(counts)} class; a classifier needs at least 2")


def check_trials_option(split_by: str, trials: int | None) -> None:
    """Refuse ``--trials`` with a split mode that makes one trial per group (it would be ignored)."""
    if trials is not None and split_by in ONE_OUT:
        raise ProtocolError(
            f"--trials does not apply to --split-by {split_by}: it makes one trial per {split_by}, leaving "
            f"each out in turn", hint="leave out --trials, or split by source or session for repeated splits")


def unsplittable(y: Sequence[str], groups: Sequence[str]) -> dict[str, int]:
    """Classes whose captures lie in fewer than 2 groups (``{class: groups}``): no grouped split can
    train on one of their groups and test on another."""
    per_class: dict[str, set[str]] = {}
    for label, group in zip(y, groups):
        per_class.setdefault(str(label), set()).add(str(group))
    return {c: len(g) for c, g in sorted(per_class.items()) if len(g) < 2}


def drop_unsplittable(src: Any, grouping: str) -> Any:
    """*src* (a ``DataSource``) without the classes that cannot be split by *grouping*; its notes say which."""
    if grouping not in src.groupings:
        return src
    short = unsplittable(src.y.tolist(), src.groupings[grouping].tolist())
    if not short:
        return src
    note = (f"{len(short)} classes in only one {grouping} left out (--split-by {grouping} cannot test them on "
            f"unseen {plural(grouping)}): {', '.join(short)}")
    return src.subset(~np.isin(src.y, list(short)), note)


def _pct(fraction: float) -> str:
    return f"{round(100 * fraction):d}"


# -- random splits (the study's) -------------------------------------------------------------


def random_splits(y: np.ndarray, trials: int, seed: int, test_size: float = 0.2, cv_folds: int = 3) -> list[Split]:
    """The study's trials: independent stratified random splits."""
    from sklearn.model_selection import StratifiedShuffleSplit

    if trials < 1:
        raise ProtocolError("the number of trials must be at least 1")
    check_captures(y, test_size=test_size, cv_folds=cv_folds)
    n_classes = len(set(np.asarray(y).tolist()))
    n_test = math.ceil(test_size * len(y))
    if n_test < n_classes:
        raise ProtocolError(f"a {_pct(test_size)}% test part holds {n_test} captures, fewer than the {n_classes} "
                            f"classes; collect more captures")
    splits = []
    for t in range(trials):
        sss = StratifiedShuffleSplit(n_splits=1, test_size=test_size, random_state=trial_seed(seed, t))
        train, test = next(sss.split(np.zeros(len(y)), y))
        splits.append(Split(t, train, test))
    return splits


# -- grouped splits ----------------------------------------------------------------------------


def plan_grouped(y: np.ndarray, groups: np.ndarray, grouping: str, *, trials: int, seed: int,
                 test_size: float = 0.2, cv_folds: int = 3) -> list[Split]:
    """The trials of ``--split-by GROUPING``: repeated grouped 80/20 splits or one group out per trial."""
    n_groups = len(set(np.asarray(groups).tolist()))
    if n_groups < 2:
        raise ProtocolError(f"--split-by {grouping} needs captures from at least 2 {plural(grouping)}; "
                            f"the data has {n_groups}")
    if grouping in MANY_GROUPS and n_groups >= round(1 / test_size):
        return grouped_splits(y, groups, grouping, trials=trials, seed=seed, test_size=test_size, cv_folds=cv_folds)
    return leave_one_group_out(y, groups, grouping, cv_folds=cv_folds)


def grouped_splits(y: np.ndarray, groups: np.ndarray, grouping: str, *, trials: int, seed: int,
                   test_size: float = 0.2, cv_folds: int = 3) -> list[Split]:
    """Repeated grouped, stratified splits: about *test_size* of the groups held out per trial.

    Every class needs groups on both sides, so each must come from at least 2
    groups; the error names the classes that do not.
    """
    from sklearn.model_selection import StratifiedGroupKFold

    y, groups = np.asarray(y).astype(str), np.asarray(groups).astype(str)
    per_class = {c: len(set(groups[y == c].tolist())) for c in sorted(set(y.tolist()))}
    short = [c for c, n in per_class.items() if n < 2]
    if short:
        listed = ", ".join(f"{c} ({per_class[c]} {grouping if per_class[c] == 1 else plural(grouping)})"
                           for c in short)
        raise ProtocolError(f"--split-by {grouping} needs every class in at least 2 {plural(grouping)} (one to train "
                            f"on, one to test on); too few: {listed}",
                            hint="--drop-unsplittable leaves such classes out (and says which)")
    folds = max(2, round(1 / test_size))
    splits = []
    for t in range(trials):
        sgkf = StratifiedGroupKFold(n_splits=folds, shuffle=True, random_state=trial_seed(seed, t) % 2**31)
        train, test = next(sgkf.split(np.zeros(len(y)), y, groups))
        split = restrict_to_shared(Split(t, train, test), y, cv_folds)
        if split is not None:
            splits.append(split)
    if not splits:
        raise ProtocolError(f"no {grouping} split leaves 2 classes with {cv_folds} training captures and a test "
                            f"capture each; collect more {plural(grouping)}")
    return splits


def leave_one_group_out(y: np.ndarray, groups: np.ndarray, grouping: str = "campaign", *,
                        cv_folds: int = 3) -> list[Split]:
    """One trial per group, in sorted order: train on every other group, test on it.

    Every trial is evaluated on the classes *all* groups hold (each with at
    least *cv_folds* training captures whichever group is left out), so every
    trial measures the same task and the per-group figures compare. When fewer
    than 2 classes are common to all groups, each trial falls back to the
    classes both of its sides hold; a group that shares fewer than 2 such
    classes with the others gives no trial, and the error names the classes
    when none does.
    """
    y, groups = np.asarray(y).astype(str), np.asarray(groups).astype(str)
    names = sorted(set(groups.tolist()))
    if len(names) < 2:
        raise ProtocolError(f"--split-by {grouping} needs captures from at least 2 {plural(grouping)}; "
                            f"the data has {len(names)}")
    idx = np.arange(len(groups))
    common = common_classes(y, groups, cv_folds)
    if len(common) >= 2:
        keep = np.isin(y, common)
        dropped = tuple(sorted(set(y.tolist()) - set(common)))
        return [Split(t, idx[keep & (groups != name)], idx[keep & (groups == name)], name, common, dropped=dropped,
                      common=True) for t, name in enumerate(names)]
    splits = []
    for name in names:
        split = restrict_to_shared(Split(len(splits), idx[groups != name], idx[groups == name], name), y, cv_folds)
        if split is not None:
            splits.append(split)
    if not splits:
        per_class = {c: sorted(set(groups[y == c].tolist())) for c in sorted(set(y.tolist()))}
        listed = ", ".join(f"{c} ({len(g)} {grouping if len(g) == 1 else plural(grouping)})"
                           for c, g in per_class.items() if len(g) < 2)
        raise ProtocolError(f"--split-by {grouping}: no {grouping} shares 2 classes with the others; classes "
                            f"need captures in at least 2 {plural(grouping)}; too few: {listed or 'none'}")
    return splits


def common_classes(y: np.ndarray, groups: np.ndarray, cv_folds: int) -> tuple[str, ...]:
    """The classes every group holds, with at least *cv_folds* captures outside each group (sorted)."""
    y, groups = np.asarray(y).astype(str), np.asarray(groups).astype(str)
    names = sorted(set(groups.tolist()))
    out = []
    for c in sorted(set(y.tolist())):
        in_class = y == c
        per_group = Counter(groups[in_class].tolist())
        total = int(in_class.sum())
        if all(per_group.get(g, 0) >= 1 and total - per_group[g] >= cv_folds for g in names):
            out.append(c)
    return tuple(out)


def restrict_to_shared(split: Split, y: np.ndarray, cv_folds: int) -> Split | None:
    """*split* on the classes both sides hold (at least *cv_folds* training captures, one test capture)."""
    train_counts = Counter(y[split.train].tolist())
    test_classes = set(y[split.test].tolist())
    shared = sorted(c for c in test_classes if train_counts.get(c, 0) >= cv_folds)
    if len(shared) < 2:
        return None
    everything = set(train_counts) | test_classes
    if set(shared) == everything:
        return Split(split.trial, split.train, split.test, split.test_group, tuple(shared))
    keep = np.isin(y, shared)
    return Split(split.trial, split.train[keep[split.train]], split.test[keep[split.test]], split.test_group,
                 tuple(shared), dropped=tuple(sorted(everything - set(shared))))


def group_counts(y: Iterable[str], groups: Iterable[str]) -> dict[str, dict[str, int]]:
    """Captures per group and class: ``{group: {class: n}}``."""
    out: dict[str, dict[str, int]] = {}
    for g, c in zip(groups, y):
        out.setdefault(str(g), {}).setdefault(str(c), 0)
        out[str(g)][str(c)] += 1
    return dict(sorted(out.items()))


def describe_groups(groups: Mapping[str, Sequence[str]]) -> dict[str, int]:
    """How many distinct groups each grouping has."""
    return {g: len(set(v)) for g, v in groups.items()}
