"""Anonymity sets: every request of a set of commands sent on one schedule, so the set is all that shows.

The defenses of the other modules know nothing of the request they shape. A
voice service does: once it has recognised the command it knows what it will
answer. Wang et al. (USENIX Security 2014) and Nithyanand et al. (Glove, WPES
2014) proved what that allows for web pages: group the pages into anonymity
sets and send every page of a set as the same supersequence, and no attack can
tell the pages of a set apart. Ahmed et al. (USENIX Security 2023) name
grouping commands this way as the next step against voice-command
fingerprinting. ``anonsets`` is that defense for a voice assistant's traffic:

* **fit** learns, from the lab's labelled captures, each class's envelope:
  for every ``bin`` seconds since the request's first packet, the ``q``
  quantile over the class's requests of the ``size``-byte cells that bin's
  bytes fill, per direction. It splits the classes into ``sets`` anonymity
  sets of classes next to each other in answer size, choosing the split
  (contiguous in that order, by dynamic programming) that sends the fewest
  cells. A set's schedule sends, in each bin, as many cells as any of its
  classes' envelopes needed in the bin before: the bytes of one bin go out in
  the next, so a request the envelope covers is carried whole, each byte at
  most about two bins late.
* **apply** sends a request's answer (cloud to device) on its set's schedule
  and the device's side on one schedule shared by every request (the device
  uploads before the command is recognised, so it cannot know the set): every
  packet on the wire is a ``size``-byte cell, spread evenly over its bin,
  carrying the real bytes that have arrived by then (never earlier) or none (a
  dummy). Bytes beyond the schedule, from a request larger or later than its
  set's envelope, go out after it, as soon as they have arrived: they cost
  delay and are the only part that can tell commands of a set apart. A class
  the schedules were not learned from is sent on the schedule of the set with
  the largest answers.

With ``q = 1`` every request the schedules were learned from fits its set's
schedule, so within a set those requests are the same sequence of cells: an
attacker learns the set and nothing more, which for C equally frequent
classes in S sets is an accuracy of S / C (two sets: twice chance). That is
the ideal case; a new request may overflow. echolab learns the schedules from
a history of the captures and defends only the others
(:func:`echolab.analysis.defenses.dataset.learned_defense`). The price is the
padding of every request to its set's envelope.
"""

from __future__ import annotations

from typing import Any, Sequence

import numpy as np

from echolab.analysis.defenses.registry import Defense, Param
from echolab.analysis.defenses.trace import Defended, DefenseError, as_arrays, direction


def cells_per_bin(times: np.ndarray, nbytes: np.ndarray, width: float, bins: int, size: int) -> np.ndarray:
    """The *size*-byte cells each of *bins* bins of *width* seconds would fill with the bytes sent in it."""
    edges = width * np.arange(bins + 1)
    cum = np.concatenate([[0], np.cumsum(nbytes, dtype=np.int64)])
    per_bin = np.diff(cum[np.searchsorted(times, edges, side="left")])
    per_bin[-1] += int(cum[-1]) - int(per_bin.sum())  # a packet at the very end counts in the last bin
    return -(-per_bin // size)


def bins_spanned(times: np.ndarray, width: float) -> int:
    """How many bins of *width* seconds a sequence starting at 0 covers (at least 1)."""
    return int(times[-1] // width) + 1 if len(times) else 1


def cell_times(cells: np.ndarray, width: float) -> np.ndarray:
    """The send time of every cell of a schedule (cumulative cells per bin): spread evenly over each bin."""
    per_bin = np.diff(np.concatenate([[0], cells]))
    bin_of = np.repeat(np.arange(len(cells)), per_bin)
    first = np.repeat(np.concatenate([[0], cells[:-1]]), per_bin)
    j = np.arange(int(cells[-1]) if len(cells) else 0) - first
    return width * (bin_of + (j + 0.5) / np.repeat(np.maximum(per_bin, 1), per_bin))


def send_on_schedule(times: np.ndarray, nbytes: np.ndarray, slots: np.ndarray, size: int
                     ) -> tuple[np.ndarray, np.ndarray]:
    """One direction's real bytes sent in *size*-byte cells at *slots*, then what is left after them.

    A cell carries what has arrived by its time and is not yet sent, at most
    *size*: the sent total follows S_k = min(S_{k-1} + size, A(t_k)), which is
    S_k = k*size + min(0, min_{j<=k}(A(t_j) - j*size)). The bytes the slots
    did not carry go out after the last slot as soon as they have arrived:
    those waiting at the last slot at once, each later packet's when it
    arrives, in as many cells as they fill. Returns (cell times, real bytes of
    each cell).
    """
    cum = np.concatenate([[0], np.cumsum(nbytes, dtype=np.int64)])
    k = np.arange(1, len(slots) + 1, dtype=np.int64)
    arrived = cum[np.searchsorted(times, slots + 1e-12, side="right")]
    sent = k * size + np.minimum(0, np.minimum.accumulate(arrived - k * size))
    real = np.diff(np.concatenate([[0], sent]))
    done = int(sent[-1]) if len(sent) else 0
    left = np.clip(cum[1:] - np.maximum(cum[:-1], done), 0, None)  # each packet's bytes not yet carried
    if not left.any():
        return slots, real
    start = float(slots[-1]) if len(slots) else 0.0
    when = np.maximum(times, start)  # packets that arrived by the last slot all leave then, together
    moments, group = np.unique(when[left > 0], return_inverse=True)
    owed = np.bincount(group, weights=left[left > 0]).astype(np.int64)  # bytes to send at each moment
    cells = -(-owed // size)
    moment = np.repeat(np.arange(len(owed)), cells)
    first = np.repeat(np.concatenate([[0], np.cumsum(cells)[:-1]]), cells)
    extra_real = np.minimum(size, owed[moment] - (np.arange(len(moment)) - first) * size)
    return np.concatenate([slots, moments[moment]]), np.concatenate([real, extra_real])


class AnonymitySets(Defense):
    """Commands grouped into anonymity sets, each set's answers sent on one learned schedule (module docstring)."""

    name = "anonsets"
    params = (
        Param("sets", "int", 2, "anonymity sets the classes are split into (an attacker learns the set: "
                                "sets / classes of accuracy for equally frequent classes; no more sets than "
                                "classes: each class its own)", 1),
        Param("q", "float", 1.0, "quantile of each class's cells per bin its set's schedule carries on time "
                                 "(1: every request the schedule was learned from)", 0.5, 1.0),
        Param("bin", "float", 0.5, "schedule resolution, seconds", 0.1),
        Param("size", "int", 1500, "every packet on the wire, bytes", 64),
    )
    models = ("the cloud sends each answer on its command's set schedule (it knows the command once recognised); "
              "the device sends on one schedule shared by all requests; every packet is a cell of size bytes; "
              "real bytes wait for a cell (one bin on average, at most about two), bytes beyond the schedule go "
              "after it")
    cite = ("Wang et al., Effective attacks and provable defenses for website fingerprinting, USENIX Security 2014 "
            "(anonymity sets, supersequences); Nithyanand et al., Glove, WPES 2014; grouping voice commands: "
            "Ahmed et al., USENIX Security 2023 (future work)")
    learns = True
    labelled = True

    def fit(self, sequences: Sequence[tuple[Any, Any]], labels: Sequence[str] | None = None) -> "AnonymitySets":
        """Learn each class's envelope, split the classes into sets, and build each set's schedule."""
        if labels is None or len(labels) != len(sequences):
            raise DefenseError("anonsets learns a schedule per command: it needs every capture's label")
        if not sequences:
            raise DefenseError("anonsets learns its schedules from the lab's captures, and none were given")
        width, size = float(self.bin), int(self.size)
        prepared = []
        for times, signed in sequences:
            t, s = as_arrays(times, signed)
            prepared.append((t - t[0] if len(t) else t, s))
        longest = max(bins_spanned(t, width) for t, _ in prepared)
        need = {sign: np.stack([cells_per_bin(*direction(t, s, sign), width, longest, size) for t, s in prepared])
                for sign in (1, -1)}
        label_of = np.asarray([str(x) for x in labels])
        classes = sorted(set(label_of.tolist()))
        envelope = {c: np.quantile(need[-1][label_of == c], self.q, axis=0, method="higher") for c in classes}
        count = {c: int(np.sum(label_of == c)) for c in classes}
        order = sorted(classes, key=lambda c: (int(envelope[c].sum()), c))
        groups = _split(order, min(int(self.sets), len(order)),
                        lambda part: sum(count[c] for c in part) * int(np.max([envelope[c] for c in part], axis=0).sum()))
        self.set_of_: dict[str, int] = {c: g for g, part in enumerate(groups) for c in part}
        self.groups_: list[list[str]] = [list(part) for part in groups]
        self.down_: list[np.ndarray] = [_schedule(np.max([envelope[c] for c in part], axis=0)) for part in groups]
        self.up_: np.ndarray = _schedule(np.quantile(need[1], self.q, axis=0, method="higher"))
        return self

    def set_for(self, label: str | None) -> int:
        """The anonymity set of *label*; a class the schedules were not learned from takes the set of the largest
        answers (the last)."""
        if not hasattr(self, "set_of_"):
            raise DefenseError("anonsets learns its schedules from labelled captures: fit it before applying it")
        if label is None:
            raise DefenseError("anonsets sends each request on its command's schedule: it needs the capture's label")
        return self.set_of_.get(str(label), len(self.groups_) - 1)

    def apply(self, times: Any, sizes: Any, seed: int = 0, label: str | None = None) -> Defended:
        group = self.set_for(label)
        t, s = as_arrays(times, sizes)
        if not len(s):
            return Defended.unchanged(t, s)
        rel = t - t[0]
        parts = []
        for sign, cells in ((1, self.up_), (-1, self.down_[group])):
            dt, db = direction(rel, s, sign)
            slots, real = send_on_schedule(dt, db, cell_times(cells, float(self.bin)), int(self.size))
            wire = np.full(len(slots), int(self.size), dtype=np.int64)
            parts.append((slots + t[0], sign * np.maximum(wire, real), real))
        return Defended.merge(parts)


def _schedule(envelope: np.ndarray) -> np.ndarray:
    """Cumulative cells by the end of each bin: each bin sends the cells the bin before it filled."""
    per_bin = np.concatenate([[0], np.asarray(envelope, dtype=np.int64)])
    nonzero = np.flatnonzero(per_bin)
    per_bin = per_bin[: nonzero[-1] + 1] if len(nonzero) else per_bin[:1]
    return np.cumsum(per_bin)


def _split(order: list[str], parts: int, cost) -> list[list[str]]:
    """*order* cut into *parts* contiguous groups of least total ``cost(group)`` (dynamic programming)."""
    n = len(order)
    if parts >= n:
        return [[c] for c in order]
    table = {(i, j): cost(order[i:j]) for i in range(n) for j in range(i + 1, n + 1)}
    best = {(0, 0): (0, None)}
    for m in range(1, parts + 1):
        for j in range(m, n - (parts - m) + 1):
            options = [(best[(i, m - 1)][0] + table[(i, j)], i) for i in range(m - 1, j) if (i, m - 1) in best]
            if options:
                best[(j, m)] = min(options)
    cuts, j = [], n
    for m in range(parts, 0, -1):
        i = best[(j, m)][1]
        cuts.append(order[i:j])
        j = i
    return cuts[::-1]
