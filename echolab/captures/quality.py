"""Checks of a cut: which long captures were cut into requests in a way that deserves a second look.

A cut can go wrong without failing: the automatic device choice takes another
address, two post-answer uploads count as requests while three real requests
merge into one long piece, a file holding six requests is cut into the five
expected. Each check below compares what the cut found with what a cut of the
same campaign usually finds, and says in words why a file is suspect:

* **device**: the file's device is not the one most of the campaign's files hold;
* **duration**: a request lasts several times the median request of its file or
  of its campaign (requests merged, or a stray burst taken in);
* **upload**: a request sends nearly twice the bytes of the median request (two
  utterances: requests merged, however short the quiet between them);
* **upload only**: a request gets (almost) nothing back: a request gets an
  answer, the Echo's own upload after one does not;
* **narrow gaps**: ``--split auto`` found its cut for a narrow range of gaps only,
  so the requests are barely apart from the bursts around them;
* **count**: the file holds another count of requests than ``--expect`` says, or
  no cut gives that count well separated (``--expect`` never forces it).

How many requests got a trailing burst attached is reported beside the
verdicts (the Echo's own upload is common, so it is a note, not a suspicion).
The thresholds are :data:`echolab.captures.checks.CHECKS`. A verdict is ``ok``
or ``suspect: why; why``, the text the catalog keeps with each piece.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from statistics import median
from typing import TYPE_CHECKING, Sequence

from echolab.captures.checks import CHECKS, CutChecks

if TYPE_CHECKING:
    from echolab.captures.cut import SplitResult


@dataclass
class CutVerdict:
    """One file's checks: why it is suspect (nothing: ok), and how many requests got a trailing burst."""

    file: str
    reasons: list[str] = field(default_factory=list)
    requests: int = 0
    attached: int = 0

    @property
    def ok(self) -> bool:
        return not self.reasons

    @property
    def text(self) -> str:
        """``ok`` or ``suspect: why; why`` (what the catalog keeps)."""
        return "ok" if self.ok else "suspect: " + "; ".join(self.reasons)


@dataclass
class CampaignContext:
    """What the campaign already holds, for checks of files cut later: devices of its files, request durations."""

    devices: list[str] = field(default_factory=list)  # one entry a file
    durations_s: list[float] = field(default_factory=list)  # one entry a request
    uploads: list[int] = field(default_factory=list)  # IP bytes the device sent, one entry a request


@dataclass
class CutChecksReport:
    """The verdict of each file, and the campaign's view they were judged against."""

    verdicts: list[CutVerdict]
    device: str | None = None  # the device most files hold
    median_s: float | None = None  # the campaign's median request

    @property
    def suspect(self) -> list[CutVerdict]:
        return [v for v in self.verdicts if not v.ok]

    def attached_share(self) -> tuple[int, int]:
        """(requests with a trailing burst attached, requests) over every file."""
        return sum(v.attached for v in self.verdicts), sum(v.requests for v in self.verdicts)

    def summary(self) -> str:
        """One line: suspect files, and the trailing bursts attached."""
        attached, total = self.attached_share()
        line = f"cut checks: {len(self.suspect)} of {len(self.verdicts)} files suspect"
        if total:
            line += f"; trailing bursts attached to {attached} of {total} requests ({100 * attached / total:.0f}%)"
        return line


def check_cuts(results: Sequence["SplitResult"], *, context: CampaignContext | None = None,
               checks: CutChecks = CHECKS) -> CutChecksReport:
    """Judge the cut of each file in *results* (the files of one campaign) against the others and *context*."""
    context = context or CampaignContext()
    devices = context.devices + [r.timeline.device.ip for r in results]
    durations = context.durations_s + [s.duration_s for r in results for s in r.segments]
    uploads = context.uploads + [s.bytes_out for r in results for s in r.segments]
    device, held = Counter(devices).most_common(1)[0] if devices else (None, 0)
    if len(devices) < checks.device_quorum or held * 2 <= len(devices):
        device = None  # too few files, or no majority: nothing to compare with
    campaign_median = median(durations) if durations else None
    campaign_upload = median(uploads) if uploads else None
    verdicts = [_verdict(r, device, held, len(devices), campaign_median, campaign_upload, checks) for r in results]
    return CutChecksReport(verdicts, device, campaign_median)


def _verdict(result: "SplitResult", device: str | None, held: int, files: int, campaign_median: float | None,
             campaign_upload: float | None, checks: CutChecks) -> CutVerdict:
    segments = result.segments
    verdict = CutVerdict(str(result.timeline.path), requests=len(segments), attached=result.attached)
    why = verdict.reasons
    mine = result.timeline.device
    if device is not None and mine.ip != device:
        why.append(f"device {mine.describe()} is not the campaign's {device} ({held} of {files} files)")
    if result.expect is not None and not result.fits:
        why.append(f"no cut gives the {result.expect} requests expected well apart; not forced")
    if result.expect is not None and len(segments) != result.expect:
        why.append(f"holds {len(segments)} requests, expected {result.expect}")
    own_median = median(s.duration_s for s in segments) if segments else None
    own_upload = median(s.bytes_out for s in segments) if segments else None
    for i, seg in enumerate(segments, 1):
        longer = _longer(seg.duration_s, own_median, "the file's", checks) or \
            _longer(seg.duration_s, campaign_median, "the campaign's", checks)
        if longer:
            why.append(f"request {i} lasts {seg.duration_s:.0f} s, {longer}")
        bigger = _bigger(seg.bytes_out, own_upload, "the file's", checks) or \
            _bigger(seg.bytes_out, campaign_upload, "the campaign's", checks)
        if bigger and not longer:
            why.append(f"request {i} sends {seg.bytes_out / 1000:.0f} kB, {bigger}")
        if seg.bytes_in < checks.upload_only_in_share * seg.bytes_out:
            why.append(f"request {i} is upload only ({seg.bytes_out / 1000:.1f} kB up, "
                       f"{seg.bytes_in / 1000:.1f} kB down)")
    if result.gap_range_s is not None:
        lo, hi = result.gap_range_s
        if lo > 0 and hi / lo < checks.narrow_gap_ratio:
            why.append(f"the cut holds only for gaps from {lo:.2f} to {hi:.2f} s")
    return verdict


def _bigger(sent: int, median_sent: float | None, whose: str, checks: CutChecks) -> str | None:
    if not median_sent or sent <= checks.upload_factor * median_sent:
        return None
    return f"{sent / median_sent:.1f} times {whose} median ({median_sent / 1000:.0f} kB): two requests?"


def _longer(duration_s: float, median_s: float | None, whose: str, checks: CutChecks) -> str | None:
    if not median_s or duration_s < checks.duration_floor_s or duration_s <= checks.duration_factor * median_s:
        return None
    return f"{duration_s / median_s:.1f} times {whose} median ({median_s:.0f} s)"


__all__ = ["CampaignContext", "CutChecksReport", "CutVerdict", "check_cuts"]
