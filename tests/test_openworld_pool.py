"""The unmonitored prompt pool and a household's day that mixes it in."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from echolab.cli import app
from echolab.collector.sim.day import DayError, DayPrompts, DaySettings, TruthRow, plan_day, read_truth
from echolab.labdir import LabDir
from echolab.prompts.classes import STUDY_CLASSES
from echolab.prompts.errors import PromptListError
from echolab.prompts.lists import available_classes, load_prompts
from echolab.prompts.pool import POOL_DIR, load_pool, pool_kinds, validate_pool


def test_the_shipped_pool_is_large_varied_and_apart_from_every_class() -> None:
    kinds = pool_kinds()
    assert len(kinds) >= 12 and not set(kinds) & set(available_classes())
    assert validate_pool() == []
    pool = load_pool(wake_word="Echo")
    assert sum(len(v) for v in pool.values()) >= 300 and min(len(v) for v in pool.values()) >= 10
    assert all(p.text.startswith("Echo, ") for v in pool.values() for p in v)
    # no request of the pool is a request of a class
    key = lambda text: text.casefold().rstrip(" .?!")  # noqa: E731
    asked = {key(p.text) for v in load_prompts(None, available_classes(), "Echo").values() for p in v}
    assert not asked & {key(p.text) for v in pool.values() for p in v}


def test_a_labs_pool_list_adds_a_kind_and_a_kind_named_as_a_class_is_refused(sqlite_lab: LabDir) -> None:
    own = sqlite_lab.prompts_dir / "unmonitored"
    own.mkdir(parents=True)
    (own / "gardening.txt").write_text("{wake}, when should I plant tulips?\n{wake}, how often do I water a cactus?\n")
    assert "gardening" in pool_kinds(sqlite_lab) and "gardening" not in available_classes(sqlite_lab)
    assert len(load_pool(sqlite_lab, ["gardening"])["gardening"]) == 2
    (own / "weather.txt").write_text("{wake}, is it windy?\n")
    problems = validate_pool(sqlite_lab)
    assert [p.message for p in problems] == ["unmonitored kind 'weather' has the name of a class; rename one of them"]
    with pytest.raises(PromptListError, match="the unmonitored pool has errors"):
        load_pool(sqlite_lab)


def test_a_day_with_an_unknown_share_draws_kinds_from_the_pool() -> None:
    kinds = tuple(pool_kinds())
    closed = DaySettings(requests=300, classes=tuple(STUDY_CLASSES), seed=4)
    opened = DaySettings(requests=300, classes=tuple(STUDY_CLASSES), seed=4, unknown_share=0.7, unknown_kinds=kinds)
    a, b = plan_day(closed), plan_day(opened)
    # the same quiet stretches and prompt lengths: only the requests' kinds change
    assert [(r.gap_s, r.prompt_s) for r in a] == [(r.gap_s, r.prompt_s) for r in b]
    others = [r for r in b if r.unmonitored]
    assert 0.63 < len(others) / len(b) < 0.77
    assert {r.label for r in others} <= set(kinds) and len({r.label for r in others}) >= 10
    assert all(r.label in STUDY_CLASSES for r in b if not r.unmonitored)
    assert [r for r in b if not r.unmonitored] == [r for r, s in zip(a, b) if not s.unmonitored]
    assert not any(r.unmonitored for r in a)
    with pytest.raises(DayError, match="need kinds"):
        DaySettings(classes=("music",), unknown_share=0.5).check()
    with pytest.raises(DayError, match="share of the requests"):
        DaySettings(classes=("music",), unknown_share=1.5, unknown_kinds=kinds).check()
    with pytest.raises(DayError, match="music cannot be both"):
        DaySettings(classes=("music",), unknown_share=0.5, unknown_kinds=("music",)).check()


def test_unmonitored_requests_speak_pool_prompts_and_are_logged_as_such(sqlite_lab: LabDir, tmp_path: Path) -> None:
    plan = plan_day(DaySettings(requests=10, classes=("weather", "music"), seed=1, unknown_share=0.7,
                                unknown_kinds=("sports", "cooking")))
    spoken = DayPrompts(sqlite_lab, ("weather", "music"), engine="espeak", seed=3,
                        unknown_kinds=("sports", "cooking")).for_plan(plan)
    pool = load_pool(sqlite_lab, ["sports", "cooking"])
    for req, (text, clip) in zip(plan, spoken):
        if req.unmonitored:
            assert text in {p.text for p in pool[req.label]}
        assert clip.duration_s > 0.5
    row = TruthRow(1, "sports", 1.0, 2.0, 1.5, "Alexa, when do the Cubs play next?", True)
    (tmp_path / "day.jsonl").write_text(json.dumps(row.to_json()) + "\n"
                                        + json.dumps(TruthRow(2, "music", 3.0, 4.0, 1.0).to_json()) + "\n")
    back = read_truth(tmp_path)
    assert back[0].unmonitored and back[0].label == "sports" and not back[1].unmonitored


def test_sim_day_refuses_an_unknown_kind_before_starting_anything(sqlite_lab: LabDir, tmp_path: Path) -> None:
    out = CliRunner().invoke(app, ["--lab", str(sqlite_lab.root), "sim", "day", str(tmp_path / "day"),
                                   "--unknown-share", "0.7", "--unknown-kinds", "sports,knitting",
                                   "--prefix", "owtest"])
    assert out.exit_code == 1 and "Error: no unmonitored kind 'knitting'; known kinds: audiobooks," in out.output
    assert not (tmp_path / "day").exists()
    assert POOL_DIR.name == "unmonitored"


def test_prompts_ls_pool_lists_the_kinds_not_the_classes() -> None:
    out = CliRunner().invoke(app, ["prompts", "ls", "--pool", "--json"])
    assert out.exit_code == 0, out.output
    rows = json.loads(out.stdout)
    assert [r["class"] for r in rows] == pool_kinds() and all(r["source"] == "shipped" for r in rows)
    assert sum(r["prompts"] for r in rows) == sum(len(v) for v in load_pool().values())
    classes = json.loads(CliRunner().invoke(app, ["prompts", "ls", "--json"]).stdout)
    assert not {r["class"] for r in classes} & set(pool_kinds())
