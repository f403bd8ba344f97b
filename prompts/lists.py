"""Prompt lists: one plain text file per class, edited by people.

A list is ``<class>.txt``, one prompt per line, written with the wake word as
the placeholder ``{wake}`` (a line may also start with a literal wake word such
as ``Alexa,``; it is read as the placeholder)::

    # Lines starting with # are comments.
    # repeat: 130        (directive: every prompt is asked 130 times)
    {wake}, give me a quote.

A second directive, ``# template: {wake}, get me directions to {item}.``, turns
every line into the ``{item}`` of the template, so a list of places needs no
boilerplate. The shipped lists live in ``prompts/lists/``; a lab's own list
``LAB/prompts/<class>.txt`` replaces the shipped one of the same class, and a
lab list of a new class adds that class. docs/prompts.md is the user's guide.

:func:`parse_list` never raises on content: it records every
:class:`Problem` so that :func:`validate_lists` can report them all with file
and line. :func:`load_prompts` refuses lists with errors, so a campaign never
speaks a broken prompt.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterable, Literal, Sequence

from echolab.labdir import LabDir
from echolab.prompts.classes import EXTRA_CLASSES, STUDY_CLASSES, STUDY_PER_CLASS
from echolab.prompts.errors import PromptListError

#: Where the shipped lists live.
SHIPPED_DIR = Path(__file__).resolve().parent / "lists"
#: The placeholder for the wake word in a stored prompt.
WAKE = "{wake}"
#: The placeholder for one line's text in a ``# template:`` directive.
ITEM = "{item}"
#: The wake words an Echo can be set to; the first is the default.
WAKE_WORDS: tuple[str, ...] = ("Alexa", "Echo", "Computer", "Amazon")
DEFAULT_WAKE_WORD = WAKE_WORDS[0]
#: Longest prompt accepted (spoken with the longest wake word): an Echo stops
#: listening after a few seconds, and long prompts blur the classes.
MAX_PROMPT_CHARS = 150
#: Most times a list may ask each prompt (``# repeat: N``; the study asked 130 of each class).
MAX_REPEAT = 10_000
#: Longest ``# template:`` accepted: every line of the list becomes a copy of it, and a prompt is at most
#: MAX_PROMPT_CHARS long anyway.
MAX_TEMPLATE_CHARS = 300
#: Largest prompt list file read (a list holds hundreds of lines, not millions).
MAX_LIST_BYTES = 1024 * 1024
#: Shortest request after the wake word.
MIN_REQUEST_CHARS = 3
#: The lab setting (echolab.toml) that picks the wake word.
WAKE_WORD_SETTING = "wake_word"

_CLASS_NAME = re.compile(r"^[a-z][a-z0-9_-]*$")
_DIRECTIVE = re.compile(r"^#\s*(repeat|template)\s*:\s*(.*?)\s*$", re.IGNORECASE)
_LITERAL_WAKE = re.compile(r"^(%s)(?=,)" % "|".join(WAKE_WORDS), re.IGNORECASE)

Severity = Literal["error", "warning"]


@dataclass(frozen=True)
class Problem:
    """One finding of validation, located by file and line."""

    path: Path
    line: int | None
    message: str
    severity: Severity = "error"

    def __str__(self) -> str:
        where = f"{self.path}:{self.line}" if self.line else str(self.path)
        return f"{where}: {self.severity}: {self.message}"


@dataclass(frozen=True)
class PromptText:
    """One prompt as it is spoken: the request a capture is made of."""

    label: str
    text: str
    template: str
    source: Path
    line: int
    repeat: int = 0

    def __str__(self) -> str:
        return self.text


@dataclass(frozen=True)
class PromptLine:
    """One prompt line of a list file, wake word still a placeholder."""

    line: int
    template: str


@dataclass(frozen=True)
class PromptList:
    """A parsed list file: its prompt lines, directives and problems."""

    label: str
    path: Path
    lines: tuple[PromptLine, ...]
    repeat: int = 1
    shipped: bool = True
    problems: tuple[Problem, ...] = field(default=())

    @property
    def unique(self) -> int:
        """How many different prompts the list holds."""
        return len({_key(p.template) for p in self.lines})

    @property
    def count(self) -> int:
        """How many prompts are asked, repeats included."""
        return len(self.lines) * self.repeat

    @property
    def errors(self) -> tuple[Problem, ...]:
        return tuple(p for p in self.problems if p.severity == "error")

    def prompts(self, wake_word: str = DEFAULT_WAKE_WORD) -> list[PromptText]:
        """Every prompt, repeats included, in the order list after list.

        A repeated list is cycled (a, b, a, b), so repeats are spread out.
        """
        return [
            PromptText(self.label, render(p.template, wake_word), p.template, self.path, p.line, r)
            for r in range(self.repeat)
            for p in self.lines
        ]


def render(template: str, wake_word: str = DEFAULT_WAKE_WORD) -> str:
    """The spoken text of a stored prompt."""
    return template.replace(WAKE, wake_word)


def resolve_wake_word(wake_word: str | None = None, lab: LabDir | None = None) -> str:
    """The wake word to speak: *wake_word*, else the lab's setting, else Alexa.

    Accepts any capitalisation; returns the canonical spelling.
    """
    chosen = wake_word or (lab.setting(WAKE_WORD_SETTING) if lab else None) or DEFAULT_WAKE_WORD
    for known in WAKE_WORDS:
        if str(chosen).strip().casefold() == known.casefold():
            return known
    raise PromptListError(
        f"unknown wake word {chosen!r}; an Echo answers to one of {', '.join(WAKE_WORDS)} "
        f"(set it with --wake-word or '{WAKE_WORD_SETTING}' in echolab.toml)"
    )


def list_path(label: str, lab: LabDir | None = None) -> Path:
    """The file that defines class *label*: the lab's own, else the shipped one."""
    if lab is not None:
        own = lab.prompts_dir / f"{label}.txt"
        if own.is_file():
            return own
    shipped = SHIPPED_DIR / f"{label}.txt"
    if shipped.is_file():
        return shipped
    raise PromptListError(
        f"no prompt list for class {label!r}; known classes: {', '.join(available_classes(lab))}. "
        f"Add one as {(lab.prompts_dir if lab else SHIPPED_DIR) / (label + '.txt')}"
    )


def available_classes(lab: LabDir | None = None) -> list[str]:
    """Every class with a list: the study's, the extras, then any others.

    A new class needs no code: a file ``<class>.txt`` in ``prompts/lists/`` or
    in the lab's ``prompts/`` directory makes it appear.
    """
    found = {p.stem for p in SHIPPED_DIR.glob("*.txt")}
    if lab is not None and lab.prompts_dir.is_dir():
        found |= {p.stem for p in lab.prompts_dir.glob("*.txt") if p.is_file()}
    found = {name for name in found if _CLASS_NAME.match(name)}
    ordered = [c for c in (*STUDY_CLASSES, *EXTRA_CLASSES) if c in found]
    return ordered + sorted(found - set(ordered))


def parse_list(path: Path, label: str | None = None, *, shipped: bool | None = None) -> PromptList:
    """Read one list file; content problems are recorded, not raised.

    Raises :class:`PromptListError` only when the file cannot be read at all.
    """
    path = Path(path)
    label = label or path.stem
    try:
        if path.stat().st_size > MAX_LIST_BYTES:
            raise PromptListError(f"prompt list {path} is {path.stat().st_size} bytes; the limit is {MAX_LIST_BYTES}")
        raw_lines = path.read_text(encoding="utf-8").splitlines()
    except (OSError, UnicodeDecodeError) as exc:
        raise PromptListError(f"cannot read prompt list {path}: {exc}") from exc
    while raw_lines and not raw_lines[-1].strip():
        raw_lines.pop()  # blank lines at the very end are an editor's habit, not content

    problems: list[Problem] = []
    directives: dict[str, tuple[int, str]] = {}
    entries: list[tuple[int, str]] = []
    for number, raw in enumerate(raw_lines, start=1):
        text = raw.strip()
        if not text:
            problems.append(Problem(path, number, "empty line; delete it or start it with # to keep it as a separator"))
        elif text.startswith("#"):
            match = _DIRECTIVE.match(text)
            if match:
                key = match.group(1).lower()
                if key in directives:
                    problems.append(Problem(path, number, f"second '# {key}:' directive (first on line {directives[key][0]})"))
                directives[key] = (number, match.group(2))
        else:
            entries.append((number, " ".join(text.split())))

    repeat = _repeat_directive(path, directives.get("repeat"), problems)
    template = _template_directive(path, directives.get("template"), problems)
    lines: list[PromptLine] = []
    seen: dict[str, int] = {}
    for number, text in entries:
        stored = template.replace(ITEM, text) if template else text
        stored = _LITERAL_WAKE.sub(WAKE, stored, count=1)
        problems.extend(Problem(path, number, message) for message in _check_prompt(stored))
        key = _key(stored)
        if key in seen:
            problems.append(Problem(path, number, f"duplicate of line {seen[key]}; use '# repeat: N' to ask prompts more than once"))
            continue
        seen[key] = number
        lines.append(PromptLine(number, stored))
    if shipped is None:
        shipped = path.resolve().parent == SHIPPED_DIR
    problems.sort(key=lambda p: p.line or 0)
    return PromptList(label, path, tuple(lines), repeat, shipped, tuple(problems))


def read_list(label: str, lab: LabDir | None = None) -> PromptList:
    """The parsed list of class *label* (the lab's own or the shipped one)."""
    return parse_list(list_path(label, lab), label)


def read_lists(lab: LabDir | None = None, classes: Iterable[str] | None = None) -> dict[str, PromptList]:
    """Parsed lists of *classes* (default: every available class)."""
    names = list(classes) if classes is not None else available_classes(lab)
    return {name: read_list(name, lab) for name in names}


def load_prompts(
    lab: LabDir | None = None,
    classes: Sequence[str] | None = None,
    wake_word: str | None = None,
) -> dict[str, list[PromptText]]:
    """Every prompt of *classes*, repeats included, ready to speak.

    *classes* defaults to every available class (pass
    ``echolab.prompts.classes.STUDY_CLASSES`` for the study's six). *wake_word*
    defaults to the lab's ``wake_word`` setting, else Alexa. Raises
    :class:`PromptListError` when a list has errors (run ``echolab prompts
    validate`` to see them all).
    """
    wake = resolve_wake_word(wake_word, lab)
    result: dict[str, list[PromptText]] = {}
    for name, plist in read_lists(lab, classes).items():
        if plist.errors:
            first = "; ".join(str(p) for p in plist.errors[:3])
            more = f" (and {len(plist.errors) - 3} more)" if len(plist.errors) > 3 else ""
            raise PromptListError(
                f"prompt list of class {name!r} has errors: {first}{more}; "
                "see them all with 'echolab prompts validate'"
            )
        result[name] = plist.prompts(wake)
    return result


def validate_lists(
    lab: LabDir | None = None,
    classes: Iterable[str] | None = None,
    per_class: int | None = STUDY_PER_CLASS,
) -> list[Problem]:
    """Every problem of the lists of *classes*, errors and warnings.

    Besides what :func:`parse_list` finds (empty lines, duplicates, missing
    wake word, length limits, bad directives), a list must hold at least
    *per_class* prompts (repeats included). A list that reaches the target
    only by repeating several prompts gets a warning (the study asked for
    over half unique directions; its quotes are one request, repeated).
    """
    problems: list[Problem] = []
    for name, plist in read_lists(lab, classes).items():
        problems.extend(plist.problems)
        if per_class is None:
            continue
        if plist.count < per_class:
            problems.append(Problem(
                plist.path, None,
                f"class {name!r} has {plist.count} prompts, fewer than the {per_class} needed; "
                f"add prompts or a '# repeat: N' directive",
            ))
        elif plist.unique < per_class and plist.unique > 1:
            problems.append(Problem(
                plist.path, None,
                f"class {name!r} has only {plist.unique} unique prompts of {per_class} "
                f"(repeat: {plist.repeat}); add more for variety",
                "warning",
            ))
    return problems


def _key(template: str) -> str:
    return template.casefold().rstrip(" .?!")


def _check_prompt(stored: str) -> list[str]:
    messages = []
    if not stored.startswith(WAKE):
        messages.append(f"prompt does not start with the wake word ({WAKE} or {DEFAULT_WAKE_WORD})")
    rest = stored.replace(WAKE, "", 1)
    if "{" in rest or "}" in rest:
        messages.append(f"unknown placeholder in {stored!r}; only {WAKE} is replaced")
    request = rest.strip(" ,.?!")
    if len(request) < MIN_REQUEST_CHARS:
        messages.append("empty prompt: nothing to ask after the wake word")
    longest = max(len(render(stored, w)) for w in WAKE_WORDS)
    if longest > MAX_PROMPT_CHARS:
        messages.append(f"prompt is {longest} characters long; the limit is {MAX_PROMPT_CHARS}")
    return messages


def _repeat_directive(path: Path, found: tuple[int, str] | None, problems: list[Problem]) -> int:
    if found is None:
        return 1
    number, value = found
    # ASCII digits only (str.isdigit takes '²' and other digits int() refuses), and few of them before int()
    digits = len(value) <= 30 and re.fullmatch(r"[0-9]+", value) is not None
    if digits and 1 <= int(value) <= MAX_REPEAT:
        return int(value)
    if digits and int(value) > MAX_REPEAT:
        problems.append(Problem(path, number, f"'# repeat: {value}' asks each prompt more than {MAX_REPEAT} times"))
    else:
        problems.append(Problem(path, number, f"'# repeat:' needs a whole number from 1 to {MAX_REPEAT}, "
                                              f"not {value[:40]!r}"))
    return 1


def _template_directive(path: Path, found: tuple[int, str] | None, problems: list[Problem]) -> str | None:
    if found is None:
        return None
    number, value = found
    if len(value) > MAX_TEMPLATE_CHARS:  # every line becomes a copy of it: a huge one would fill the memory
        problems.append(Problem(path, number, f"'# template:' is {len(value)} characters long; the limit is "
                                              f"{MAX_TEMPLATE_CHARS} (a prompt is at most {MAX_PROMPT_CHARS})"))
        return None
    if ITEM not in value:
        problems.append(Problem(path, number, f"'# template:' must contain {ITEM}, where each line's text goes"))
        return None
    return value
