"""Simulated households: the same requests, as Echos in different homes would send them.

An eavesdropper trains on traffic of homes of its own and classifies a home it
never saw. Real captures of two homes differ in ways that have nothing to do
with the command (REAL-ECHO-TRAFFIC.md): how the Echo frames its upload
(72% of its records 113 bytes long, one a segment, in one home; 87% 432 bytes
long, several a segment, in the other), the size of the answer's records
(about 16 KB vs 4 KB) and of the small control records, whether it uploads a report 8 to 15 s after the answer (63% of one
home's requests, 10% of the other's), the network (round trip, MSS, jitter,
bandwidth, offloads at the capture point), the person speaking (pace) and the
server addresses. A :class:`Household` holds these; :data:`HOUSEHOLDS` are the
defaults, the first two shaped like the two real homes.

:func:`write_household` writes one household's captures with the synthetic
writer (:mod:`echolab.collector.sim.synthetic`: no namespaces needed), and
:func:`collect_households` imports each household as one campaign, so that a
comparison split by campaign (``analyze run --split-by campaign``) trains on
some homes and tests on an unseen one. What the synthetic writer does not
model: congestion control, keep-alives, and the other connections and local
traffic a real request's window holds. docs/simulation.md ("Simulated
households") gives each default's values and where they come from.
"""

from __future__ import annotations

import dataclasses
import zlib
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Sequence

import numpy as np

from echolab.collector.sim.params import SimParams, load_params
from echolab.collector.sim.protocol import HEADER as FRAME_HEADER
from echolab.collector.sim.synthetic import TLS_OVERHEAD, write_capture
from echolab.collector.sim.topology import Topology
from echolab.errors import EcholabError
from echolab.progress import ProgressCallback

if TYPE_CHECKING:
    from echolab.db.catalog import Catalog


#: Bytes a TLS 1.3 record's length field counts beyond the data it carries (content type and tag).
RECORD_EXPANSION = TLS_OVERHEAD - 5


class HouseholdError(EcholabError):
    """A household profile is unknown or its values make no sense."""


@dataclass(frozen=True)
class Household:
    """One simulated home: its Echo's framing, its network and its speaker.

    Record sizes are the lengths a capture shows in a TLS record's header. The
    defaults' values and where each comes from are in docs/simulation.md
    ("Simulated households").
    """

    name: str
    upload_record_bytes: int  # the usual length of an upload record
    upload_coalesce: bool  # records written together share segments (True) or each goes in its own (False)
    answer_record_bytes: int  # length of a full answer record
    upload_record_share: float = 1.0  # share of upload records of the usual length
    upload_other_record_bytes: int = 940  # mean length of the other upload records (+-25%)
    control_record_bytes: tuple[int, int] = (22, 62)  # the Echo's end-of-speech record, the cloud's acknowledgement
    mss: int = 1460  # MSS the path allows (bytes of TCP payload + 12 of timestamps)
    rtt_s: float = 0.03  # round trip from the gateway to the cloud
    jitter_s: float = 0.0  # mean extra delay per segment (exponential)
    bandwidth_mbps: float = 50.0  # paces back-to-back segments
    loss: float = 0.0  # share of data segments lost past the gateway (the capture holds them and their resends)
    capture_coalesce: int = 1  # segments the capture point merges into one packet (receive offloads)
    voice_pace: float = 1.0  # the speaker's utterance length factor (slower > 1)
    voice_server: str = "10.77.1.2"  # the voice service's address
    report_prob: float = 0.0  # share of requests followed by the report upload
    description: str = ""

    def check(self) -> None:
        low, high = RECORD_EXPANSION + 16, (1 << 14) + 256
        lengths = (self.upload_record_bytes, self.answer_record_bytes, self.upload_other_record_bytes)
        if not all(low <= n <= high for n in lengths):
            raise HouseholdError(f"household {self.name}: record lengths must be {low} to {high} bytes")
        if not all(RECORD_EXPANSION < n <= 1024 for n in self.control_record_bytes):
            raise HouseholdError(f"household {self.name}: control record lengths must be {RECORD_EXPANSION + 1} "
                                 "to 1024 bytes")
        if not 536 <= self.mss <= 9000:
            raise HouseholdError(f"household {self.name}: mss must be 536 to 9000, not {self.mss}")
        if self.rtt_s < 0 or self.jitter_s < 0 or self.bandwidth_mbps <= 0 or self.voice_pace <= 0:
            raise HouseholdError(f"household {self.name}: times, bandwidth and pace must be positive")
        if not 0 <= self.report_prob <= 1 or not 0 <= self.loss < 0.5 or self.capture_coalesce < 1 \
                or not 0 < self.upload_record_share <= 1:
            raise HouseholdError(f"household {self.name}: report_prob, upload_record_share and loss are shares "
                                 "(loss under 0.5, upload_record_share above 0), capture_coalesce at least 1")


#: The default households; ``home-a`` and ``home-b`` are shaped like the two real homes
#: (REAL-ECHO-TRAFFIC.md), the other three are assumed and span a range of networks and speakers.
HOUSEHOLDS: tuple[Household, ...] = (
    Household("home-a", 113, False, 16408, upload_record_share=0.72, upload_other_record_bytes=940,
              control_record_bytes=(33, 87), mss=1460, rtt_s=0.025, jitter_s=0.0005, bandwidth_mbps=40,
              voice_pace=1.0, voice_server="10.77.1.2", report_prob=0.63,
              description="upload records 113 bytes (72%), one a segment; 16 KB answer records; report after 63%"),
    Household("home-b", 432, True, 4128, upload_record_share=0.87, upload_other_record_bytes=940,
              control_record_bytes=(32, 40), mss=1400, rtt_s=0.045, jitter_s=0.001, bandwidth_mbps=100,
              voice_pace=1.15, voice_server="10.77.1.12", report_prob=0.10,
              description="upload records 432 bytes (87%), several a segment; 4 KB answer records; report after 10%"),
    Household("home-c", 256, True, 8192, upload_record_share=0.8, control_record_bytes=(36, 64), mss=1360,
              rtt_s=0.080, jitter_s=0.003, bandwidth_mbps=12, loss=0.01, capture_coalesce=2, voice_pace=0.9,
              voice_server="10.77.1.22", report_prob=0.3,
              description="256-byte records; a slow, far DSL line losing 1% of segments; offloads merge segment pairs "
                          "at the capture"),
    Household("home-d", 640, False, 16408, upload_record_share=0.9, control_record_bytes=(33, 40), mss=1460,
              rtt_s=0.012, jitter_s=0.0002, bandwidth_mbps=300, voice_pace=1.25, voice_server="10.77.1.32",
              report_prob=0.0, description="640-byte records, one a segment; a fast fibre line; a slow speaker"),
    Household("home-e", 180, True, 2048, upload_record_share=0.75, control_record_bytes=(29, 52), mss=1220,
              rtt_s=0.060, jitter_s=0.002, bandwidth_mbps=20, loss=0.005, voice_pace=0.8, voice_server="10.77.1.42",
              report_prob=0.5,
              description="180-byte records coalesced; 2 KB answer records; a tunnel's small MSS; a fast speaker"),
)


def household(name: str) -> Household:
    """The default household called *name*."""
    for h in HOUSEHOLDS:
        if h.name == name:
            return h
    raise HouseholdError(f"unknown household {name!r}; choose from {', '.join(h.name for h in HOUSEHOLDS)}")


def household_params(h: Household, base: SimParams | None = None) -> SimParams:
    """The simulation's parameters with *h*'s framing and network in place of the defaults."""
    h.check()
    base = base or load_params()
    synthetic = {**base.synthetic, "mss": h.mss, "rtt_s": h.rtt_s, "jitter_s": h.jitter_s,
                 "segment_gap_s": h.mss * 8 / (h.bandwidth_mbps * 1e6), "capture_coalesce": h.capture_coalesce,
                 "upload_record_bytes": h.upload_record_bytes - RECORD_EXPANSION,
                 "upload_record_share": h.upload_record_share,
                 "upload_other_record_bytes": h.upload_other_record_bytes - RECORD_EXPANSION,
                 "upload_coalesce": int(h.upload_coalesce),
                 "control_up_bytes": h.control_record_bytes[0] - RECORD_EXPANSION,
                 "control_down_bytes": h.control_record_bytes[1] - RECORD_EXPANSION,
                 "report_prob": h.report_prob, "loss": h.loss}
    # An answer record carries one frame of the simulated protocol: its header, then record_bytes of audio.
    speech = {**base.speech, "record_bytes": h.answer_record_bytes - RECORD_EXPANSION - FRAME_HEADER.size}
    return dataclasses.replace(base, synthetic=synthetic, speech=speech)


def prompt_s(label: str) -> float:
    """The length of a class's prompt for a speaker of pace 1 (1.2 to 3.5 s; the same in every home)."""
    return 1.2 + (zlib.crc32(label.encode()) % 1000) / 1000 * 2.3


def write_household(folder: Path | str, h: Household, labels: Sequence[str], per_class: int, *, seed: int = 0,
                    start_ts: float = 1_700_000_000.0) -> list[Path]:
    """Write *per_class* captures of each label as household *h* sends them, in ``folder/label/N.pcap``."""
    params = household_params(h)
    topo = Topology(voice_ip=h.voice_server)
    folder = Path(folder)
    paths = []
    for k, label in enumerate(labels):
        (folder / label).mkdir(parents=True, exist_ok=True)
        for i in range(per_class):
            rng = np.random.default_rng([seed, zlib.crc32(h.name.encode()), k, i])
            spoken = prompt_s(label) * h.voice_pace * float(rng.normal(1.0, 0.05))
            path = folder / label / f"{i:03d}.pcap"
            write_capture(path, label, max(spoken, 0.3), rng, params, start_ts=start_ts + 60 * (k * per_class + i),
                          topo=topo)
            paths.append(path)
    return paths


def collect_households(catalog: "Catalog", root: Path | str, households: Sequence[Household], labels: Sequence[str],
                       per_class: int, *, seed: int = 0, progress: ProgressCallback | None = None) -> dict[str, int]:
    """Write each household's captures under *root* and import them as campaign ``household-NAME``.

    Returns the captures imported per household.
    """
    from echolab.db.transfer import import_captures

    done: dict[str, int] = {}
    for n, h in enumerate(households):
        if progress:
            progress("households", n, len(households))
        folder = Path(root) / h.name
        write_household(folder, h, labels, per_class, seed=seed)
        report = import_captures(catalog, folder, campaign=f"household-{h.name}", device_ip=Topology().echo_ip)
        done[h.name] = len(report.imported)
    if progress:
        progress("households", len(households), len(households))
    return done
