"""``echolab prompts``: ls, validate, synth, recordings, nonsense; and its docs."""

from __future__ import annotations

import csv
import io
import json
import re
from pathlib import Path

import pytest
from typer.testing import CliRunner

from echolab.cli import app
from echolab.prompts.classes import EXTRA_CLASSES, STUDY_CLASSES
from echolab.cli.prompts import app as prompts_app

DOCS = Path(__file__).resolve().parents[1] / "docs" / "prompts.md"
TINY = "{wake}, who is Ada Lovelace?\n{wake}, what is the weather in Golden?\n# repeat: 2\n"


@pytest.fixture
def lab(tmp_path: Path) -> Path:
    root = tmp_path / "lab"
    (root / "prompts").mkdir(parents=True)
    (root / "prompts" / "tiny.txt").write_text(TINY)
    return root


def run(lab: Path, *args: str):
    return CliRunner().invoke(app, ["--lab", str(lab), "prompts", *args])


def test_validate_passes_for_the_study_classes(tmp_path: Path) -> None:
    result = run(tmp_path / "nolab", "validate", "--per-class", "130", "--classes", ",".join(STUDY_CLASSES))
    assert result.exit_code == 0, result.output
    assert "ok: 6 classes with at least 130 prompts each (0 warning(s))" in result.output


def test_validate_names_file_and_line_and_fails(lab: Path) -> None:
    bad = lab / "prompts" / "weather.txt"
    bad.write_text("{wake}, what is the weather in Paris?\n{wake}, what is the weather in paris?\n")
    result = run(lab, "validate", "--classes", "weather", "--per-class", "1")
    assert result.exit_code == 1
    assert f"{bad}:2: error: duplicate of line 1" in result.output
    assert "1 error(s), 0 warning(s) in the prompt lists" in result.output


def test_ls_lists_every_class_with_counts(lab: Path) -> None:
    result = run(lab, "ls", "--json", "--wake-word", "computer", "--samples", "2")
    assert result.exit_code == 0, result.output
    rows = {row["class"]: row for row in json.loads(result.output)}
    assert list(rows) == [*STUDY_CLASSES, *EXTRA_CLASSES, "tiny"]
    assert rows["quotes"]["prompts"] == 130 and rows["quotes"]["unique"] == 1 and rows["quotes"]["source"] == "shipped"
    assert rows["tiny"] == {
        "class": "tiny", "prompts": 4, "unique": 2, "repeat": 2, "source": str(lab / "prompts" / "tiny.txt"),
        "samples": "Computer, who is Ada Lovelace? | Computer, what is the weather in Golden?",
    }
    assert run(lab, "ls", "--wake-word", "Siri").output.startswith("Error: unknown wake word 'Siri'")


def test_synth_makes_then_reuses_the_audio(lab: Path) -> None:
    first = run(lab, "synth", "--engine", "espeak", "--classes", "tiny")
    assert first.exit_code == 0, first.output
    assert "espeak en-us-s160-p50: 2 synthesized, 0 cached, 0 failed" in first.output
    assert len(list((lab / "audio" / "espeak").rglob("*.wav"))) == 2
    second = run(lab, "synth", "--engine", "espeak", "--classes", "tiny")
    assert "2 cached" in second.output and "0 synthesized" in second.output
    echo = run(lab, "synth", "--classes", "tiny", "--wake-word", "Echo", "--voice", "en-gb")
    assert "espeak en-gb-s160-p50: 2 synthesized" in echo.output


def test_synth_with_gtts_offline_is_one_error_line(lab: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    for var in ("HTTPS_PROXY", "https_proxy"):
        monkeypatch.setenv(var, "http://127.0.0.1:9")
    monkeypatch.delenv("NO_PROXY", raising=False)
    monkeypatch.delenv("no_proxy", raising=False)
    result = run(lab, "synth", "--engine", "gtts", "--classes", "tiny", "--tld", "co.uk")
    assert result.exit_code == 1
    errors = [line for line in result.output.splitlines() if line.startswith("Error:")]
    assert len(errors) == 1 and errors[0].startswith("Error: gTTS cannot reach translate.google.co.uk")
    assert errors[0].endswith("synthesize offline with --engine espeak")
    assert not [p for p in (lab / "audio").rglob("*") if p.is_file() and p.suffix != ".lock"]


def test_synth_recorded_reports_missing_recordings(lab: Path) -> None:
    (lab / "prompts" / "recordings").mkdir()
    result = run(lab, "synth", "--engine", "recorded", "--classes", "tiny")
    assert result.exit_code == 1
    assert "0 synthesized, 0 cached, 2 failed" in result.output
    assert "expected alexa-who-is-ada-lovelace.wav" in result.output


def test_recordings_manifest(lab: Path) -> None:
    result = run(lab, "recordings", "--classes", "tiny,quotes")
    assert result.exit_code == 0, result.output
    rows = list(csv.DictReader(io.StringIO(result.output)))
    assert rows == [
        {"text": "Alexa, who is Ada Lovelace?", "file": "alexa-who-is-ada-lovelace.wav"},
        {"text": "Alexa, what is the weather in Golden?", "file": "alexa-what-is-the-weather-in-golden.wav"},
        {"text": "Alexa, give me a quote.", "file": "alexa-give-me-a-quote.wav"},
    ]


def test_nonsense_writes_a_lab_list(lab: Path) -> None:
    result = run(lab, "nonsense", "--seed", "5", "--count", "131")
    assert result.exit_code == 0, result.output
    assert run(lab, "validate", "--classes", "unintelligible").exit_code == 0
    rows = json.loads(run(lab, "ls", "--json", "--classes", "unintelligible").output)
    assert rows[0]["prompts"] == 131 and rows[0]["source"].endswith("prompts/unintelligible.txt")


def test_every_command_and_option_is_documented() -> None:
    text = DOCS.read_text(encoding="utf-8")
    for command in prompts_app.registered_commands:
        name = command.name or command.callback.__name__
        assert f"echolab prompts {name}" in text, name
        for param in CliRunner().invoke(app, ["prompts", name, "--help"]).output.split():
            if re.fullmatch(r"--[a-z][a-z-]+", param) and param not in ("--help", "--json", "--csv"):
                assert param in text, f"{name} {param}"


def _blocks(lang: str) -> list[str]:
    return re.findall(rf"```{lang}\n(.*?)```", DOCS.read_text(encoding="utf-8"), re.S)


def test_documented_list_examples_parse_cleanly(tmp_path: Path) -> None:
    from echolab.prompts.lists import parse_list

    lists = [b for b in _blocks("text") if "{wake}" in b]
    assert len(lists) == 2
    parsed = []
    for number, block in enumerate(lists):
        path = tmp_path / f"example{number}.txt"
        path.write_text(block)
        plist = parse_list(path)
        assert plist.problems == ()
        parsed.append([p.text for p in plist.prompts("Echo")])
    assert parsed[0][2] == "Echo, who is Grace Hopper?"
    assert parsed[1] == ["Echo, get me directions to the Home Depot.", "Echo, get me directions to Union Station."] * 2


def test_documented_settings_and_python_example_work(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from echolab.labdir import LabDir
    from echolab.prompts.cache import AudioCache
    from echolab.prompts.synth import engine_for_lab

    root = tmp_path / "lab"
    root.mkdir()
    (root / "echolab.toml").write_text("\n".join(b for b in _blocks("toml")))
    lab = LabDir.open(root)
    assert lab.setting("wake_word") == "Computer"
    assert AudioCache.for_lab(lab).format.sample_rate == 22050
    assert engine_for_lab(lab).voice == "en-co.uk"
    assert engine_for_lab(lab, "espeak").voice == "en-gb-s150-p40"
    (root / "echolab.toml").write_text("")
    monkeypatch.chdir(tmp_path)
    (python,) = _blocks("python")
    scope: dict = {}
    exec(compile(python, str(DOCS), "exec"), scope)
    assert scope["prompts"]["weather"][0].text == "Alexa, what is the weather in Paris?"
    assert scope["clip"].engine == "espeak" and scope["clip"].voice == "en-gb-s160-p50"
    assert scope["report"].synthesized == 1 and scope["samples"].size > 0


def test_synth_rejects_options_of_another_engine(lab: Path) -> None:
    result = run(lab, "synth", "--engine", "espeak", "--tld", "co.uk", "--classes", "tiny")
    assert result.exit_code == 1
    assert result.output.strip() == (
        "Error: the espeak engine does not take tld; its options are voice, speed, pitch, timeout"
    )
