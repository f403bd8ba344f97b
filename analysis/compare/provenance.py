"""Where a run's data came from, said on the report's first screen.

A reader who sees accuracies beside the study's must know first whether they
were measured on a real Echo, on the simulated lab (and at what speed: the
demo compresses time sixty-fold), on synthetic captures written straight to
pcap, on captures imported from elsewhere, or on synthetic feature rows that
are no captures at all. :func:`of_captures` reads it from the catalog rows
the analysis used; :func:`synthetic_rows` describes ``analyze run --synthetic``.
"""

from __future__ import annotations

from collections import Counter
from typing import Any, Sequence

#: Kinds of data, as the report names them.
KINDS = {
    "echo": "real collection: a real Echo, prompted through a speaker",
    "sim": "simulated: the simulated lab (a simulated Echo and Alexa cloud in network namespaces)",
    "synthetic": "synthetic captures: the simulated lab's traffic model written straight to pcap (no TCP stack)",
    "imported": "imported: captures made elsewhere and imported into the catalog",
    "synthetic-rows": "synthetic feature rows: random numbers shaped like features, no captures at all",
    "defended": "defended: packet traces a defense made from other captures (a trace simulation, echolab defend)",
}


def of_captures(captures: Sequence[Any]) -> dict[str, Any]:
    """Captures per kind of source, with the simulated lab's speed-ups, from catalog ``Capture`` rows."""
    kinds: Counter[str] = Counter()
    speeds: dict[str, set[float]] = {}
    campaigns: dict[str, dict[str, Any]] = {}
    for cap in captures:
        camp = cap.campaign
        backend = (camp.backend if camp is not None else None) or "imported"
        if getattr(cap, "synthetic", False) and backend not in ("sim", "defended"):
            backend = "synthetic"
        kinds[backend] += 1
        speed = (camp.settings or {}).get("speed") if camp is not None and backend in ("sim", "synthetic") else None
        if speed:
            speeds.setdefault(backend, set()).add(float(speed))
        if camp is not None:
            entry = campaigns.setdefault(camp.name, {"backend": backend, "captures": 0, "speed": speed,
                                                     "location": camp.location})
            if backend == "defended" or (camp.settings or {}).get("defense"):  # trace-defended or defended live
                entry["defense"] = (camp.settings or {}).get("defense")
            entry["captures"] += 1
    return _summary(kinds, speeds, campaigns)


def synthetic_rows(n: int, seed: int) -> dict[str, Any]:
    """``analyze run --synthetic``: no captures, no catalog."""
    return _summary(Counter({"synthetic-rows": n}), {}, {}, extra=f"seed {seed}")


def _summary(kinds: Counter[str], speeds: dict[str, set[float]], campaigns: dict[str, dict[str, Any]],
             extra: str = "") -> dict[str, Any]:
    parts = []
    for kind, n in kinds.most_common():
        text = KINDS.get(kind, kind)
        if speeds.get(kind):
            text += ", time compressed " + " and ".join(f"x{s:g}" for s in sorted(speeds[kind]))
        parts.append({"kind": kind, "captures": n, "text": text})
    real = set(kinds) <= {"echo"}
    headline = "; ".join(f"{p['captures']} {p['text']}" for p in parts) + (f" ({extra})" if extra else "")
    return {"kinds": parts, "campaigns": campaigns, "headline": headline, "real": real,
            "simulated": any(k in kinds for k in ("sim", "synthetic", "synthetic-rows"))}
