"""Grouped and random splits: groups stay on one side, classes short of captures or groups are named."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
from typer.testing import CliRunner

from echolab.analysis.compare.splits import (check_captures, common_classes, grouped_splits, leave_one_group_out,
                                             plan_grouped, random_splits, sessions_of)
from echolab.analysis.compare.trials import ProtocolError
from echolab.cli import app
from echolab.collector.sim import synthetic
from echolab.db.catalog import Catalog
from echolab.db.transfer import import_captures
from echolab.labdir import LabDir
from pcaps import SIM_DEVICE_IP


def test_too_few_captures_is_one_line_naming_the_classes() -> None:
    y = np.array(["weather"] * 2 + ["music"] * 3 + ["quotes"] * 10)
    with pytest.raises(ProtocolError) as err:
        random_splits(y, 2, seed=0)
    assert str(err.value) == (
        "too few captures for the protocol (80/20 stratified splits with 3-fold cross-validation on the training "
        "part need at least 4 per class): weather has 2, music has 3; collect more of them, or leave them out")
    check_captures(np.array(["a"] * 4 + ["b"] * 4))  # enough


def test_grouped_splits_keep_groups_apart_and_name_classes_short_of_groups() -> None:
    rng = np.random.default_rng(0)
    y = np.repeat(np.array(["a", "b", "c"]), 40)
    groups = np.array([f"{label}-s{i // 8}" for label, i in zip(y, np.tile(np.arange(40), 3))])  # 5 sessions a class
    splits = grouped_splits(y, groups, "session", trials=4, seed=1)
    assert len(splits) == 4
    for s in splits:
        assert not set(groups[s.train]) & set(groups[s.test])
        assert set(y[s.test]) == {"a", "b", "c"} and s.classes == ("a", "b", "c") and not s.dropped
    assert not (splits[0].test == splits[1].test).all()
    single = groups.copy()
    single[y == "c"] = "c-only"
    single[y == "b"] = "b-only"
    with pytest.raises(ProtocolError, match=r"needs every class in at least 2 sessions .* too few: "
                                            r"b \(1 session\), c \(1 session\)"):
        grouped_splits(y, single, "session", trials=2, seed=0)
    del rng


def test_groups_holding_different_classes_are_evaluated_on_the_classes_both_sides_hold() -> None:
    # Campaign A collected a, b, c; campaign B only a and b.
    y = np.array(["a"] * 6 + ["b"] * 6 + ["c"] * 6 + ["a"] * 6 + ["b"] * 6)
    groups = np.array(["A"] * 18 + ["B"] * 12)
    splits = plan_grouped(y, groups, "campaign", trials=5, seed=0)
    assert [s.test_group for s in splits] == ["A", "B"]
    for s in splits:
        assert s.classes == ("a", "b") and s.dropped == ("c",)
        assert set(y[s.train]) == set(y[s.test]) == {"a", "b"}
    with pytest.raises(ProtocolError, match="no campaign shares 2 classes"):
        leave_one_group_out(np.array(["a"] * 6 + ["b"] * 6), np.array(["A"] * 6 + ["B"] * 6))


def test_one_campaign_out_evaluates_every_trial_on_the_classes_all_campaigns_hold() -> None:
    # Homes A and B recorded a, b, c; home C recorded a, b, d: only a and b are common to all three.
    y = np.array(["a"] * 4 + ["b"] * 4 + ["c"] * 4 + ["a"] * 4 + ["b"] * 4 + ["c"] * 4
                 + ["a"] * 4 + ["b"] * 4 + ["d"] * 4)
    groups = np.repeat(np.array(["A", "B", "C"]), 12)
    splits = leave_one_group_out(y, groups)
    assert [s.test_group for s in splits] == ["A", "B", "C"]
    for s in splits:  # the same task in every trial, though A and B share c with each other
        assert s.classes == ("a", "b") and s.dropped == ("c", "d")
        assert set(y[s.train]) == set(y[s.test]) == {"a", "b"}
        assert set(groups[s.test]) == {s.test_group} and s.test_group not in set(groups[s.train])
    assert all(s.common for s in splits)
    # Fewer than two classes common to all: each trial falls back to the classes both its sides hold.
    y2 = y.copy()
    y2[(groups != "A") & (y == "a")] = "e"  # a: only in A now; e: in B and C
    fallback = leave_one_group_out(y2, groups)
    assert [s.classes for s in fallback] == [("b", "c"), ("b", "c", "e"), ("b", "e")]
    assert not any(s.common for s in fallback)
    # A class in every home, but with too few captures outside one of them to train on, is not common.
    y3 = np.array(["b"] * 4 + ["c"] * 4 + ["a"] * 5 + ["b"] * 4 + ["c"] * 4 + ["a"] + ["b"] * 4 + ["c"] * 4 + ["a"])
    groups3 = np.repeat(np.array(["A", "B", "C"]), [13, 9, 9])
    assert common_classes(y3, groups3, 3) == ("b", "c")
    assert all(s.classes == ("b", "c") and s.dropped == ("a",) for s in leave_one_group_out(y3, groups3))


def _cap(i: int, campaign: str, minute: float | None, source: str | None = None) -> SimpleNamespace:
    t0 = datetime(2026, 1, 1, tzinfo=timezone.utc)
    start = None if minute is None else t0 + timedelta(minutes=minute)
    return SimpleNamespace(id=i, sha256=f"sha{i}", source_sha256=source, started_at=start,
                           ended_at=None if start is None else start + timedelta(seconds=20),
                           campaign=SimpleNamespace(name=campaign, device=None, location=None), device_ip=None)


def test_sessions_are_split_by_quiet_gaps_and_keep_long_captures_whole() -> None:
    caps = [_cap(1, "c1", 0), _cap(2, "c1", 5), _cap(3, "c1", 90), _cap(4, "c2", 1), _cap(5, "c1", 200, "long"),
            _cap(6, "c1", 260, "long"), _cap(7, "c1", None)]
    assert sessions_of(caps) == ["c1 session 1", "c1 session 1", "c1 session 2", "c2 session 1", "c1 session 3",
                                 "c1 session 3", "c1 source sha7"]


def test_cli_on_a_catalog_too_small_for_the_protocol_says_which_classes(sqlite_lab: LabDir, tmp_path: Path) -> None:
    folder = tmp_path / "caps"
    for n, label in ((5, "weather"), (3, "music"), (2, "quotes")):
        (folder / label).mkdir(parents=True)
        for i in range(n):
            rng = np.random.default_rng([n, i])
            synthetic.write_capture(folder / label / f"{i}.pcap", label, 2.0, rng)
    with Catalog.open(sqlite_lab) as cat:
        import_captures(cat, folder, campaign="small", device_ip=SIM_DEVICE_IP)
    out = CliRunner().invoke(app, ["--lab", str(sqlite_lab.root), "analyze", "run", "-m", "knn", "-f", "tcptrace",
                                   "--jobs", "1", "--trials", "2"], terminal_width=300)
    assert out.exit_code == 1, out.output
    assert "Traceback" not in out.output
    assert ("Error: too few captures for the protocol (80/20 stratified splits with 3-fold cross-validation on the "
            "training part need at least 4 per class): quotes has 2, music has 3;") in " ".join(out.output.split())
