"""Prompt lists: the shipped lists, the list format, lab overrides, wake words."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from echolab.labdir import LabDir
from echolab.prompts import nonsense
from echolab.prompts.classes import EXTRA_CLASSES, STUDY_CLASSES, STUDY_PER_CLASS
from echolab.prompts.errors import PromptListError
from echolab.prompts.lists import (
    SHIPPED_DIR,
    available_classes,
    load_prompts,
    parse_list,
    read_list,
    resolve_wake_word,
    validate_lists,
)

#: The request form of each study class (STUDY.md), with the wake word.
FORMS = {
    "information": r"Alexa, who is [^?]+\?",
    "weather": r"Alexa, what is the weather in [^?]+\?",
    "directions": r"Alexa, get me directions to [^.].*\.",
    "music": r"Alexa, play me a sample of .+ by .+\.",
    "quotes": r"Alexa, give me a quote\.",
    "unintelligible": r"Alexa, [a-z ]+[.?]",
}


@pytest.fixture
def lab(tmp_path: Path) -> LabDir:
    return LabDir.open(tmp_path / "lab", create=True)


def test_shipped_lists_pass_validation_for_the_study_target() -> None:
    problems = validate_lists(None, STUDY_CLASSES, STUDY_PER_CLASS)
    assert [str(p) for p in problems if p.severity == "error"] == []


@pytest.mark.parametrize("label", STUDY_CLASSES)
def test_study_class_has_enough_prompts_in_the_study_form(label: str) -> None:
    prompts = load_prompts(None, [label])[label]
    assert len(prompts) >= STUDY_PER_CLASS
    for prompt in prompts:
        assert re.fullmatch(FORMS[label], prompt.text), prompt.text
    unique = {p.text for p in prompts}
    if label == "quotes":
        assert unique == {"Alexa, give me a quote."} and len(prompts) == STUDY_PER_CLASS
    else:
        assert len(unique) >= STUDY_PER_CLASS


def test_extra_classes_ship_ready_lists() -> None:
    assert available_classes()[: len(STUDY_CLASSES) + len(EXTRA_CLASSES)] == [*STUDY_CLASSES, *EXTRA_CLASSES]
    problems = validate_lists(None, EXTRA_CLASSES, STUDY_PER_CLASS)
    assert [str(p) for p in problems] == []


def test_committed_nonsense_list_is_what_the_seed_writes() -> None:
    committed = (SHIPPED_DIR / "unintelligible.txt").read_text(encoding="utf-8")
    assert committed == nonsense.render_list(nonsense.SEED, nonsense.COUNT)


def test_nonsense_generator_is_seeded_and_mostly_nonsense() -> None:
    assert nonsense.generate(7, 20) == nonsense.generate(7, 20)
    assert nonsense.generate(7, 20) != nonsense.generate(8, 20)
    for prompt in nonsense.generate(7, 50):
        words = prompt.removeprefix("{wake}, ").rstrip(".?").split()
        made_up = [w for w in words if w not in nonsense._FUNCTION_WORDS]
        assert len(made_up) >= 3 and len(made_up) > len(words) / 2


def test_parse_reports_each_problem_with_its_line(tmp_path: Path) -> None:
    path = tmp_path / "bad.txt"
    path.write_text(
        "# a comment\n"
        "{wake}, who is Ada Lovelace?\n"
        "\n"
        "{wake}, who is ada lovelace.\n"
        "who is Alan Turing?\n"
        "{wake}, " + "very " * 40 + "long?\n"
        "{wake}, play {song}.\n"
        "{wake}, ?\n"
        "# repeat: twice\n"
        "\n\n",  # blank lines at the end are ignored
        encoding="utf-8",
    )
    plist = parse_list(path)
    found = [(p.line, p.message.split(";")[0].split(" (")[0]) for p in plist.problems]
    assert found == [
        (3, "empty line"),
        (4, "duplicate of line 2"),
        (5, "prompt does not start with the wake word"),
        (6, "prompt is 215 characters long"),
        (7, "unknown placeholder in '{wake}, play {song}.'"),
        (8, "empty prompt: nothing to ask after the wake word"),
        (9, "'# repeat:' needs a whole number from 1 to 10000, not 'twice'"),
    ]
    assert str(plist.problems[0]) == f"{path}:3: error: empty line; delete it or start it with # to keep it as a separator"


def test_load_refuses_a_list_with_errors(lab: LabDir) -> None:
    (lab.prompts_dir / "weather.txt").write_text("{wake}, what is the weather in Paris?\nno wake word here\n")
    with pytest.raises(PromptListError, match=r"weather\.txt:2: error: prompt does not start with the wake word"):
        load_prompts(lab, ["weather"])


def test_literal_wake_word_and_template_directive(tmp_path: Path) -> None:
    path = tmp_path / "mixed.txt"
    path.write_text("Alexa, who is Grace Hopper?\n")
    assert [p.text for p in parse_list(path).prompts("Echo")] == ["Echo, who is Grace Hopper?"]
    places = tmp_path / "places.txt"
    places.write_text("# template: {wake}, get me directions to {item}.\nthe Golden library\nUnion Station\n")
    assert [p.text for p in parse_list(places).prompts("Computer")] == [
        "Computer, get me directions to the Golden library.",
        "Computer, get me directions to Union Station.",
    ]
    broken = tmp_path / "broken.txt"
    broken.write_text("# template: {wake}, go to the place.\nsomewhere\n")
    assert any("must contain {item}" in p.message for p in parse_list(broken).problems)


def test_wake_word_from_option_setting_or_default(lab: LabDir, tmp_path: Path) -> None:
    assert resolve_wake_word(None, None) == "Alexa"
    assert resolve_wake_word("computer", lab) == "Computer"
    (lab.root / "echolab.toml").write_text('wake_word = "echo"\n')
    echo_lab = LabDir.open(lab.root)
    assert resolve_wake_word(None, echo_lab) == "Echo"
    assert resolve_wake_word("Amazon", echo_lab) == "Amazon"
    first = load_prompts(echo_lab, ["information"])["information"][0]
    assert first.text == "Echo, who is Thomas Jefferson?" and first.template == "{wake}, who is Thomas Jefferson?"
    with pytest.raises(PromptListError, match="unknown wake word 'Siri'; an Echo answers to one of Alexa, Echo"):
        resolve_wake_word("Siri", lab)


def test_lab_directions_list_overrides_the_shipped_example(lab: LabDir) -> None:
    places = [f"the store number {i}" for i in range(70)]
    own = lab.prompts_dir / "directions.txt"
    own.write_text("# repeat: 2\n# template: {wake}, get me directions to {item}.\n" + "\n".join(places) + "\n")
    prompts = load_prompts(lab, ["directions"])["directions"]
    assert len(prompts) == 140
    assert prompts[0].text == "Alexa, get me directions to the store number 0."
    assert prompts[70].text == prompts[0].text and prompts[70].repeat == 1  # repeats cycle through the list
    assert read_list("directions", lab).shipped is False
    problems = validate_lists(lab, ["directions"], 130)
    assert [(p.severity, p.message) for p in problems] == [
        ("warning", "class 'directions' has only 70 unique prompts of 130 (repeat: 2); add more for variety")
    ]
    own.write_text("# template: {wake}, get me directions to {item}.\n" + "\n".join(places[:50]) + "\n")
    problems = validate_lists(lab, ["directions"], 130)
    assert [p.severity for p in problems] == ["error"]
    assert "has 50 prompts, fewer than the 130 needed" in problems[0].message


def test_a_lab_adds_a_class_without_code(lab: LabDir) -> None:
    (lab.prompts_dir / "smalltalk.txt").write_text("{wake}, how are you?\n{wake}, tell me a joke.\n")
    (lab.prompts_dir / "Notes.TXT").write_text("not a class\n")
    assert available_classes(lab)[-1] == "smalltalk"
    assert "smalltalk" not in available_classes(None)
    prompts = load_prompts(lab, wake_word="Amazon")
    assert [p.text for p in prompts["smalltalk"]] == ["Amazon, how are you?", "Amazon, tell me a joke."]
    assert list(prompts)[:6] == list(STUDY_CLASSES)
    with pytest.raises(PromptListError, match="no prompt list for class 'nosuch'"):
        load_prompts(lab, ["nosuch"])
