"""Unintelligible prompts: linguistically invalid sentences of nonsense words.

The study's sixth class is requests Alexa cannot parse, answered with "Sorry,
I didn't quite catch that." The shipped list ``prompts/lists/unintelligible.txt``
is written by this generator from a fixed seed, so anyone can regenerate it
(and a test checks that the committed file is exactly what the seed gives)::

    python -m echolab.prompts.nonsense --seed 2018 --count 140 --output prompts/lists/unintelligible.txt

Words are built from English-like syllables so that a speech engine can say
them; a few English function words are scattered in the wrong places, so the
sentence sounds like speech but has no grammar.
"""

from __future__ import annotations

import argparse
import random
from pathlib import Path

from echolab.prompts.lists import SHIPPED_DIR, WAKE, WAKE_WORDS

#: The seed and size of the shipped list.
SEED = 2018
COUNT = 140
SHIPPED_LIST = SHIPPED_DIR / "unintelligible.txt"

_ONSETS = (
    "b", "bl", "br", "d", "dr", "f", "fl", "fr", "g", "gl", "gr", "k", "kl", "kr", "m",
    "n", "p", "pl", "pr", "sk", "sl", "sn", "sp", "st", "str", "t", "tr", "v", "z",
    "zw", "j", "sh", "th", "ch", "w", "y",
)
_VOWELS = ("a", "e", "i", "o", "u", "oo", "ee", "ai", "ou", "aw")
_CODAS = ("", "", "", "b", "d", "g", "k", "m", "n", "p", "rk", "sh", "sk", "t", "x", "z", "mp", "nt", "ng")
#: Function words put where grammar does not allow them.
_FUNCTION_WORDS = ("the", "of", "to", "is", "and", "which", "very", "under", "why", "my", "from")


def nonsense_word(rng: random.Random) -> str:
    """One pronounceable word of one to three syllables that is no wake word."""
    while True:
        word = "".join(
            rng.choice(_ONSETS) + rng.choice(_VOWELS) + rng.choice(_CODAS)
            for _ in range(rng.choice((1, 2, 2, 3)))
        )
        if word.casefold() not in {w.casefold() for w in WAKE_WORDS}:
            return word


def nonsense_sentence(rng: random.Random) -> str:
    """A sentence of three to six tokens, mostly nonsense words."""
    tokens = [nonsense_word(rng) for _ in range(rng.randint(3, 5))]
    for _ in range(rng.randint(0, 2)):
        tokens.insert(rng.randint(0, len(tokens)), rng.choice(_FUNCTION_WORDS))
    return " ".join(tokens) + rng.choice((".", "?", "."))


def generate(seed: int = SEED, count: int = COUNT) -> list[str]:
    """*count* different prompts, wake word as placeholder, from *seed*."""
    rng = random.Random(seed)
    seen: set[str] = set()
    prompts: list[str] = []
    while len(prompts) < count:
        sentence = nonsense_sentence(rng)
        if sentence not in seen:
            seen.add(sentence)
            prompts.append(f"{WAKE}, {sentence}")
    return prompts


def render_list(seed: int = SEED, count: int = COUNT) -> str:
    """The text of a list file: a header naming the seed, then the prompts."""
    header = [
        "# Unintelligible: linguistically invalid sentences of nonsense words.",
        f"# Written by prompts/nonsense.py with seed {seed} and count {count}; regenerate with",
        f"#   python -m echolab.prompts.nonsense --seed {seed} --count {count} --output prompts/lists/unintelligible.txt",
        "# Edit the generator, not this file: a test checks the file matches the seed.",
    ]
    return "\n".join(header + generate(seed, count)) + "\n"


def write_list(path: Path, seed: int = SEED, count: int = COUNT) -> Path:
    """Write a list file of *count* nonsense prompts to *path*."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(render_list(seed, count), encoding="utf-8")
    return path


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seed", type=int, default=SEED)
    parser.add_argument("--count", type=int, default=COUNT)
    parser.add_argument("--output", type=Path, default=SHIPPED_LIST)
    args = parser.parse_args(argv)
    print(write_list(args.output, args.seed, args.count))


if __name__ == "__main__":
    main()
