"""The simulation's parameters, read from one TOML file and validated once.

Both backends (the live lab in namespaces and the synthetic pcap writer) read
the same :class:`SimParams`, so they draw from the same distributions. The
default file is ``collector/sim/params.toml``; docs/simulation.md explains
where each value comes from.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping

import numpy as np

from echolab.collector.sim.errors import ParamsError
from echolab.tomlfiles import read_toml

DEFAULT_PARAMS = Path(__file__).with_name("params.toml")
#: The longest time a distribution may draw (seconds: think, speech and music times), and its largest sigma.
MAX_SECONDS = 3600.0
MAX_SIGMA = 5.0
_DIST_KEYS = {
    "fixed": ("value",),
    "uniform": ("low", "high"),
    "normal": ("mean", "sd"),
    "lognormal": ("median", "sigma"),
}


@dataclass(frozen=True)
class Distribution:
    """One documented distribution of a per-request quantity."""

    dist: str
    args: Mapping[str, float]

    @classmethod
    def from_toml(cls, where: str, raw: Any) -> "Distribution":
        if isinstance(raw, (int, float)):
            return cls("fixed", {"value": float(raw)})
        if not isinstance(raw, Mapping) or raw.get("dist") not in _DIST_KEYS:
            raise ParamsError(f"{where}: expected a table with dist = one of {sorted(_DIST_KEYS)}")
        kind = raw["dist"]
        args = {k: v for k, v in raw.items() if k != "dist"}
        missing = [k for k in _DIST_KEYS[kind] if k not in args]
        if missing:
            raise ParamsError(f"{where}: a {kind} distribution needs {', '.join(missing)}")
        try:
            values = {k: float(v) for k, v in args.items()}
        except (TypeError, ValueError) as exc:
            raise ParamsError(f"{where}: every value must be a number ({exc})") from exc
        if any(not math.isfinite(v) or v < 0 for v in values.values()):
            raise ParamsError(f"{where}: values must be finite non-negative numbers")
        for key, value in values.items():
            limit = MAX_SIGMA if key == "sigma" else MAX_SECONDS
            if value > limit:
                raise ParamsError(f"{where}: {key} must be at most {limit:g}, got {value:g}")
        return cls(kind, values)

    def draw(self, rng: np.random.Generator) -> float:
        a = self.args
        if self.dist == "fixed":
            value = a["value"]
        elif self.dist == "uniform":
            value = float(rng.uniform(a["low"], a["high"]))
        elif self.dist == "normal":
            value = float(rng.normal(a["mean"], a["sd"]))
        else:
            value = float(math.exp(min(rng.normal(math.log(max(a["median"], 1e-9)), a["sigma"]), 700.0)))
        lo, hi = a.get("min", 0.0), a.get("max", MAX_SECONDS)
        return min(max(value, lo), hi)

    def mean(self) -> float:
        """The distribution's nominal centre (for docs and tests)."""
        a = self.args
        return {"fixed": a.get("value"), "uniform": (a.get("low", 0) + a.get("high", 0)) / 2,
                "normal": a.get("mean"), "lognormal": a.get("median")}[self.dist]


@dataclass(frozen=True)
class ClassModel:
    """How the cloud answers one request class."""

    label: str
    think_s: Distribution
    speech_s: Distribution
    music_s: Distribution | None = None


@dataclass(frozen=True)
class SimParams:
    """Everything the simulated Echo and cloud need; see params.toml."""

    upload: Mapping[str, float]
    keepalive: Mapping[str, float]
    speech: Mapping[str, float]
    music: Mapping[str, float]
    windows: Mapping[str, float]
    synthetic: Mapping[str, float]
    classes: Mapping[str, ClassModel]
    default_class: ClassModel
    source: str = field(default="")

    def for_label(self, label: str) -> ClassModel:
        """The model of *label*; unknown labels get the generic answer model."""
        return self.classes.get(label) or ClassModel(label, self.default_class.think_s, self.default_class.speech_s)


_SECTIONS = {
    "upload": ("bytes_per_s", "chunk_s", "header_bytes", "tail_s"),
    "keepalive": ("interval_s", "jitter_s", "ping_bytes", "pong_bytes"),
    "speech": ("bytes_per_s", "record_bytes", "rate_factor", "burst_s", "directive_bytes", "event_bytes"),
    "music": ("bytes_per_s", "record_bytes", "rate_factor", "burst_s", "request_bytes"),
    "windows": ("voice_rcvbuf", "music_rcvbuf"),
    "synthetic": ("voice_server_window", "echo_window", "echo_wscale", "music_server_window",
                  "music_server_wscale", "echo_music_window", "mss", "rtt_s", "segment_gap_s", "delack_s"),
}


#: The range each parameter may take (inclusive). Wide enough for any plausible Echo, narrow enough that
#: a drawn request stays a few megabytes and a loop over chunks, records or segments ends.
_BOUNDS: dict[str, tuple[float, float]] = {
    "bytes_per_s": (1.0, 10_000_000.0),  # 80 Mbit/s
    "record_bytes": (16.0, 65_536.0),
    "rate_factor": (0.01, 1000.0),
    "chunk_s": (0.001, 10.0),
    "tail_s": (0.0, 60.0),
    "burst_s": (0.0, 600.0),
    "header_bytes": (0.0, 1_000_000.0),
    "directive_bytes": (0.0, 1_000_000.0),
    "event_bytes": (0.0, 1_000_000.0),
    "request_bytes": (0.0, 1_000_000.0),
    "ping_bytes": (0.0, 65_536.0),
    "pong_bytes": (0.0, 65_536.0),
    "interval_s": (1.0, 3600.0),
    "jitter_s": (0.0, 3600.0),
    "voice_rcvbuf": (0.0, 64 * 1024 * 1024),
    "music_rcvbuf": (0.0, 64 * 1024 * 1024),
    "voice_server_window": (0.0, 65_535.0),
    "echo_window": (0.0, 65_535.0),
    "music_server_window": (0.0, 65_535.0),
    "echo_music_window": (0.0, 65_535.0),
    "echo_wscale": (0.0, 14.0),
    "music_server_wscale": (0.0, 14.0),
    "mss": (536.0, 9000.0),
    "rtt_s": (0.0, 10.0),
    "segment_gap_s": (0.0, 1.0),
    "delack_s": (0.0, 1.0),
}
#: Keys that must be whole numbers (windows, scales and segment sizes go into TCP headers as they are).
_WHOLE = frozenset({"voice_server_window", "echo_window", "music_server_window", "echo_music_window",
                    "echo_wscale", "music_server_wscale", "mss"})


def _section(raw: Mapping[str, Any], name: str) -> dict[str, float]:
    table = raw.get(name)
    if not isinstance(table, Mapping):
        raise ParamsError(f"parameter file has no [{name}] table")
    out: dict[str, float] = {}
    for key in _SECTIONS[name]:
        value = table.get(key)
        lo, hi = _BOUNDS[key]
        if (not isinstance(value, (int, float)) or isinstance(value, bool) or not math.isfinite(value)
                or not lo <= value <= hi):
            raise ParamsError(f"[{name}] {key} must be a number from {lo:g} to {hi:g}, got {value!r}")
        if key in _WHOLE and value != int(value):
            raise ParamsError(f"[{name}] {key} must be a whole number, got {value!r}")
        out[key] = float(value)
    return out


def _class_model(label: str, raw: Any) -> ClassModel:
    if not isinstance(raw, Mapping):
        raise ParamsError(f"[classes.{label}] must be a table")
    for key in ("think_s", "speech_s"):
        if key not in raw:
            raise ParamsError(f"[classes.{label}] needs {key}")
    music = raw.get("music_s")
    return ClassModel(
        label,
        Distribution.from_toml(f"[classes.{label}] think_s", raw["think_s"]),
        Distribution.from_toml(f"[classes.{label}] speech_s", raw["speech_s"]),
        Distribution.from_toml(f"[classes.{label}] music_s", music) if music is not None else None,
    )


def load_params(path: Path | str | None = None) -> SimParams:
    """Read and validate the parameter file (the packaged default when None)."""
    path = Path(path) if path is not None else DEFAULT_PARAMS
    raw = read_toml(path, "simulation parameters", ParamsError)
    classes_raw = raw.get("classes")
    if not isinstance(classes_raw, Mapping) or not classes_raw:
        raise ParamsError(f"{path} has no [classes.*] tables")
    try:
        classes = {label: _class_model(label, table) for label, table in classes_raw.items()}
        sections = {name: _section(raw, name) for name in _SECTIONS}
        default_class = _class_model("default", raw.get("default_class"))
    except ParamsError as exc:  # name the file: it may be someone else's
        raise ParamsError(f"{path}: {exc}") from None
    return SimParams(
        classes=classes,
        default_class=default_class,
        source=str(path),
        **sections,
    )
