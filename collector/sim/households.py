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
import ipaddress
import math
import zlib
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Sequence

import numpy as np

from echolab.collector.sim.params import SimParams, load_params
from echolab.collector.sim.protocol import HEADER as FRAME_HEADER
from echolab.collector.sim.synthetic import TLS_OVERHEAD, write_capture
from echolab.collector.sim.topology import Topology
from echolab.errors import EcholabError, shown
from echolab.progress import ProgressCallback
from echolab.tomlfiles import read_toml

if TYPE_CHECKING:
    from echolab.db.catalog import Catalog


#: Bytes a TLS 1.3 record's length field counts beyond the data it carries (content type and tag).
RECORD_EXPANSION = TLS_OVERHEAD - 5


#: The most TCP payload an Ethernet frame carries with the timestamp option (1500 - 20 - 20 - 12).
ETHERNET_PAYLOAD = 1448


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
        check_name(self.name)
        low, high = RECORD_EXPANSION + 16, (1 << 14) + 256
        lengths = (self.upload_record_bytes, self.answer_record_bytes, self.upload_other_record_bytes)
        if not all(low <= n <= high for n in lengths):
            raise HouseholdError(f"household {self.name}: record lengths must be {low} to {high} bytes")
        if not all(RECORD_EXPANSION < n <= 1024 for n in self.control_record_bytes):
            raise HouseholdError(f"household {self.name}: control record lengths must be {RECORD_EXPANSION + 1} "
                                 "to 1024 bytes")
        try:
            ipaddress.IPv4Address(self.voice_server)
        except ValueError:
            raise HouseholdError(f"household {self.name}: voice_server must be an IPv4 address, "
                                 f"not {self.voice_server[:60]!r}") from None
        if not 536 <= self.mss <= 9000:
            raise HouseholdError(f"household {self.name}: mss must be 536 to 9000, not {self.mss}")
        bounds = (("rtt_s", 0.0, 10.0), ("jitter_s", 0.0, 1.0), ("bandwidth_mbps", 0.01, 100_000.0),
                  ("voice_pace", 0.25, 4.0))
        for field_name, lo, hi in bounds:
            value = getattr(self, field_name)
            if not (isinstance(value, (int, float)) and math.isfinite(value) and lo <= value <= hi):
                raise HouseholdError(f"household {self.name}: {field_name} must be {lo:g} to {hi:g}, not {value!r}")
        if not 0 <= self.report_prob <= 1 or not 0 <= self.loss < 0.5 or not 1 <= self.capture_coalesce <= 64 \
                or not 0 < self.upload_record_share <= 1:
            raise HouseholdError(f"household {self.name}: report_prob, upload_record_share and loss are shares "
                                 "(loss under 0.5, upload_record_share above 0), capture_coalesce 1 to 64")


def check_name(name: str) -> str:
    """*name* when it is one plain file name (it names a folder and a campaign), else :class:`HouseholdError`."""
    from echolab.safepaths import UnsafePathError, safe_component

    try:
        safe = safe_component(name, "household")
    except UnsafePathError as exc:
        raise HouseholdError(str(exc)) from None
    if safe != name:
        raise HouseholdError(f"household name {name[:60]!r} may hold only letters, digits, '.', '_' and '-'")
    return name


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


#: The fields a profiles file may give, and their types (``voice_server`` a string, ``control_record_bytes`` a pair).
PROFILE_FIELDS = {f.name: f.type for f in dataclasses.fields(Household) if f.name != "name"}


def load_households(path: Path | str) -> tuple[Household, ...]:
    """The profiles of a TOML file: one ``[households.NAME]`` table each, fields as :class:`Household`'s.

    A profiles file is data: unknown fields, values of the wrong type and
    values out of range are refused with one line naming the household and the
    field, and nothing it says is run. Fields left out take the defaults of
    :class:`Household`; ``upload_record_bytes``, ``upload_coalesce`` and
    ``answer_record_bytes`` are required.
    """
    path = Path(path)
    doc = read_toml(path, "profiles file", HouseholdError)
    tables = doc.get("households")
    if not isinstance(tables, dict) or not tables:
        raise HouseholdError(f"profiles file {path} has no [households.NAME] tables")
    out = []
    for name, table in tables.items():
        try:
            check_name(name)
        except HouseholdError as exc:
            raise HouseholdError(f"profiles file {path}: {exc}") from None
        if not isinstance(table, dict):
            raise HouseholdError(f"profiles file {path}: households.{name} must be a table")
        unknown = sorted(set(table) - set(PROFILE_FIELDS))
        if unknown:
            raise HouseholdError(f"profiles file {path}: household {name}: unknown field(s) {', '.join(unknown)} "
                                 f"(known: {', '.join(PROFILE_FIELDS)})")
        missing = [f for f in ("upload_record_bytes", "upload_coalesce", "answer_record_bytes") if f not in table]
        if missing:
            raise HouseholdError(f"profiles file {path}: household {name}: missing {', '.join(missing)}")
        values = {k: _profile_value(path, name, k, v) for k, v in table.items()}
        h = Household(str(name), **values)
        try:
            h.check()
        except HouseholdError as exc:
            raise HouseholdError(f"profiles file {path}: {exc}") from None
        out.append(h)
    return tuple(out)


def _profile_value(path: Path, name: str, key: str, value: Any) -> Any:
    kind = PROFILE_FIELDS[key]
    where = f"profiles file {path}: household {name}: {key}"
    quoted = shown(value)
    if kind in ("int", int):
        if isinstance(value, bool) or not isinstance(value, int):
            raise HouseholdError(f"{where} must be a whole number, not {quoted}")
        return value
    if kind in ("float", float):
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
            raise HouseholdError(f"{where} must be a finite number, not {quoted}")
        return float(value)
    if kind in ("bool", bool):
        if not isinstance(value, bool):
            raise HouseholdError(f"{where} must be true or false, not {quoted}")
        return value
    if kind in ("str", str):
        if not isinstance(value, str) or len(value) > 200:
            raise HouseholdError(f"{where} must be a short string, not {quoted}")
        return value
    # control_record_bytes: a pair of whole numbers
    if not (isinstance(value, list) and len(value) == 2 and all(isinstance(v, int) and not isinstance(v, bool)
                                                                for v in value)):
        raise HouseholdError(f"{where} must be a pair of whole numbers [device, cloud], not {quoted}")
    return (value[0], value[1])


def household_toml(households: Sequence[Household]) -> str:
    """*households* as a profiles file (:func:`load_households` reads it back)."""
    import json

    lines = ["# Simulated household profiles (echolab sim households --profiles FILE); fields: docs/simulation.md"]
    for h in households:
        lines += ["", f"[households.{json.dumps(h.name)}]"]
        for key in PROFILE_FIELDS:
            value = getattr(h, key)
            if isinstance(value, bool):
                text = "true" if value else "false"
            elif isinstance(value, (int, float)):
                text = repr(value)
            elif isinstance(value, tuple):
                text = "[" + ", ".join(str(int(v)) for v in value) + "]"
            else:
                text = json.dumps(str(value))  # a TOML basic string
            lines.append(f"{key} = {text}")
    return "\n".join(lines) + "\n"


@dataclass
class MeasuredHousehold:
    """A profile measured from a home's captures, and what it was measured on."""

    household: Household
    captures: int  # captures read
    used: int  # captures with a voice connection's upload and answer
    upload_records: int
    notes: list[str]


def _options(raw: bytes) -> dict[int, bytes]:
    """A TCP header's options by kind (the value bytes of each; NOP and end-of-list left out)."""
    out: dict[int, bytes] = {}
    i = 0
    while i < len(raw):
        kind = raw[i]
        if kind == 0:
            break
        if kind == 1:
            i += 1
            continue
        if i + 1 >= len(raw) or raw[i + 1] < 2:
            break
        out[kind] = bytes(raw[i + 2:i + raw[i + 1]])
        i += raw[i + 1]
    return out


def measure_household(paths: Sequence[Path | str], device_ip: str, name: str = "measured") -> MeasuredHousehold:
    """A household profile shaped like the home of *paths* (captures of one request each, at its gateway).

    Read with the TLS record layer (:mod:`echolab.captures.records`) on the
    voice connection (the server the device exchanges most application data
    with) and the byte flow (:mod:`echolab.captures.flow`):

    * the upload: the device's application-data records before the first
      answer record; the most common length and its share, the mean of the
      others (control records under 100 bytes left out), and whether records
      share segments (fewer of the device's data segments to the voice server
      than records) or go one a segment;
    * the answer's longest record, and the most common short (under 100 bytes)
      record of each side (the control records);
    * the MSS: the smaller MSS option of a connection's handshake when a
      capture holds one; else the cloud's most common data segment of at
      least 500 bytes (an answer fills its segments) plus the timestamp
      option's 12 bytes when the segments carry it. A segment longer than the
      MSS allows is k segments merged at the capture point (``capture_coalesce``
      k); without a handshake, one longer than an Ethernet frame holds (1,448
      bytes with timestamps, 1,460 without) is taken as merged;
    * the round trip (median of the captures' smallest samples), the share of
      data bytes that were copies (``loss``: copies over bytes sent once), and
      the share of requests followed by the report upload (more than 10 KB
      from the device later than 7 s after the last full answer record).

    What captures do not show stays at :class:`Household`'s defaults: the
    speaker's pace (``voice_pace`` 1.0), jitter and bandwidth.
    """
    from collections import Counter

    from echolab.captures.flow import FlowMeter
    from echolab.captures.reader import T_DATA_LEN, T_DST, T_FLAGS, T_OPTS, T_SRC, T_TS, TCP_SYN, iter_tcp, \
        parse_addr
    from echolab.captures.records import RecordStats, tls_records
    from echolab.collector.sim.synthetic import TS_OPTION_LEN

    try:
        ipaddress.ip_address(device_ip)
    except ValueError:
        raise HouseholdError(f"device address {device_ip[:60]!r} is not an IP address") from None
    echo = parse_addr(device_ip)
    lengths: Counter = Counter()
    up_small: Counter = Counter()
    down_small: Counter = Counter()
    down_sizes: Counter = Counter()
    servers: Counter = Counter()
    syn_mss: list[int] = []
    timestamps = plain = 0
    answer_max = 0
    records_up = segments_up = reports = used = 0
    dup = total = 0
    rtts = []
    notes: list[str] = []
    for path in paths:
        stats = RecordStats()
        try:
            recs = [r for r in tls_records(path, device_ip, stats) if r.content_type == 23]
        except EcholabError as exc:
            notes.append(f"{Path(path).name}: {exc}")
            continue
        by_server: Counter = Counter()
        for r in recs:
            by_server[r.src if r.direction == -1 else r.dst] += r.length
        if not by_server:
            notes.append(f"{Path(path).name}: no TLS application data of {device_ip}")
            continue
        voice = by_server.most_common(1)[0][0]
        recs = [r for r in recs if voice in (r.src, r.dst)]
        down = [r for r in recs if r.direction == -1]
        if not down or not any(r.direction == 1 for r in recs):
            notes.append(f"{Path(path).name}: no upload and answer on the voice connection")
            continue
        used += 1
        dup += stats.duplicate_bytes
        servers[voice] += 1
        answer_from = min(r.ts_us for r in down)
        upload = [r for r in recs if r.direction == 1 and r.ts_us < answer_from]
        lengths.update(r.length for r in upload if r.length >= 100)
        records_up += len(upload)
        up_small.update(r.length for r in recs if r.direction == 1 and r.length < 100)
        down_small.update(r.length for r in down if r.length < 100)
        longest = max(r.length for r in down)
        answer_max = max(answer_max, longest)
        full = [r.end_us for r in down if r.length >= min(2000, longest)]
        reports += sum(r.length for r in recs if r.direction == 1 and r.ts_us > max(full) + 7_000_000) > 10_000
        voice_addr = parse_addr(voice)
        meter = FlowMeter(echo)
        for pkt in iter_tcp(path):
            meter.add(pkt)
            n = pkt[T_DATA_LEN]
            syn = pkt[T_FLAGS] & TCP_SYN
            if n <= 0 and not syn:
                continue
            options = _options(pkt[T_OPTS]) if pkt[T_OPTS] else {}
            if syn and len(options.get(2, b"")) == 2:  # the MSS option
                syn_mss.append(int.from_bytes(options[2], "big"))
            if n <= 0:
                continue
            total += n
            if 8 in options:  # the timestamp option
                timestamps += 1
            else:
                plain += 1
            if pkt[T_SRC] == echo:
                segments_up += pkt[T_DST] == voice_addr and pkt[T_TS] < answer_from
            elif n >= 500:
                down_sizes[n] += 1
        if meter.rtt_us:
            rtts.append(meter.rtt_us / 1e6)
    if not used:
        raise HouseholdError(f"no capture of {device_ip} held an upload and an answer on a TLS connection "
                             f"({len(paths)} read)" + (f"; first problem: {notes[0]}" if notes else ""))
    default = Household(name, 113, False, 16408)
    voice_server = servers.most_common(1)[0][0]
    try:
        ipaddress.IPv4Address(voice_server)
    except ValueError:  # the simulation writes IPv4
        notes.append(f"the voice server {voice_server} is not IPv4: the profile keeps {default.voice_server}")
        voice_server = default.voice_server
    usual, n_usual = lengths.most_common(1)[0] if lengths else (default.upload_record_bytes, 0)
    others = [(length, k) for length, k in lengths.items() if length != usual]
    low, high = RECORD_EXPANSION + 16, (1 << 14) + 256
    clamp = lambda v: int(min(max(v, low), high))  # noqa: E731
    other_mean = sum(length * k for length, k in others) / sum(k for _, k in others) if others else \
        default.upload_other_record_bytes
    ts_len = TS_OPTION_LEN if timestamps >= plain else 0
    common = down_sizes.most_common(1)[0][0] if down_sizes else default.mss - ts_len
    if syn_mss:  # the handshake says what a segment may carry
        mss = min(syn_mss)
        coalesce = max(1, round(common / max(mss - ts_len, 1)))
    else:
        coalesce = max(1, -(-common // (ETHERNET_PAYLOAD + TS_OPTION_LEN - ts_len)))
        mss = common // coalesce + ts_len
    mss = min(max(mss, 536), 9000)
    control = (up_small.most_common(1)[0][0] if up_small else default.control_record_bytes[0],
               down_small.most_common(1)[0][0] if down_small else default.control_record_bytes[1])
    control = tuple(min(max(c, RECORD_EXPANSION + 1), 1024) for c in control)
    h = Household(
        name, clamp(usual), segments_up < 0.8 * records_up, clamp(answer_max),
        upload_record_share=max(n_usual / max(sum(lengths.values()), 1), 0.01),
        upload_other_record_bytes=clamp(other_mean), control_record_bytes=control,  # type: ignore[arg-type]
        mss=int(mss), rtt_s=float(np.median(rtts)) if rtts else default.rtt_s,
        loss=min(dup / (total - dup), 0.49) if total > dup else 0.0, capture_coalesce=int(min(coalesce, 64)),
        voice_server=voice_server, report_prob=reports / used,
        description=f"measured on {used} captures of {device_ip}")
    h.check()
    return MeasuredHousehold(h, len(paths), used, records_up, notes)


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


def _unit(label: str, salt: str) -> float:
    """A number in [0, 1) fixed by *label* (the same in every home and run)."""
    return (zlib.crc32(f"{salt}:{label}".encode()) % 10_000) / 10_000


def command_labels(n: int) -> list[str]:
    """*n* command labels, ``command-01`` ... (the real-home study's design: fixed commands asked again and again)."""
    if n < 2:
        raise HouseholdError(f"commands: at least 2, not {n}")
    width = max(2, len(str(n)))
    return [f"command-{i:0{width}d}" for i in range(1, n + 1)]


def command_params(labels: Sequence[str], base: SimParams | None = None) -> SimParams:
    """The simulation's parameters with each of *labels* a fixed command: one utterance, one answer.

    A class of the study is many different prompts of one kind (names, cities,
    ...); a real two-home study asks a fixed set of commands again and again
    (REAL-ECHO-TRAFFIC.md: one file per command, asked five times). Asked
    again, a command gives the same answer, so here each label's answer lasts
    2 to 14 s (fixed by the label, 5% spread per request) after 0.5 to 1.5 s of
    thinking (fixed median, lognormal sigma 0.2); its utterance is
    :func:`prompt_s`, as for any label. Assumed values, not fitted to anything.
    """
    from echolab.collector.sim.params import ClassModel, Distribution

    base = base or load_params()
    classes = {}
    for label in labels:
        think, speech = 0.5 + _unit(label, "think"), 2.0 + 12.0 * _unit(label, "answer")
        classes[label] = ClassModel(
            label, Distribution("lognormal", {"median": think, "sigma": 0.2, "min": 0.2, "max": 4.0}),
            Distribution("normal", {"mean": speech, "sd": 0.05 * speech, "min": 1.0, "max": 30.0}))
    return dataclasses.replace(base, classes=classes)


def write_household(folder: Path | str, h: Household, labels: Sequence[str], per_class: int, *, seed: int = 0,
                    base: SimParams | None = None,
                    start_ts: float = 1_700_000_000.0) -> list[Path]:
    """Write *per_class* captures of each label as household *h* sends them, in ``folder/label/N.pcap``."""
    from echolab.safepaths import UnsafePathError, check_component

    params = household_params(h, base)
    topo = Topology(voice_ip=h.voice_server)
    folder = Path(folder)
    paths = []
    for label in labels:  # each becomes a folder
        try:
            check_component(label, "class")
        except UnsafePathError as exc:
            raise HouseholdError(str(exc)) from None
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
                       per_class: int, *, seed: int = 0, progress: ProgressCallback | None = None,
                       base: SimParams | None = None) -> dict[str, int]:
    """Write each household's captures under *root* and import them as campaign ``household-NAME``.

    *base*: the simulation's parameters (:func:`command_params` for fixed commands; default params.toml).
    Returns the captures imported per household.
    """
    from echolab.db.transfer import import_captures

    done: dict[str, int] = {}
    for n, h in enumerate(households):
        if progress:
            progress("households", n, len(households))
        folder = Path(root) / h.name
        write_household(folder, h, labels, per_class, seed=seed, base=base)
        report = import_captures(catalog, folder, campaign=f"household-{h.name}", device_ip=Topology().echo_ip)
        done[h.name] = len(report.imported)
    if progress:
        progress("households", len(households), len(households))
    return done
