"""Long captures from two homes, shaped like a public data set of real Echo captures: a file per command.

Each file ``HOME/COMMAND_N.pcap`` holds *requests* requests of one command,
:data:`SPACING_S` seconds apart (the simulated lab's synthetic Echo traffic,
``echolab.collector.sim.synthetic``), so the file name carries its label
(``--label-from '^(.+)_\\d+\\.pcap$'``). Home ``b`` starts two days after home
``a``, so classifying both spans days. Small and deterministic: the same
arguments give the same files.
"""

from __future__ import annotations

from pathlib import Path
from typing import Sequence

import dpkt
import numpy as np

from echolab.collector.sim.params import load_params
from echolab.collector.sim.synthetic import generate
from echolab.collector.sim.topology import Topology
from echolab.prompts.classes import STUDY_CLASSES

SPACING_S = 120.0
T0 = 1_700_000_000.0
#: The label pattern of these file names (what a researcher gives ``--label-from``).
LABEL_FROM = r"^(.+)_\d+\.pcap$"
DEVICE_IP = Topology().echo_ip


def write_long_capture(path: Path, label: str, requests: int, *, start_ts: float, seed: Sequence[int]) -> Path:
    """One file: *requests* requests of *label*, SPACING_S apart, starting at *start_ts*."""
    params, topo = load_params(), Topology()
    frames: list[tuple[float, bytes]] = []
    for i in range(requests):
        rng = np.random.default_rng([*seed, i])
        more, _plan = generate(label, float(rng.uniform(1.5, 3.0)), rng, params, start_ts=start_ts + SPACING_S * i,
                               topo=topo)
        frames += more
    frames.sort(key=lambda f: f[0])
    with path.open("wb") as fh:
        writer = dpkt.pcap.Writer(fh, snaplen=65535, linktype=dpkt.pcap.DLT_EN10MB, nano=False)
        for ts, frame in frames:
            writer.writepkt(frame, ts=ts)
    return path


def write_homes(root: Path, *, classes: Sequence[str] = ("weather", "music", "quotes"), files: int = 2,
                requests: int = 3, only_b: Sequence[str] = ()) -> dict[str, Path]:
    """``ROOT/home-a`` and ``ROOT/home-b``: *files* long captures of each class, *requests* requests each;
    the classes of *only_b* in home b only."""
    out = {}
    for h, home in enumerate(("home-a", "home-b")):
        folder = root / home
        folder.mkdir(parents=True, exist_ok=True)
        start = T0 + h * 2 * 86400
        for label in [*classes, *(only_b if h else ())]:
            for n in range(files):
                write_long_capture(folder / f"{label}_{n + 1}.pcap", label, requests, start_ts=start,
                                   seed=[h, STUDY_CLASSES.index(label), n])
                start += SPACING_S * (requests + 1)
        out[home] = folder
    return out
