"""How close the parametric simulated lab's requests come to a real Echo's, at speed 1.

Collects PER_CLASS requests of each voice class (the study's prompts, spoken
by espeak) from the live parametric lab at speed 1, cuts each capture's first
burst of traffic (the request, the post-answer events excluded: the
collector's own cut, echolab.collector.timing.bursts) and prints the medians
of bytes up, bytes down and duration next to a real Echo's
(REAL-ECHO-TRAFFIC.md, echolab.collector.timing.REAL_REQUEST), with their
ratio. Needs root (namespaces); about 15 s per request.

    sudo .venv/bin/python -P bench/bench_sim_shape.py [PER_CLASS]
"""

from __future__ import annotations

import statistics
import sys
import tempfile
from pathlib import Path

from echolab.captures.reader import read_packets
from echolab.collector.campaign import CollectSettings
from echolab.collector.collect import collect
from echolab.collector.sim import down
from echolab.collector.timing import REAL_REQUEST, bursts
from echolab.db.catalog import Catalog
from echolab.labdir import LabDir

VOICE = ["information", "weather", "directions", "quotes"]
PREFIX = "shape"


def main(per_class: int = 3) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        lab = LabDir.open(Path(tmp) / "lab", create=True)
        down(PREFIX)
        try:
            collect(lab, CollectSettings(backend="sim", sim_prefix=PREFIX, speed=1.0, per_class=per_class,
                                         classes=VOICE, seed=3))
        finally:
            down(PREFIX)
        shape: dict[str, list[float]] = {name: [] for name in REAL_REQUEST}
        with Catalog.open(lab) as cat:
            for cap in cat.captures():
                request = bursts(read_packets(lab.root / cap.path), cap.device_ip)[0]
                shape["bytes_up"].append(request.bytes_up)
                shape["bytes_down"].append(request.bytes_down)
                shape["duration_s"].append(request.end - request.start)
    print(f"parametric simulated lab at speed 1, {len(shape['bytes_up'])} voice-class requests")
    print(f"{'':12} {'simulated':>10} {'real Echo':>10} {'ratio':>6}")
    for name, real in REAL_REQUEST.items():
        sim = statistics.median(shape[name])
        print(f"{name:12} {sim:10.1f} {real:10.1f} {sim / real:6.2f}")


if __name__ == "__main__":
    main(int(sys.argv[1]) if len(sys.argv) > 1 else 3)
