"""The thresholds by which an import or a cut is judged suspect, in one frozen object.

The cut (:mod:`echolab.captures.cut`) decides where requests are; these
thresholds decide when what it found deserves a second look, and when a file
imported whole looks like a long capture that should have been cut, and when
the labels a file-name pattern gives look wrong. They live
beside the cut, not in the traffic rules (:data:`echolab.captures.rules.RULES`),
because they judge results rather than packets. :mod:`echolab.captures.quality`
applies them.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class CutChecks:
    """When a capture or a cut is suspect; units in the names."""

    #: A file imported whole (no cut) that lasts longer than this is probably a long capture of
    #: several requests: a capture the collector makes for one request lasts well under a minute
    #: (the answer and the Echo's own upload 8 to 15 s after it).
    long_capture_s: float = 90.0
    #: The device in a file is suspect when it differs from the device most of the campaign's
    #: other files hold, and at least this many files were cut.
    device_quorum: int = 3
    #: A request lasting more than this many times the median request of its file, or of its
    #: campaign, is suspect (requests merged), ...
    duration_factor: float = 3.0
    #: ... unless it lasts less than this: a request with the Echo's own upload attached lasts up to
    #: about 25 s (an answer of 5 to 9 s, the upload 8 to 15 s after it), while two requests merged
    #: last 35 s or more (they come 30 s or more apart, start to start).
    duration_floor_s: float = 30.0
    #: A request sending more than this many times the median request's bytes (of its file or
    #: campaign) is suspect: two utterances uploaded, two requests merged whatever their duration.
    upload_factor: float = 1.8
    #: A request whose bytes to the device are less than this share of its bytes from the device
    #: is an upload only (the Echo's own upload taken for a request): a request gets an answer.
    upload_only_in_share: float = 0.1
    #: ``--split auto`` found its cut for gaps whose largest is less than this many times the smallest:
    #: the requests are barely apart from the bursts around them.
    narrow_gap_ratio: float = 1.3

    #: A ``--label-from`` pattern looks wrong when it leaves more than this share of the files
    #: unmatched, or gives more than this many files a label on average (long captures hold
    #: several requests each, so a class seldom needs many files).
    label_unmatched_share: float = 0.1
    label_files_per_label: float = 10.0


CHECKS = CutChecks()

__all__ = ["CHECKS", "CutChecks"]
