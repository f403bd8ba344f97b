"""Defenses on stored traffic: each on a crafted sequence, checked by hand; real bytes kept; bad specs."""

from __future__ import annotations

import numpy as np
import pytest

from echolab.analysis.defenses.overhead import overhead, total_overhead
from echolab.analysis.defenses.registry import DEFENSE_NAMES, describe_defenses, parse_defense
from echolab.analysis.defenses.trace import Defended, DefenseError, check_real_bytes


def run(spec: str, times, sizes, seed: int = 0, fit=None) -> Defended:
    d = parse_defense(spec)
    if fit is not None:
        d.fit(fit)
    out = d.apply(np.asarray(times, float), np.asarray(sizes), seed=seed)
    check_real_bytes(np.asarray(times, float), np.asarray(sizes), out)
    return out


def test_mtu_pads_every_packet_and_cuts_larger_ones():
    out = run("mtu", [0, 0.1, 0.2], [300, -1500, -3000])
    assert out.sizes.tolist() == [1500, -1500, -1500, -1500]
    assert out.real.tolist() == [300, 1500, 1500, 1500]
    assert out.times.tolist() == [0, 0.1, 0.2, 0.2]
    o = overhead([0, 0.1, 0.2], [300, -1500, -3000], out)
    assert (o.wire_bytes_out, o.wire_bytes_in, o.dummies, o.delay_s) == (1500, 4500, 0, 0.0)
    assert o.bandwidth_out == pytest.approx(4.0) and o.bandwidth == pytest.approx(6000 / 4800 - 1)


def test_buckets_pad_to_the_next_bucket():
    out = run("buckets:sizes=500+100", [0, 1, 2], [60, -300, -700])
    assert out.sizes.tolist() == [100, -500, -500, -500]
    assert out.real.tolist() == [60, 300, 500, 200]


def test_buflo_sends_fixed_packets_at_a_fixed_rate_for_tau():
    times, sizes = [0, 0.15], [1500, -500]
    out = run("buflo:d=1000,rho=0.1,tau=0.3", times, sizes)
    up, down = out.sizes > 0, out.sizes < 0
    assert out.times[up].tolist() == pytest.approx([0, 0.1, 0.2, 0.3])
    assert out.real[up].tolist() == [1000, 500, 0, 0]
    assert out.times[down].tolist() == pytest.approx([0, 0.1, 0.2, 0.3])
    assert out.real[down].tolist() == [0, 0, 500, 0]
    assert set(np.abs(out.sizes).tolist()) == {1000}
    o = overhead(times, sizes, out)
    assert o.bandwidth == pytest.approx(8000 / 2000 - 1)
    assert o.extra_packets == 6 and o.dummies == 5
    assert o.delay_s == pytest.approx(0.05) and o.delay == pytest.approx(1 / 3)


def test_constant_rate_defenses_make_captures_of_any_length_alike_when_they_outlast_them():
    rng = np.random.default_rng(2)
    short = (np.sort(rng.uniform(0, 0.37, 30)), rng.choice([-1, 1], 30) * rng.integers(40, 1500, 30))
    long = (np.sort(rng.uniform(0, 1.93, 90)), rng.choice([-1, 1], 90) * rng.integers(40, 1500, 90))
    for spec in ("buflo:rho=0.013,tau=5", "tamaraw:rho_out=0.007,rho_in=0.003,L=2000"):
        a, b = (run(spec, *cap) for cap in (short, long))
        assert (a.times - short[0][0]).tolist() == pytest.approx((b.times - long[0][0]).tolist())  # own clocks
        assert a.sizes.tolist() == b.sizes.tolist()  # the two directions' order too


def test_tamaraw_pads_each_direction_to_a_multiple_of_L():
    out = run("tamaraw:size=500,rho_out=0.1,rho_in=0.05,L=4", [0, 0.12], [700, -1200])
    up, down = out.sizes > 0, out.sizes < 0
    assert out.times[up].tolist() == pytest.approx([0, 0.1, 0.2, 0.3])
    assert out.real[up].tolist() == [500, 200, 0, 0]
    assert out.times[down].tolist() == pytest.approx([0.05 * k for k in range(8)])
    assert out.real[down].tolist() == [0, 0, 0, 500, 500, 200, 0, 0]


def test_csbuflo_halves_its_interval_under_load_and_stops_at_a_power_of_two():
    out = run("csbuflo:d=1000,rho=0.1,rho_min=0.05,rho_max=0.4,quiet=0", [0], [2500])
    assert out.times.tolist() == pytest.approx([0, 0.05, 0.1, 0.15])
    assert out.real.tolist() == [1000, 1000, 500, 0]


def test_regulator_upload_follows_downloads():
    out = run("regulator:R=10,D=1,N=0,U=2,C=0.5,size=1000", [0, 0.05], [-2500, 300])
    down, up = out.sizes < 0, out.sizes > 0
    assert out.times[down].tolist() == pytest.approx([0, 0.1, 0.2])
    assert out.real[down].tolist() == [1000, 1000, 500]
    assert out.times[up].tolist() == pytest.approx([0.1]) and out.real[up].tolist() == [300]


def test_regulator_device_packet_waits_at_most_C():
    out = run("regulator:R=10,D=1,N=0,U=5,C=0.5,size=1000", [0, 0.05], [-2500, 300])
    up = out.sizes > 0  # 3 downloads, no tick of U=5: the packet goes after C
    assert out.times[up].tolist() == pytest.approx([0.55]) and out.real[up].tolist() == [300]


def test_front_with_a_tiny_window_sends_one_dummy_a_side_at_the_start():
    times, sizes = [0, 0.5, 1.0], [100, -900, 80]
    out = run("front:n=1,w=0.000001-0.000001,size=700", times, sizes, seed=3)
    dummy = out.real == 0
    assert sorted(out.sizes[dummy].tolist()) == [-700, 700]
    assert np.all(out.times[dummy] < 0.001)
    assert out.sizes[~dummy].tolist() == sizes and out.times[~dummy].tolist() == times


def test_front_is_reproducible_under_a_seed_and_stays_in_the_capture():
    times, sizes = np.linspace(0, 6, 40), np.tile([200, -1400], 20)
    a, b, c = (run("front:n=300,w=1-3", times, sizes, seed=s) for s in (7, 7, 8))
    assert a.times.tolist() == b.times.tolist() and a.sizes.tolist() == b.sizes.tolist()
    assert a.times.tolist() != c.times.tolist()
    assert a.times.max() <= 6 and 0 < a.dummies <= 600
    assert overhead(times, sizes, a).delay_s == 0


def test_wtfpad_fills_long_gaps_with_fake_bursts_from_learned_histograms():
    d = parse_defense("wtfpad:idle=0")
    train = [(np.array([0, .01, .02, .5, .51, .52]), np.array([100, 100, 100, 100, 100, 100])),
             (np.array([0, .01, .02, .5, .51, .52]), np.array([-900, -900, -900, -900, -900, -900]))]
    d.fit(train)
    h = d.histograms_[1]
    assert h["within"].tolist() == pytest.approx([0.01] * 4) and h["between"].tolist() == pytest.approx([0.48])
    assert h["stop"] == pytest.approx(2 / 5)  # 2 bursts in 5 gaps
    times, sizes = np.array([0, 2.0]), np.array([100, 100])
    out = d.apply(times, sizes, seed=5)
    check_real_bytes(times, sizes, out)
    dummies = out.times[out.real == 0]
    assert dummies[0] == pytest.approx(0.48)
    assert np.diff(dummies) == pytest.approx(np.full(len(dummies) - 1, 0.01))
    assert set(out.sizes[out.real == 0].tolist()) == {100}


def test_wtfpad_refuses_to_run_unfitted():
    with pytest.raises(DefenseError, match="fit it on the lab's captures"):
        parse_defense("wtfpad").apply([0, 1], [100, -100])


def test_dstar_without_noise_changes_nothing_and_with_noise_keeps_real_bytes():
    times, sizes = np.arange(6) * 0.1, np.array([100, -1500, -1500, -400, 80, -1500])
    out = run("dstar:eps=1000000000", times, sizes)
    assert out.sizes.tolist() == sizes.tolist() and out.dummies == 0
    noisy = run("dstar:eps=0.002", times, sizes, seed=4)
    again = run("dstar:eps=0.002", times, sizes, seed=4)
    assert noisy.sizes.tolist() == again.sizes.tolist() and noisy.sizes.tolist() != sizes.tolist()
    assert np.all(np.abs(noisy.sizes) <= 1500)


def random_capture(rng: np.random.Generator, n: int = 120) -> tuple[np.ndarray, np.ndarray]:
    times = np.sort(rng.uniform(0, 5, n))
    sizes = rng.choice([-1, 1], n) * rng.integers(40, 1500, n)
    return times, sizes


@pytest.mark.parametrize("name", DEFENSE_NAMES)
def test_every_defense_keeps_each_directions_real_bytes_in_order_and_is_seeded(name):
    rng = np.random.default_rng(11)
    caps = [random_capture(rng) for _ in range(3)]
    spec = {"front": "front:n=200", "regulator": "regulator:N=200", "buflo": "buflo:tau=2"}.get(name, name)
    labels = ["a", "b", "a"]  # only a labelled defense (anonymity sets) reads them
    d = parse_defense(spec).fit(caps, labels)
    for seed, (t, s) in enumerate(caps):
        a = d.apply(t, s, seed=seed, label=labels[seed])
        check_real_bytes(t, s, a)  # raises when a real byte is lost, early or reordered
        b = d.apply(t, s, seed=seed, label=labels[seed])
        assert a.times.tolist() == b.times.tolist() and a.sizes.tolist() == b.sizes.tolist()
        o = overhead(t, s, a)
        assert o.real_bytes_out + o.real_bytes_in == int(np.abs(s).sum())
        assert o.bandwidth >= -1e-12 and o.delay_s >= 0
    edges = [([0.0], [100]), ([0.0], [-100]), ([0.0, 0.0, 0.0], [100, -5000, 100]), ([1.0, 2.0], [-1500, -1500])]
    for t, s in edges:  # one packet, one direction, simultaneous packets, a capture not starting at 0
        check_real_bytes(np.asarray(t), np.asarray(s), d.apply(np.asarray(t), np.asarray(s), seed=1, label="b"))


def test_the_real_bytes_check_catches_a_reordered_or_lost_byte():
    times, sizes = np.array([0.0, 1.0]), np.array([100, 200])
    early = Defended(np.array([0.0, 0.5]), np.array([200, 100]), np.array([200, 100]))  # 200 bytes sent before t=1
    lost = Defended(np.array([0.0]), np.array([100]), np.array([100]))
    for bad in (early, lost):
        with pytest.raises(DefenseError):
            check_real_bytes(times, sizes, bad)


@pytest.mark.parametrize("spec, message", [
    ("nope", "unknown defense 'nope'; choose from mtu, buckets, dstar, buflo, csbuflo, tamaraw, regulator, wtfpad, "
             "front, anonsets"),
    ("anonsets:q=0.2", "anonsets: q must be at least 0.5, got 0.2"),
    ("front:q=1", "the front defense has no parameter 'q' (it takes n, w, size)"),
    ("front:w=8", "front: w='8' is not a range LOW-HIGH"),
    ("front:w=8-1", "front: the range w=8-1 must be LOW-HIGH"),
    ("tamaraw:L=-1", "tamaraw: L must be at least 1, got -1"),
    ("buflo:rho", "buflo: 'rho' is not KEY=VALUE (it takes d, rho, tau)"),
    ("buflo:d=big", "buflo: d='big' is not a whole number"),
    ("wtfpad:idle=2", "wtfpad: idle must be at most 1, got 2"),
])
def test_bad_specs_give_one_line_naming_the_valid_ones(spec, message):
    with pytest.raises(DefenseError) as err:
        parse_defense(spec)
    assert str(err.value) == message and "\n" not in str(err.value)


def test_specs_round_trip_and_bare_names_take_the_papers_defaults():
    assert parse_defense("front:n=1400,w=1-8").spec == "front:n=1400,w=1-8"
    assert parse_defense(" FRONT ").spec == "front"
    assert parse_defense("front").settings == {"n": 1700, "w": (1.0, 14.0), "size": 1500}
    assert parse_defense("buflo").settings == {"d": 1500, "rho": 0.02, "tau": 10.0}
    from echolab.analysis.defenses.dummies import Front

    assert Front(w=(1, 8), n=1400).spec == "front:n=1400,w=1-8"  # from Python, as from a spec
    rows = describe_defenses()
    assert [r["name"] for r in rows] == list(DEFENSE_NAMES) and all(r["cite"] and r["models"] for r in rows)


def test_total_overhead_sums_bytes_over_captures():
    t1, s1 = [0, 1], [100, -100]
    t2, s2 = [0, 1], [300, -500]
    o = [overhead(t, s, parse_defense("mtu:mtu=1000").apply(t, s)) for t, s in ((t1, s1), (t2, s2))]
    tot = total_overhead(o)
    assert tot["bandwidth"] == pytest.approx(4000 / 1000 - 1) and tot["captures"] == 2 and tot["delay"] == 0


# Two requests of two commands, cells of 1000 bytes, bins of 0.5 s: A's answer comes in bin 0, B's in bin 1.
ANSWER_NOW = (np.array([0.0, 0.2, 0.3]), np.array([200, -1000, -1000]))
ANSWER_LATER = (np.array([0.0, 0.6, 0.7]), np.array([200, -1000, -2000]))


def test_anonymity_sets_send_every_request_of_a_set_as_the_same_cells():
    d = parse_defense("anonsets:sets=1,size=1000").fit([ANSWER_NOW, ANSWER_LATER], ["x", "y"])
    assert d.groups_ == [["x", "y"]]
    # Cells per bin: none in bin 0 (a bin's bytes go out in the next), then the larger class's need of the bin
    # before: bin 0 needed 2 cells (x), bin 1 needed 3 (y). The device's side: 200 bytes, 1 cell, in bin 1.
    assert d.down_[0].tolist() == [0, 2, 5] and d.up_.tolist() == [0, 1]
    a = d.apply(*ANSWER_NOW, label="x")
    b = d.apply(*ANSWER_LATER, label="y")
    check_real_bytes(*ANSWER_NOW, a)
    check_real_bytes(*ANSWER_LATER, b)
    # Both are the same packets at the same times: what tells x from y is gone.
    assert a.times.round(4).tolist() == b.times.round(4).tolist() == [0.625, 0.75, 0.875, 1.0833, 1.25, 1.4167]
    assert a.sizes.tolist() == b.sizes.tolist() == [-1000, 1000, -1000, -1000, -1000, -1000]
    assert a.real.tolist() == [1000, 200, 1000, 0, 0, 0] and b.real.tolist() == [1000, 200, 1000, 1000, 0, 0]
    o = overhead(*ANSWER_NOW, a)
    assert (o.wire_bytes_out, o.wire_bytes_in, o.dummies) == (1000, 5000, 3)
    assert o.delay_s == pytest.approx(0.875 - 0.3)


def test_anonymity_sets_split_the_classes_where_padding_costs_least():
    caps = [(np.array([0.0, 0.1]), np.array([100, -1500 * cells])) for cells in (1, 2, 20)]
    labels = ["small", "mid", "big"]
    # Two sets, contiguous in answer size: {small} | {mid, big} sends 1 + 2 * 20 = 41 answer cells,
    # {small, mid} | {big} 2 * 2 + 20 = 24: the second.
    assert parse_defense("anonsets").fit(caps, labels).groups_ == [["small", "mid"], ["big"]]
    assert parse_defense("anonsets:sets=3").fit(caps, labels).groups_ == [["small"], ["mid"], ["big"]]
    assert parse_defense("anonsets:sets=9").fit(caps, labels).groups_ == [["small"], ["mid"], ["big"]]
    assert parse_defense("anonsets:sets=1").fit(caps, labels).groups_ == [["small", "mid", "big"]]


def test_anonymity_sets_carry_a_larger_request_after_the_schedule_and_need_labels():
    d = parse_defense("anonsets:size=1000").fit([ANSWER_NOW, ANSWER_LATER], ["x", "y"])
    assert d.groups_ == [["x"], ["y"]]
    larger = (np.array([0.0, 0.2, 3.0]), np.array([200, -4000, -3000]))  # more, and later, than x's schedule
    out = d.apply(*larger, label="x")
    check_real_bytes(*larger, out)  # every byte sent, none before it arrived
    assert int(out.real.sum()) == 7200 and out.times[-1] >= 3.0
    # A class the schedules never saw takes the largest set's.
    assert d.apply(*ANSWER_NOW, label="unseen").sizes.tolist() == d.apply(*ANSWER_LATER, label="y").sizes.tolist()
    with pytest.raises(DefenseError, match="it needs the capture's label"):
        d.apply(*ANSWER_NOW)
    with pytest.raises(DefenseError, match="it needs every capture's label"):
        parse_defense("anonsets").fit([ANSWER_NOW, ANSWER_LATER])
    with pytest.raises(DefenseError, match="fit it before applying it"):
        parse_defense("anonsets").apply(*ANSWER_NOW, label="x")


def test_a_learning_defense_learns_from_a_history_it_does_not_defend():
    from echolab.analysis.defenses.dataset import defended_sequences, learned_defense

    # ten requests of two commands, each answer 1000 bytes larger than the one before
    seqs = {i: (np.array([0.0, 0.1]), np.array([100, -1000 * (i + 1)])) for i in range(10)}
    labels = {i: "ab"[i % 2] for i in range(10)}
    learned = learned_defense("anonsets:size=1000", seqs, labels=labels, seed=3)
    assert len(learned.history) == 2 and {labels[i] for i in learned.history} == {"a", "b"}  # a fifth of each class
    assert learned_defense("anonsets:size=1000", seqs, labels=labels, seed=3).history == learned.history
    rest = {i: seqs[i] for i in seqs if i not in learned.history}
    out, _ = defended_sequences(learned.defense, rest, labels=labels)
    for cid, (t, s) in rest.items():
        check_real_bytes(t, s, out[cid])

    def last_burst(defended) -> int:  # answer cells sent at the answer's last instant
        t = defended.times[defended.sizes < 0]
        return int(np.sum(t == t.max()))

    # Each class's schedule is its history's: a larger request of the class is new to it and goes beyond it,
    # its leftover bytes in cells at once; one the schedule covers does not.
    for label in "ab":
        known = next(i for i in learned.history if labels[i] == label)
        larger = [i for i in rest if labels[i] == label and i > known]
        smaller = [i for i in rest if labels[i] == label and i < known]
        assert all(last_burst(out[i]) > 1 for i in larger) and all(last_burst(out[i]) == 1 for i in smaller)
    assert learned_defense("wtfpad", {i: random_capture(np.random.default_rng(i)) for i in range(10)}).history
    assert learned_defense("front", seqs).history == []  # a defense that learns nothing has no history
    with pytest.raises(DefenseError, match="needs every capture's label"):
        learned_defense("anonsets", seqs, labels={0: "a"})
