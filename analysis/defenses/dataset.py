"""Defended data sets in the catalog: a campaign of packet traces, each made by a defense from a capture.

:func:`defend_campaign` applies a defense to every good, undefended capture of
a campaign (or of the catalog) and records each result as a trace capture
(``time,size,direction``; :mod:`echolab.captures.trace`) in a new campaign of
backend ``defended``. Each keeps its original's label, prompt and times and
names it (``Capture.defended_from``) with the defense's spec (``Capture.defense``),
so every feature set computed from a sequence (sequence, kfp, cumul), the
comparison, the leakage check and the report read it as they read any
campaign; the study's sets, which need TCP headers, refuse it in one line.
Grouped splits put a defended capture in its original's source and session
(:func:`echolab.analysis.compare.splits.capture_groups`), so a defended request
and its undefended twin always fall on the same side.

Each capture's defense is seeded from (seed, original capture id): the same
command gives the same traces.

A defense that learns from the lab's captures (WTF-PAD's histograms, the
anonymity sets' schedules) learns from a history: a share of the captures
(:data:`HISTORY_SHARE` of each class, drawn under the seed) that it then does
not defend. Every capture it defends is new traffic to it, as every request is
to a deployed defense; a capture it had learned from would be the ideal case
(with the anonymity sets, exactly its set's schedule).
"""

from __future__ import annotations

import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Sequence

import numpy as np

from echolab.analysis.defenses.overhead import Overhead, overhead, total_overhead
from echolab.analysis.defenses.registry import Defense, parse_defense
from echolab.analysis.defenses.trace import Defended, DefenseError, as_arrays, check_limits
from echolab.captures.trace import write_trace
from echolab.progress import ProgressCallback

if TYPE_CHECKING:
    from echolab.db.catalog import Catalog
    from echolab.db.records import Capture


def capture_seed(seed: int, capture_id: int) -> int:
    """The seed of one capture's defense: independent streams per (seed, capture)."""
    return int(np.random.SeedSequence([int(seed), int(capture_id)]).generate_state(1)[0])


@dataclass
class DefendReport:
    """What :func:`defend_campaign` wrote: the campaign, per-capture overheads, what it skipped."""

    campaign: str
    defense: str
    history: list[int] = field(default_factory=list)  # captures a learning defense learned from (not defended)
    written: int = 0
    overheads: dict[int, Overhead] = field(default_factory=dict)  # original capture id -> its overhead
    skipped: list[tuple[int, str]] = field(default_factory=list)

    def totals(self) -> dict[str, float]:
        return total_overhead(list(self.overheads.values()))


def undefended_captures(catalog: "Catalog", campaign: str | int | None = None) -> list["Capture"]:
    """The good captures of *campaign* (default: the catalog) that no defense made or shaped.

    ``Capture.defense`` names the defense of a trace a defense made (with
    ``defended_from``) and of a capture the simulated lab collected under a live
    defense (``collect --defense``, without ``defended_from``).
    """
    return [c for c in catalog.captures(campaign=campaign) if c.defense is None]


def sequences_of(catalog: "Catalog", captures: Sequence["Capture"], *, device_ip: str | None = None,
                 progress: ProgressCallback | None = None) -> tuple[dict[int, tuple[np.ndarray, np.ndarray]],
                                                                  dict[int, str]]:
    """(capture id -> (times in seconds, signed sizes), capture id -> why unusable), through the feature cache.

    Each sequence is in time order: a capture engine with several queues may write a packet a little
    before one it followed on the wire, and a defense schedules packets by their time (stable, so packets
    of one time keep the file's order).
    """
    from echolab.analysis.features.store import build_features

    report = build_features(catalog, captures=list(captures), device_ip=device_ip, progress=progress)
    seqs = {}
    for cid, r in report.records.items():
        times, sizes = np.asarray(r.seq_times_us, dtype=np.int64), np.asarray(r.seq_sizes, dtype=np.int64)
        order = np.argsort(times, kind="stable")
        seqs[cid] = (times[order] / 1e6, sizes[order])
    return seqs, dict(report.errors)


def fitted_defense(spec: str | Defense, sequences: Sequence[tuple[np.ndarray, np.ndarray]],
                   labels: Sequence[str] | None = None, names: Sequence[str] | None = None) -> Defense:
    """The defense of *spec*, fitted on *sequences* and their *labels* (what WTF-PAD learns its histograms from,
    and anonymity sets their schedules).

    A sequence longer or larger than a defense is applied to (:func:`check_limits`) is not learned from
    either: :class:`DefenseError` naming it (by *names*, else its position).
    """
    defense = parse_defense(spec) if isinstance(spec, str) else spec
    if not defense.learns:
        return defense
    for k, (times, sizes) in enumerate(sequences):
        try:
            check_limits(*as_arrays(times, sizes))
        except DefenseError as exc:
            raise DefenseError(f"{defense.name} cannot learn from {names[k] if names else f'sequence {k}'}: {exc}",
                               hint=exc.hint) from exc
    return defense.fit(list(sequences), None if labels is None else list(labels))


#: The share of each class's captures a learning defense learns from (its history) and then does not defend.
HISTORY_SHARE = 0.2


@dataclass
class Learned:
    """A defense ready to apply, and the captures it learned from (none for a defense that learns nothing)."""

    defense: Defense
    history: list[int] = field(default_factory=list)


def learned_defense(spec: str | Defense, sequences: dict[int, tuple[np.ndarray, np.ndarray]], *, seed: int = 0,
                    labels: dict[int, str] | None = None, names: dict[int, str] | None = None) -> Learned:
    """The defense of *spec*, learned (if it learns) from a history of the captures, and that history.

    The history is :data:`HISTORY_SHARE` of each class's captures (at least
    one, and never all of a class with more than one), drawn under *seed*; a
    defense that needs labels (:attr:`Defense.labelled`) needs every capture's.
    *names* says how an error names a capture (default ``capture ID``).
    """
    defense = parse_defense(spec) if isinstance(spec, str) else type(spec)(**spec.settings)
    if not defense.learns:
        return Learned(defense)
    if defense.labelled and (labels is None or any(cid not in labels for cid in sequences)):
        raise DefenseError(f"{defense.name} learns from labelled captures: it needs every capture's label")
    rng = np.random.default_rng(seed)
    by_label: dict[str, list[int]] = {}
    for cid in sorted(sequences):
        by_label.setdefault(labels.get(cid, "") if labels is not None else "", []).append(cid)
    history: list[int] = []
    for _, ids in sorted(by_label.items()):
        take = max(1, round(HISTORY_SHARE * len(ids))) if len(ids) > 1 else len(ids)
        history += sorted(int(cid) for cid in rng.permutation(ids)[:take])
    history.sort()
    fitted = fitted_defense(defense, [sequences[cid] for cid in history],
                            None if labels is None else [labels.get(cid, "") for cid in history],
                            [(names or {}).get(cid, f"capture {cid}") for cid in history])
    return Learned(fitted, history)


def defend_campaign(catalog: "Catalog", spec: str | Defense, *, campaign: str | int | None = None,
                    name: str | None = None, seed: int = 0, device_ip: str | None = None,
                    progress: ProgressCallback | None = None) -> DefendReport:
    """Write the defended twin of every good, undefended capture of *campaign* (default: all) as a new campaign.

    The campaign is called *name* (default ``ORIGINAL+SPEC``, ``all+SPEC``
    for the whole catalog). Raises :class:`DefenseError` for a bad spec, a
    campaign name in use, or nothing to defend.
    """
    from echolab.db.records import Backend, CampaignStatus

    defense = parse_defense(spec) if isinstance(spec, str) else spec
    source = catalog.campaign(campaign) if campaign is not None else None
    captures = undefended_captures(catalog, source.id if source is not None else None)
    if not captures:
        where = f"campaign {source.name!r}" if source is not None else "the catalog"
        raise DefenseError(f"{where} has no good undefended captures to defend")
    name = name or f"{source.name if source is not None else 'all'}+{defense.spec}"
    if any(c.name == name for c in catalog.campaigns()):
        raise DefenseError(f"a campaign named {name!r} already exists",
                           hint="pass --name, or remove the old defended campaign")
    seqs, errors = sequences_of(catalog, captures, device_ip=device_ip, progress=progress)
    usable = [c for c in captures if c.id in seqs]
    learned = learned_defense(defense, {c.id: seqs[c.id] for c in usable}, seed=seed,
                              labels={c.id: c.label for c in usable}, names={c.id: _named(c) for c in usable})
    defense, history = learned.defense, set(learned.history)
    report = DefendReport(campaign=name, defense=defense.spec, skipped=sorted(errors.items()),
                          history=sorted(history))
    usable = [c for c in usable if c.id not in history]  # what it learned from would be the ideal case
    if not usable:
        raise DefenseError(f"{defense.name} learns from a history of the captures and would have none left to defend",
                           hint="defend a campaign of more captures per class")
    classes = sorted({c.label for c in usable})
    with tempfile.TemporaryDirectory(prefix="echolab-defend-") as tmp, catalog.transaction():
        # one unit: a defense that fails on any capture leaves no campaign, and no trace in the lab
        target = catalog.create_campaign(
            name, backend=Backend.defended.value, classes=classes, status=CampaignStatus.running.value,
            location=source.location if source is not None else None,
            device=source.device if source is not None else None,
            settings={"defense": defense.spec, "defense_settings": _jsonable(defense.settings), "seed": seed,
                      "defended_campaign": source.name if source is not None else None,
                      "history": sorted(history)})  # the captures a learning defense learned from, not defended
        for done, cap in enumerate(usable, start=1):
            times, sizes = seqs[cap.id]
            try:
                out = defense.apply(times, sizes, seed=capture_seed(seed, cap.id), label=cap.label)
            except DefenseError as exc:
                raise DefenseError(f"cannot defend {_named(cap)} with {defense.spec}: {exc}", hint=exc.hint) from exc
            report.overheads[cap.id] = overhead(times, sizes, out)
            path = write_trace(Path(tmp) / f"{cap.id}.csv", out.times_us(), out.sizes.tolist())
            catalog.add_capture(target, cap.label, path, move=True, prompt=cap.prompt,
                                started_at=cap.started_at, ended_at=cap.ended_at, synthetic=cap.synthetic,
                                source={"defended_from": cap.id, "defense": defense.spec})
            report.written += 1
            if progress is not None:
                progress(f"defending with {defense.spec}", done, len(usable))
        tot = report.totals()
        target.settings = {**target.settings, "overhead": tot}
        catalog.set_campaign_status(target, CampaignStatus.done.value)
    return report


def defended_sequences(defense: Defense, sequences: dict[int, tuple[np.ndarray, np.ndarray]], *,
                       seed: int = 0, labels: dict[int, str] | None = None
                       ) -> tuple[dict[int, Defended], dict[int, Overhead]]:
    """The defended sequence and overhead of each (capture id -> sequence), in memory (nothing is written).

    *labels* (capture id -> class) is what a labelled defense (anonymity sets) reads.
    """
    out, cost = {}, {}
    for cid, (times, sizes) in sequences.items():
        try:
            out[cid] = defense.apply(times, sizes, seed=capture_seed(seed, cid),
                                     label=None if labels is None else labels.get(cid))
        except DefenseError as exc:
            raise DefenseError(f"cannot defend capture {cid} with {defense.spec}: {exc}", hint=exc.hint) from exc
        cost[cid] = overhead(times, sizes, out[cid])
    return out, cost


def _named(cap: "Capture") -> str:
    """``capture ID (PATH, imported from FILE)``: the capture as the lab and its sender know it."""
    where = ", ".join(filter(None, [getattr(cap, "path", None),
                                    f"imported from {cap.source_file}" if getattr(cap, "source_file", None) else None]))
    return f"capture {cap.id} ({where})" if where else f"capture {cap.id}"


def _jsonable(settings: dict[str, Any]) -> dict[str, Any]:
    return {k: list(v) if isinstance(v, tuple) else v for k, v in settings.items()}
