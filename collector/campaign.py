"""An unattended, balanced, resumable collection campaign.

One request, as :meth:`CampaignRunner.capture_one` does it: pick the next prompt,
make sure its audio is in the cache, wait until the Echo is idle, start the
capture engine at the gateway with a filter on the Echo's address, wait until
it is really capturing, play the prompt, wait until the response is over, stop
the capture, check it, move it into the lab under its final name and record it
in the catalog in the same step. The campaign log gets one line per attempt.

When the answer is over and when the Echo is idle are decided from the Echo's
traffic alone, with a real Echo's timing (:mod:`echolab.collector.timing`):
no traffic beyond keep-alive size for the quiet time ends the answer (at most
a per-class maximum, else ``echo-busy``); the post-answer upload that may
follow within the trailing window is kept in the request's capture
(``trailing="include"``) or cut out of it (``"exclude"``), and the next
prompt waits until it has passed. Only the parametric simulated lab, whose
Echo says when it is done, skips the trailing window.

When the capture interface's link goes down or up (its ``carrier_changes``),
the capture in progress fails (``truncated``) and the next prompt waits until
the link is up and the Echo's traffic has paused for as long as the link may
have been down, so what TCP retransmits late (an earlier attempt's request and
its answer) never falls into the next capture; a link down for longer than the
idle timeout fails the attempt as ``link-down``.

State lives only in the catalog and the lab directory: a rerun (or
``--resume NAME``) counts the good captures per class and carries on. A
capture in progress lives in ``LAB/tmp`` and is never catalogued until it is
complete; a rerun sweeps what a killed run left there.
"""

from __future__ import annotations

import hashlib
import logging
import statistics
import time
from collections import Counter, deque
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Callable

from echolab.captures.rules import RULES
from echolab.collector.backends import Backend
from echolab.collector.live import LiveCapture
from echolab.collector.recorder import CaptureProcess, CaptureToolError, carrier_changes, kill_stale, link_up
from echolab.collector.schedule import next_class, pick_prompt
from echolab.collector.timing import TRAILING_CHOICES
from echolab.collector.checks import check_capture, cut_after
from echolab.collector.failures import HINTS, CampaignPaused, CollectError, Failure
from echolab.collector.stopping import StopRequest
from echolab.db.catalog import Catalog, safe_name
from echolab.db.checks import sweep_partial
from echolab.db.records import Campaign, CampaignStatus, CaptureStatus
from echolab.errors import EcholabError

log = logging.getLogger("echolab.collect")

PIDFILE = "capture.pid"
POLL_S = 0.05  # how often a capture in progress is looked at


@dataclass
class Ending:
    """Why a capture ended: the answer's last traffic, and the post-answer upload's first (if any)."""

    reason: str
    answer_end: float | None = None
    trailing_start: float | None = None


@dataclass
class CollectSettings:
    """Everything that defines a campaign; stored with it so a resume uses the same."""

    backend: str = "sim"
    per_class: int = 130
    classes: list[str] = field(default_factory=list)
    seed: int = 0
    engine: str = "espeak"
    engine_options: dict[str, Any] = field(default_factory=dict)
    wake_word: str | None = None
    device_ip: str | None = None
    interface: str | None = None
    audio_device: str | None = None
    location: str | None = None
    capture_tool: str = "dumpcap"
    quiet_s: float = RULES.answer_quiet_s  # no traffic beyond keep-alive size for this long: the answer is over
    response_timeout_s: float = 10.0  # no answer this long after the prompt ends: no-response
    max_duration_s: dict[str, float] = field(default_factory=lambda: {"music": 90.0, "*": 45.0})
    idle_gap_s: float = RULES.idle_s  # no traffic beyond keep-alive size for this long: the Echo is idle
    idle_timeout_s: float = 120.0  # the Echo not idle after this long: echo-busy
    keepalive_bytes: int = RULES.keepalive_payload_bytes  # packets with at most this payload are keep-alives, not traffic
    trailing: str = "include"  # the post-answer upload: in its request's capture, or cut out ("exclude")
    trailing_s: float = RULES.trailing_window_s  # the post-answer upload comes within this long after the answer
    max_consecutive_failures: int = 5
    backoff_s: float = 2.0
    backoff_max_s: float = 60.0
    speed: float = 1.0
    sim_prefix: str = "echolab"  # which simulated lab (namespaces PREFIX-echo, -gw, -cloud)
    defense: str | None = None  # the simulated lab applies this defense live (a spec; echolab.collector.sim.shaping)

    def __post_init__(self) -> None:
        if self.trailing not in TRAILING_CHOICES:
            raise CollectError(f"trailing must be one of {', '.join(TRAILING_CHOICES)}, not {self.trailing!r}")

    def scaled(self, seconds: float) -> float:
        return seconds / self.speed if self.speed > 0 else seconds

    def max_duration(self, label: str) -> float:
        return self.scaled(self.max_duration_s.get(label, self.max_duration_s.get("*", 45.0)))

    @classmethod
    def from_dict(cls, raw: dict[str, Any]) -> "CollectSettings":
        known = {f for f in cls.__dataclass_fields__}
        return cls(**{k: v for k, v in raw.items() if k in known})


@dataclass
class CaptureTiming:
    """Seconds spent in each step of one request; ``overhead`` excludes waiting for the Echo."""

    prepare: float = 0.0
    start: float = 0.0
    play: float = 0.0
    response: float = 0.0
    stop: float = 0.0
    check: float = 0.0
    store: float = 0.0
    idle: float = 0.0

    @property
    def overhead(self) -> float:
        return self.prepare + self.start + self.stop + self.check + self.store


@dataclass
class CollectResult:
    campaign: str
    counts: dict[str, int]
    target: int
    failures: Counter
    timings: list[CaptureTiming]
    status: str

    @property
    def done(self) -> bool:
        return all(n >= self.target for n in self.counts.values())

    def median_overhead(self) -> float | None:
        return statistics.median(t.overhead for t in self.timings) if self.timings else None


class CampaignRunner:
    """Runs one campaign against one backend until every class reaches the target."""

    def __init__(self, catalog: Catalog, campaign: Campaign, settings: CollectSettings, backend: Backend,
                 prompts: dict[str, list[Any]], audio: Callable[[str], Any] | None,
                 on_event: Callable[[str, dict[str, Any]], None] | None = None):
        self.catalog, self.campaign, self.settings, self.backend = catalog, campaign, settings, backend
        self.prompts = prompts
        self.audio = audio  # text -> clip (from the speech cache); None: a clip of estimated length
        self.on_event = on_event or (lambda kind, info: None)
        self.lab = catalog.lab
        self.counts = self._good_counts()
        self.failures: Counter = Counter()
        self.recent_failures: deque[str] = deque(maxlen=5)
        self.timings: list[CaptureTiming] = []
        self.stop = StopRequest()
        self._streak: tuple[str, int] = ("", 0)
        self._quiet: tuple[float, float] | None = None  # (last traffic, when a capture last watched) if idle then
        self._ending: Ending | None = None  # how the current live capture ended
        self._play_start = 0.0  # when the current prompt began to play (wall clock)
        #: The capture interface's link changes (carrier_changes) when last seen settled, and when that was.
        self._link_changes: int | None = None
        self._link_seen_at = time.time()

    # -- state from the catalog ---------------------------------------------------------

    def _good_counts(self) -> dict[str, int]:
        counts = {label: 0 for label in self.settings.classes}
        for c in self.catalog.captures(campaign=self.campaign.id, status=CaptureStatus.ok.value):
            counts[c.label] = counts.get(c.label, 0) + 1
        return counts

    def recover(self) -> list[str]:
        """Clean up what a killed run left: a running capture, files in tmp/, .part files."""
        cleaned: list[str] = []
        pidfile = self.lab.tmp_dir / PIDFILE
        if pidfile.exists() and kill_stale(pidfile):
            cleaned.append("stopped a capture left running")
        for path in self.lab.tmp_dir.glob("capture-*"):
            path.unlink(missing_ok=True)
            cleaned.append(f"removed unfinished {path.name}")
        cleaned += [f"removed partial {p.name}" for p in sweep_partial(self.catalog)]
        own = self.catalog.lab.captures_dir / safe_name(self.campaign.name)
        known = {c.path for c in self.catalog.captures(campaign=self.campaign.id, status=None)}
        for path in (p for p in own.rglob("*") if p.is_file()) if own.exists() else ():
            if self.lab.relative(path) not in known:  # placed, but the run died before its row was written
                path.unlink()
                cleaned.append(f"removed uncatalogued {self.lab.relative(path)}")
        for line in cleaned:
            log.info("recovery: %s", line)
        return cleaned

    # -- the loop -----------------------------------------------------------------------

    def run(self) -> CollectResult:
        s = self.settings
        self.catalog.set_campaign_status(self.campaign, CampaignStatus.running.value)
        log.info("campaign %s: %s backend, %d per class, classes %s", self.campaign.name, s.backend, s.per_class,
                 ", ".join(s.classes))
        if self.backend.live:
            self._link_changes = carrier_changes(self.backend.interface, self.backend.prefix)
            self._link_seen_at = time.time()
        with self.stop.installed():
            try:
                while not self.stop.requested:
                    label = next_class(self.counts, s.classes, s.per_class, s.seed)
                    if label is None:
                        break
                    self._one_with_retries(label)
            except KeyboardInterrupt:
                log.warning("aborted by a second Ctrl-C: a capture still running was discarded")
                self.stop.requested = True
            except CampaignPaused:
                self.catalog.set_campaign_status(self.campaign, CampaignStatus.paused.value)
                raise
            except BaseException:
                self.catalog.set_campaign_status(self.campaign, CampaignStatus.interrupted.value)
                raise
        self.counts = self._good_counts()
        done = next_class(self.counts, s.classes, s.per_class, s.seed) is None
        status = CampaignStatus.done.value if done else CampaignStatus.interrupted.value
        self.catalog.set_campaign_status(self.campaign, status)
        log.info("campaign %s %s: %s", self.campaign.name, status, dict(self.counts))
        return CollectResult(self.campaign.name, dict(self.counts), s.per_class, self.failures, self.timings, status)

    def _one_with_retries(self, label: str) -> None:
        index = self.counts[label]
        prompt = pick_prompt(self.prompts[label], label, index, self.settings.seed)
        attempt = 0
        while not self.stop.requested:
            attempt += 1
            try:
                timing = self.capture_one(label, prompt, attempt)
            except Failure as failure:
                self._record_failure(label, prompt, failure, attempt)
                delay = min(self.settings.backoff_s * 2 ** (self._streak[1] - 1), self.settings.backoff_max_s)
                self._sleep(self.settings.scaled(delay))
                continue
            self._streak = ("", 0)
            self.counts[label] += 1
            self.timings.append(timing)
            self.on_event("ok", {"label": label, "counts": dict(self.counts), "timing": timing})
            return

    def _record_failure(self, label: str, prompt: Any, failure: Failure, attempt: int) -> None:
        self._quiet = None
        log.info("attempt %d of %s %r: %s (%s)", attempt, label, getattr(prompt, "text", prompt), failure.kind,
                 failure.detail)
        self.failures[failure.kind] += 1
        self.recent_failures.append(f"{label}: {failure}")
        kind, n = self._streak
        self._streak = (failure.kind, n + 1 if kind == failure.kind else 1)
        log.warning("%s (attempt %d of %r) failed: %s", label, attempt, getattr(prompt, "text", prompt), failure)
        self.catalog.add_capture(self.campaign, label, None, status=CaptureStatus.failed.value, reason=str(failure),
                                 device_ip=self.backend.device_ip, attempts=attempt,
                                 started_at=datetime.now(timezone.utc))
        self.on_event("failed", {"label": label, "reason": str(failure)})
        if self._streak[1] >= self.settings.max_consecutive_failures:
            raise CampaignPaused(
                f"campaign {self.campaign.name} paused after {self._streak[1]} '{failure.kind}' failures in a row "
                f"({HINTS.get(failure.kind, '')}); fix it, then resume with "
                f"'echolab collect --resume {self.campaign.name}'"
            )

    def _sleep(self, seconds: float) -> None:
        """Wait, but not past a stop request."""
        deadline = time.monotonic() + seconds
        while not self.stop.requested and (left := deadline - time.monotonic()) > 0:
            time.sleep(min(0.1, left))

    # -- one request --------------------------------------------------------------------

    def capture_one(self, label: str, prompt: Any, attempt: int) -> CaptureTiming:
        """Make one good capture of *prompt* or raise :class:`Failure`."""
        s, timing = self.settings, CaptureTiming()
        t = time.monotonic()
        text = getattr(prompt, "text", str(prompt))
        try:
            clip = self.audio(text) if self.audio else _EstimatedClip(text)
        except EcholabError as exc:
            raise Failure("audio-error", str(exc)) from exc
        prompt_row = self.catalog.prompt(
            label, text, engine=getattr(clip, "engine", None) or s.engine, voice=getattr(clip, "voice", None),
            audio_sha256=getattr(clip, "sha256", None), duration_s=float(clip.duration_s),
        )
        tmp = self.lab.tmp_dir / f"capture-{self.campaign.id}-{label}-{attempt}-{time.time_ns()}.pcapng"
        timing.prepare = time.monotonic() - t
        started_at = datetime.now(timezone.utc)
        if self.backend.live:
            started_at = self._live_capture(tmp, label, text, clip, timing)
        else:
            t = time.monotonic()
            self.backend.write(tmp, label, float(clip.duration_s), _stable_key(self.campaign.name, label, attempt, text))
            timing.response = time.monotonic() - t
        ended_at = datetime.now(timezone.utc)
        t = time.monotonic()
        try:
            checked = check_capture(tmp, self.backend.device_ip)
        except Failure:
            tmp.unlink(missing_ok=True)
            raise
        servers = checked.servers
        timing.check = time.monotonic() - t
        t = time.monotonic()
        with self.stop.critical():
            self.catalog.add_capture(
                self.campaign, label, tmp, move=True, prompt=prompt_row, started_at=started_at,
                ended_at=ended_at, device_ip=self.backend.device_ip, synthetic=not self.backend.live,
                attempts=attempt, server_addresses=servers,
                source={"defense": s.defense} if s.defense else None,
            )
        timing.store = time.monotonic() - t
        ending = self._ending if self.backend.live and self._ending else Ending("written by the backend")
        answer = (f"answer {ending.answer_end - self._play_start:.1f} s, "
                  if ending.answer_end is not None and self.backend.live else "")
        log.info("attempt %d of %s %r: ok, %d B up, %d B down, %sended: %s", attempt, label, text,
                 checked.bytes_up, checked.bytes_down, answer, ending.reason)
        return timing

    def _start_capture(self, path: Path) -> CaptureProcess:
        s, b = self.settings, self.backend
        try:
            return CaptureProcess.start(path, b.interface, b.capture_filter(), prefix=b.prefix, tool=s.capture_tool,
                                        pidfile=self.lab.tmp_dir / PIDFILE)
        except CaptureToolError as exc:
            if type(exc) is not CaptureToolError:  # permission, missing interface: nothing a retry fixes
                raise
            raise Failure("capture-error", str(exc)) from exc

    def _wait_idle(self) -> None:
        """Return once the Echo is idle: no traffic beyond keep-alive size for the idle window."""
        s, b = self.settings, self.backend
        if b.knows_end:
            if not b.wait_idle(s.idle_timeout_s):
                raise Failure("echo-busy", f"the Echo was still busy after {s.idle_timeout_s:.0f} s")
            return
        window = max(s.scaled(s.idle_gap_s), b.min_quiet_s)
        now = time.time()
        if self._quiet and now - self._quiet[1] < window and now - self._quiet[0] >= window:
            return  # the last capture watched the Echo quiet for the window a moment ago
        self._watch_quiet(window, s.idle_timeout_s)

    def _watch_quiet(self, window: float, timeout_s: float) -> None:
        """Capture the Echo's traffic until it pauses for *window* seconds (echo-busy after *timeout_s*)."""
        s, b = self.settings, self.backend
        path = self.lab.tmp_dir / f"capture-watch-{time.time_ns()}.pcapng"
        cap = self._start_capture(path)
        try:
            live = LiveCapture(path, b.device_ip, s.keepalive_bytes)
            start = time.time()
            while not self.stop.requested:
                if not cap.alive:
                    raise Failure("capture-error", f"{cap.tool} stopped while watching the Echo")
                live.poll()
                now = time.time()
                if now - max(live.last_traffic, start) >= window + RULES.collector_file_delay_s:
                    return
                if now - start > timeout_s:
                    raise Failure("echo-busy", f"the Echo's traffic did not pause for {window:.1f} s within "
                                               f"{timeout_s:.0f} s")
                time.sleep(POLL_S)
        finally:
            cap.abort()

    def _settle_link(self) -> None:
        """After the capture interface's link went down or up: wait until it is up and the Echo's traffic settles.

        An outage holds back what the Echo and the cloud sent; TCP retransmits it
        after the link is back, with a back-off that roughly doubles, so an
        earlier attempt's request may still reach the cloud and be answered.
        A capture started then would hold two requests. So the next prompt waits
        for the Echo's traffic to pause (by the traffic, even where the
        backend knows when its Echo is done) for as long as the link may have been
        down (:attr:`~echolab.captures.rules.TrafficRules.link_settle_min_s` to ``link_settle_max_s``).
        """
        s, b = self.settings, self.backend
        count = carrier_changes(b.interface, b.prefix)
        if count is None or count == self._link_changes:
            self._link_seen_at = time.time()
            return
        log.warning("link: %s went down or up since %s; waiting for it to be up and for the Echo's traffic "
                    "to settle before the next prompt", b.interface,
                    datetime.fromtimestamp(self._link_seen_at).strftime("%H:%M:%S"))
        give_up = time.monotonic() + s.idle_timeout_s
        while link_up(b.interface, b.prefix) is False:
            if self.stop.requested:
                return
            if time.monotonic() > give_up:
                raise Failure("link-down", f"{b.interface} has been down for over {s.idle_timeout_s:.0f} s")
            time.sleep(4 * POLL_S)
        window = min(max(RULES.link_settle_min_s, time.time() - self._link_seen_at), RULES.link_settle_max_s)
        self._watch_quiet(window, s.idle_timeout_s + window)
        self._quiet = None
        self._link_changes = carrier_changes(b.interface, b.prefix)
        self._link_seen_at = time.time()
        log.info("link: %s is up and the Echo's traffic paused %.1f s", b.interface, window)

    def _live_capture(self, tmp: Path, label: str, text: str, clip: Any, timing: CaptureTiming) -> datetime:
        """Capture one request into *tmp* (the Echo idle first); returns when the capture began."""
        s, b = self.settings, self.backend
        t = time.monotonic()
        self._ending = None
        self._settle_link()
        self._wait_idle()
        timing.idle = time.monotonic() - t
        t = time.monotonic()
        started_at = datetime.now(timezone.utc)
        cap = self._start_capture(tmp)
        timing.start = time.monotonic() - t
        try:
            t = time.monotonic()
            self._play_start = time.time()
            try:
                assert b.output is not None
                b.output.play(clip, label=label, prompt_text=text)
            except EcholabError as exc:
                raise Failure("audio-error" if "busy" not in str(exc).lower() else "echo-busy", str(exc)) from exc
            timing.play = time.monotonic() - t
            t = time.monotonic()
            live = LiveCapture(cap.path, b.device_ip, s.keepalive_bytes)
            self._ending = self._wait_response(cap, live, label)
            timing.response = time.monotonic() - t
            t = time.monotonic()
            info = cap.stop()
            live.poll()
            timing.stop = time.monotonic() - t
        except BaseException:
            cap.abort()
            raise
        if info.dropped:
            tmp.unlink(missing_ok=True)
            raise Failure("truncated", f"the capture engine dropped {info.dropped} packets")
        if info.link_changed:
            tmp.unlink(missing_ok=True)
            raise Failure("truncated", f"the capture interface {b.interface} went down during the capture; "
                                       "packets that crossed it then are missing")
        self._quiet = (live.last_traffic, time.time())
        ending = self._ending
        if s.trailing == "exclude" and ending.trailing_start is not None:
            cut_after(tmp, ending.trailing_start)
            ending.reason += "; post-answer upload cut out"
        return started_at

    def _wait_response(self, cap: CaptureProcess, live: LiveCapture, label: str) -> Ending:
        """Return when the answer (and the post-answer upload, if one comes) is over; Failure when none comes.

        Only traffic counts (packets beyond keep-alive size, either way): the
        answer is over after the quiet time without any; then the trailing
        window is watched for the post-answer upload, which ends with another
        quiet time. A backend that knows when its Echo is done (the
        parametric simulated lab) ends at the answer.
        """
        s, b = self.settings, self.backend
        quiet = max(s.scaled(s.quiet_s), b.min_quiet_s)
        trailing = s.scaled(s.trailing_s)
        lag = 0.0 if b.knows_end else RULES.collector_file_delay_s  # a packet may show in the file this late
        deadline = time.monotonic() + s.max_duration(label)
        answer_by = time.monotonic() + max(s.scaled(s.response_timeout_s), 1.0)
        answer_end: float | None = None
        still_busy = time.time()  # when the Echo last said it was not done (a backend that knows the end)
        while time.monotonic() < deadline:
            if not cap.alive:
                why = cap.why_stopped()
                raise Failure("capture-error", f"{cap.tool} stopped during the capture" + (f": {why}" if why else ""))
            live.poll(since=self._play_start)
            now = time.time()
            if live.answered_at is None:
                if time.monotonic() > answer_by:
                    if not live.packets:
                        raise Failure("no-traffic", f"no packet to or from {b.device_ip} on {b.interface}")
                    raise Failure("no-response", f"no answer from the cloud within {s.response_timeout_s:g} s")
            elif answer_end is None:
                if now - live.last_traffic >= quiet + lag and b.response_over():
                    answer_end = live.last_traffic
                    if b.knows_end:
                        # What the Echo sent as it finished (its playback report) may reach the file
                        # later than its word that it is done: stop the capture once it is there.
                        self._until_in_file(live, still_busy)
                        return Ending(f"quiet {quiet:.2g} s and the Echo done", answer_end)
                    deadline = time.monotonic() + trailing + s.max_duration(label)
                still_busy = now
            else:
                upload = live.traffic_after(answer_end)
                if upload is None and now - answer_end >= trailing + lag:
                    return Ending(f"quiet {quiet:.2g} s, no post-answer upload within {trailing:.2g} s", answer_end)
                if upload is not None and now - live.last_traffic >= quiet + lag:
                    return Ending(f"quiet {quiet:.2g} s after the post-answer upload "
                                  f"{upload - answer_end:.2g} s after the answer", answer_end, upload)
            time.sleep(POLL_S)
        what = "answer" if answer_end is None else "post-answer upload"
        raise Failure("echo-busy", f"the Echo's {what} went on past the {s.max_duration(label):.1f} s maximum")

    def _until_in_file(self, live: LiveCapture, after: float) -> None:
        """Wait (at most twice the engine's file delay) until the file holds a packet of the device sent after *after*."""
        give_up = time.monotonic() + 2 * RULES.collector_file_delay_s
        while live.last_packet < after and time.monotonic() < give_up:
            time.sleep(POLL_S)
            live.poll(since=self._play_start)


@dataclass
class _EstimatedClip:
    """No speech source given (a library caller passed ``audio=None``): a length estimated from the text."""

    text: str

    @property
    def duration_s(self) -> float:
        return 0.5 + 0.07 * len(self.text)


def _stable_key(*parts: object) -> int:
    """A per-attempt seed that is the same in every process (``hash`` is not)."""
    return int.from_bytes(hashlib.sha256(repr(parts).encode()).digest()[:8], "little")
