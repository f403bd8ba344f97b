"""What to ask next: classes interleaved in a seeded shuffled order, prompts without repetition.

Both choices are pure functions of the campaign's seed and how many good
captures each class already has, so a resumed campaign continues exactly
where the interrupted one would have gone, with no schedule stored anywhere.

Interleaving: round r gives every class that still needs captures its
(r+1)-th capture, in an order shuffled for that round. The study collected
one class at a time and could not rule out that server load at collection
time confounded classes; interleaving removes that doubt.
"""

from __future__ import annotations

import hashlib
from typing import Mapping, Sequence, TypeVar

import numpy as np

T = TypeVar("T")


def _rng(seed: int, *parts: object) -> np.random.Generator:
    digest = hashlib.sha256(repr((seed, *parts)).encode()).digest()
    return np.random.default_rng(int.from_bytes(digest[:8], "little"))


def round_order(classes: Sequence[str], seed: int, round_index: int) -> list[str]:
    """The shuffled class order of one round."""
    order = list(classes)
    _rng(seed, "round", round_index).shuffle(order)
    return order


def next_class(counts: Mapping[str, int], classes: Sequence[str], target: int, seed: int) -> str | None:
    """The class to collect next, or None when every class has *target* good captures."""
    behind = [c for c in classes if counts.get(c, 0) < target]
    if not behind:
        return None
    current_round = min(counts.get(c, 0) for c in behind)
    for label in round_order(classes, seed, current_round):
        if counts.get(label, 0) == current_round:
            return label
    raise AssertionError("unreachable: some class is at the current round")


def pick_prompt(prompts: Sequence[T], label: str, index: int, seed: int) -> T:
    """The prompt for the *index*-th good capture of *label*.

    Prompts are used in a shuffled order without repetition until the list
    is exhausted; then a new shuffled pass begins. A failed attempt does not
    advance *index*, so it is retried with the same prompt.
    """
    if not prompts:
        raise ValueError(f"class {label!r} has no prompts")
    cycle, position = divmod(index, len(prompts))
    order = _rng(seed, "prompts", label, cycle).permutation(len(prompts))
    return prompts[int(order[position])]
