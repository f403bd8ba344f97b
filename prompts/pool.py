"""The unmonitored pool: requests that belong to no class, for the open world.

A household asks its Echo far more than a lab's classes. The pool holds such
requests, grouped by *kind* (smart-home commands, sports scores, recipes,
definitions, reminders, news, trivia, conversions, translations, stocks,
calls, audiobooks, movies, games): one list file per kind in
``prompts/lists/unmonitored/``, written as class lists are
(:mod:`echolab.prompts.lists`: ``{wake}``, comments, ``# repeat:``,
``# template:``). A lab's own ``LAB/prompts/unmonitored/<kind>.txt`` replaces
the shipped kind of that name or adds a kind.

The kinds are not classes: :func:`echolab.prompts.lists.available_classes`
never lists them, no campaign collects them unless asked, and a kind may not
share a class's name (:func:`validate_pool` says so). They are what a simulated
household's day mixes in (``sim day --unknown-share``) and what an open-world
evaluation holds out by kind (docs/open-world.md).
"""

from __future__ import annotations

from pathlib import Path

from echolab.labdir import LabDir
from echolab.prompts.errors import PromptListError
from echolab.prompts.lists import (
    SHIPPED_DIR,
    Problem,
    PromptList,
    PromptText,
    available_classes,
    parse_list,
    resolve_wake_word,
)

#: Where the shipped pool lives.
POOL_DIR = SHIPPED_DIR / "unmonitored"
#: The folder of a lab's own pool lists, under its prompts folder.
POOL_FOLDER = "unmonitored"


def _lab_pool(lab: LabDir | None) -> Path | None:
    return lab.prompts_dir / POOL_FOLDER if lab is not None else None


def pool_kinds(lab: LabDir | None = None) -> list[str]:
    """Every kind of unmonitored request: the shipped ones and the lab's own, sorted."""
    found = {p.stem for p in POOL_DIR.glob("*.txt")}
    own = _lab_pool(lab)
    if own is not None and own.is_dir():
        found |= {p.stem for p in own.glob("*.txt") if p.is_file()}
    return sorted(found)


def pool_path(kind: str, lab: LabDir | None = None) -> Path:
    """The file of *kind*: the lab's own, else the shipped one."""
    own = _lab_pool(lab)
    for path in ((own / f"{kind}.txt") if own is not None else None, POOL_DIR / f"{kind}.txt"):
        if path is not None and path.is_file():
            return path
    raise PromptListError(f"no unmonitored kind {kind!r}; known kinds: {', '.join(pool_kinds(lab))}")


def read_pool(lab: LabDir | None = None, kinds: list[str] | None = None) -> dict[str, PromptList]:
    """The parsed list of every kind (or of *kinds*)."""
    names = kinds if kinds is not None else pool_kinds(lab)
    return {kind: parse_list(pool_path(kind, lab), kind, shipped=pool_path(kind, lab).parent == POOL_DIR)
            for kind in names}


def load_pool(lab: LabDir | None = None, kinds: list[str] | None = None,
              wake_word: str | None = None) -> dict[str, list[PromptText]]:
    """Every unmonitored prompt by kind, ready to speak; refuses lists with errors or named as classes."""
    problems = [p for p in validate_pool(lab, kinds) if p.severity == "error"]
    if problems:
        shown = "; ".join(str(p) for p in problems[:3])
        raise PromptListError(f"the unmonitored pool has errors: {shown}"
                              + (f" (and {len(problems) - 3} more)" if len(problems) > 3 else ""))
    wake = resolve_wake_word(wake_word, lab)
    return {kind: plist.prompts(wake) for kind, plist in read_pool(lab, kinds).items()}


def validate_pool(lab: LabDir | None = None, kinds: list[str] | None = None) -> list[Problem]:
    """The pool lists' problems, and an error for a kind named as a class (it would be both)."""
    classes = set(available_classes(lab))
    problems: list[Problem] = []
    for kind, plist in read_pool(lab, kinds).items():
        problems.extend(plist.problems)
        if kind in classes:
            problems.append(Problem(plist.path, None, f"unmonitored kind {kind!r} has the name of a class; "
                                                      "rename one of them"))
        if not plist.lines:
            problems.append(Problem(plist.path, None, f"unmonitored kind {kind!r} holds no prompts"))
    return problems


__all__ = ["POOL_DIR", "POOL_FOLDER", "load_pool", "pool_kinds", "pool_path", "read_pool", "validate_pool"]
