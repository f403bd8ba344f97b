"""Defense names, parameters and specs: ``front``, ``front:n=1400,w=1-8``, ``tamaraw:L=50``.

A spec is a defense's name, then optionally ``:`` and ``KEY=VALUE`` pairs
separated by commas, the feature-name style of ``analyze run --features``.
Every parameter has a default (its paper's setting), so a bare name works.
Values are numbers, a range ``LOW-HIGH`` (``w=1-8``) or a list ``A+B+C``
(``sizes=128+512+1500``). :func:`parse_defense` turns a spec into an unfitted
:class:`Defense`; a bad one raises one :class:`DefenseError` line naming what
is valid. :data:`DEFENSE_NAMES` is the one list of names.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, ClassVar, Sequence

import numpy as np

from echolab.analysis.defenses.trace import Defended, DefenseError, as_arrays, check_limits

#: Every defense, in the order ``defend --list`` shows them (modules register their classes).
DEFENSE_NAMES = ("mtu", "buckets", "dstar", "buflo", "csbuflo", "tamaraw", "regulator", "wtfpad", "front",
                 "anonsets")


@dataclass(frozen=True)
class Param:
    """One parameter: its name, kind ("int", "float", "range", "sizes"), default, lowest value and meaning."""

    name: str
    kind: str
    default: Any
    help: str
    low: float = 0.0
    high: float = math.inf

    def parse(self, defense: str, text: str) -> Any:
        try:
            if self.kind == "int":
                value: Any = int(text)
            elif self.kind == "float":
                value = float(text)
            elif self.kind == "range":
                lo, sep, hi = text.partition("-")
                if not sep:
                    raise ValueError
                value = (float(lo), float(hi))
            else:  # sizes
                value = tuple(sorted(int(v) for v in text.split("+")))
        except ValueError:
            raise DefenseError(f"{defense}: {self.name}={text!r} is not {self._kind_text()}") from None
        self.check(defense, value)
        return value

    def check(self, defense: str, value: Any) -> None:
        values = value if isinstance(value, tuple) else (value,)
        if not values or any(not math.isfinite(v) or v < self.low for v in values):
            raise DefenseError(f"{defense}: {self.name} must be at least {self.low:g}, got {format_value(value)}")
        if any(v > self.high for v in values):
            raise DefenseError(f"{defense}: {self.name} must be at most {self.high:g}, got {format_value(value)}")
        if self.kind == "range" and value[0] > value[1]:
            raise DefenseError(f"{defense}: the range {self.name}={format_value(value)} must be LOW-HIGH")

    def _kind_text(self) -> str:
        return {"int": "a whole number", "float": "a number", "range": "a range LOW-HIGH",
                "sizes": "a list of sizes A+B+C"}[self.kind]


def format_value(value: Any) -> str:
    if isinstance(value, tuple) and len(value) == 2 and all(isinstance(v, float) for v in value):
        return f"{value[0]:g}-{value[1]:g}"
    if isinstance(value, tuple):
        return "+".join(str(v) for v in value)
    if isinstance(value, float):
        return f"{value:g}"
    return str(value)


class Defense:
    """A defense: parameters (``__init__`` only stores them), ``fit`` (learns, if the defense does), ``apply``.

    Subclasses set :attr:`name`, :attr:`params`, :attr:`models` (who pads or
    delays what), :attr:`cite` (the paper) and implement :meth:`_apply`.
    """

    name: ClassVar[str] = ""
    params: ClassVar[tuple[Param, ...]] = ()
    models: ClassVar[str] = ""
    cite: ClassVar[str] = ""
    learns: ClassVar[bool] = False  # fit learns from the lab's captures (WTF-PAD's histograms)
    labelled: ClassVar[bool] = False  # fit and apply need each capture's label (anonymity sets)

    def __init__(self, **values: Any) -> None:
        known = {p.name: p for p in self.params}
        unknown = sorted(set(values) - set(known))
        if unknown:
            raise DefenseError(f"the {self.name} defense has no parameter {', '.join(unknown)} "
                               f"(it takes {', '.join(known) or 'none'})")
        for p in self.params:
            value = values.get(p.name, p.default)
            if p.kind == "range" and isinstance(value, (tuple, list)) and len(value) == 2:
                value = (float(value[0]), float(value[1]))
            elif p.kind == "sizes" and isinstance(value, (tuple, list)):
                value = tuple(sorted(int(v) for v in value))
            p.check(self.name, value)
            setattr(self, p.name, value)

    @property
    def spec(self) -> str:
        """The canonical spec: the name and every parameter that differs from its default."""
        changed = [f"{p.name}={format_value(getattr(self, p.name))}" for p in self.params
                   if getattr(self, p.name) != p.default]
        return self.name + (":" + ",".join(changed) if changed else "")

    @property
    def settings(self) -> dict[str, Any]:
        return {p.name: getattr(self, p.name) for p in self.params}

    def fit(self, sequences: Sequence[tuple[Any, Any]], labels: Sequence[str] | None = None) -> "Defense":
        """Learn what the defense needs from (times, signed sizes) sequences (and their labels); most need nothing."""
        return self

    def apply(self, times: Any, sizes: Any, seed: int = 0, label: str | None = None) -> Defended:
        """The defended sequence of one capture's (times in seconds, signed sizes), reproducible under *seed*.

        *label* is the capture's class, which only a :attr:`labelled` defense reads. A sequence
        longer or larger than a defense is applied to (:func:`~echolab.analysis.defenses.trace.check_limits`)
        raises :class:`DefenseError`, as does a defense that would send more packets than
        :data:`~echolab.analysis.defenses.trace.MAX_DEFENDED_PACKETS`.
        """
        t, s = as_arrays(times, sizes)
        check_limits(t, s)
        if not len(s):
            return Defended.unchanged(t, s)
        out = self._apply(t - t[0], s, np.random.default_rng(seed))
        return Defended(out.times + t[0], out.sizes, out.real)

    def _apply(self, times: np.ndarray, sizes: np.ndarray, rng: np.random.Generator) -> Defended:
        raise NotImplementedError

    def __repr__(self) -> str:
        return f"<defense {self.spec}>"


def defense_classes() -> dict[str, type[Defense]]:
    """Name -> class of every defense (in :data:`DEFENSE_NAMES` order)."""
    from echolab.analysis.defenses import anonymity, dummies, padding, rate

    found = {cls.name: cls for mod in (padding, rate, dummies, anonymity) for cls in vars(mod).values()
             if isinstance(cls, type) and issubclass(cls, Defense) and cls.name}
    return {name: found[name] for name in DEFENSE_NAMES}


def parse_defense(spec: str) -> Defense:
    """An unfitted :class:`Defense` from a spec (``front``, ``front:n=1400,w=1-8``)."""
    text = spec.strip()
    name, _, rest = text.partition(":")
    name = name.strip().lower()
    classes = defense_classes()
    if name not in classes:
        raise DefenseError(f"unknown defense {name!r}; choose from {', '.join(DEFENSE_NAMES)}",
                           hint="'echolab defend --list' shows each defense's parameters")
    cls = classes[name]
    known = {p.name: p for p in cls.params}
    values: dict[str, Any] = {}
    for part in filter(None, (p.strip() for p in rest.split(","))):
        key, eq, value = part.partition("=")
        key = key.strip()
        if not eq:
            raise DefenseError(f"{name}: {part!r} is not KEY=VALUE (it takes {', '.join(known) or 'no parameters'})")
        if key not in known:
            raise DefenseError(f"the {name} defense has no parameter {key!r} "
                               f"(it takes {', '.join(known) or 'none'})")
        values[key] = known[key].parse(name, value.strip())
    return cls(**values)


def describe_defenses() -> list[dict[str, Any]]:
    """One row per defense: name, parameters with defaults, what it models, its paper."""
    rows = []
    for name, cls in defense_classes().items():
        rows.append({"name": name,
                     "parameters": ", ".join(f"{p.name}={format_value(p.default)}" for p in cls.params) or "none",
                     "models": cls.models, "cite": cls.cite,
                     "parameter_help": {p.name: p.help for p in cls.params}})
    return rows
