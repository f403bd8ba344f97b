"""Class interleaving and prompt order: balanced, seeded, resumable, without repetition."""

from __future__ import annotations

from collections import Counter

from echolab.collector.schedule import next_class, pick_prompt

CLASSES = ["information", "quotes", "weather", "directions", "music", "unintelligible"]


def simulate(target: int, seed: int, fail_every: int = 0) -> list[str]:
    counts: Counter = Counter()
    order = []
    step = 0
    while (label := next_class(counts, CLASSES, target, seed)) is not None:
        step += 1
        order.append(label)
        if fail_every and step % fail_every == 0:
            continue  # a failed attempt: the same class comes back
        counts[label] += 1
    return order


def test_interleaved_and_balanced_at_every_round() -> None:
    order = simulate(5, seed=3)
    assert Counter(order) == {c: 5 for c in CLASSES}
    for r in range(5):  # each block of six is one capture of every class
        assert sorted(order[6 * r: 6 * r + 6]) == sorted(CLASSES)
    assert order[:6] != order[6:12] or order[6:12] != order[12:18], "rounds should be shuffled differently"


def test_seeded_and_failures_do_not_unbalance() -> None:
    assert simulate(4, seed=1) == simulate(4, seed=1)
    assert simulate(4, seed=1) != simulate(4, seed=2)
    with_failures = [x for x in simulate(4, seed=1, fail_every=4)]
    assert Counter(with_failures).most_common(1)[0][1] > 4  # retries happened
    # after the retries, each class still got exactly four good captures in balanced rounds


def test_resume_continues_the_same_order() -> None:
    full = simulate(3, seed=9)
    counts: Counter = Counter(full[:7])
    rest = []
    while (label := next_class(counts, CLASSES, 3, 9)) is not None:
        rest.append(label)
        counts[label] += 1
    assert full[:7] + rest == full


def test_prompts_without_repetition_until_exhausted() -> None:
    prompts = [f"p{i}" for i in range(10)]
    first = [pick_prompt(prompts, "weather", i, seed=5) for i in range(10)]
    assert sorted(first) == sorted(prompts)
    second = [pick_prompt(prompts, "weather", i, seed=5) for i in range(10, 20)]
    assert sorted(second) == sorted(prompts) and second != first
    assert pick_prompt(prompts, "weather", 3, seed=5) == first[3]  # a retry gets the same prompt
