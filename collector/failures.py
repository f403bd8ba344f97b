"""How a request of a campaign fails: the kinds of failure, what to do about each, and the errors.

A request that gives no good capture raises :class:`Failure` with one of
:data:`FAILURE_KINDS`; the runner retries it, and pauses the campaign
(:class:`CampaignPaused`) when one kind repeats, with the kind's hint from :data:`HINTS`.
"""

from __future__ import annotations

from echolab.errors import EcholabError

FAILURE_KINDS = ("no-traffic", "no-response", "capture-error", "audio-error", "echo-busy", "truncated",
                 "link-down")


class CollectError(EcholabError):
    pass


class CampaignPaused(CollectError):
    """Too many failures of one kind in a row: something in the lab needs a person."""


class Failure(Exception):
    """One request did not give a good capture; ``kind`` is one of FAILURE_KINDS."""

    def __init__(self, kind: str, detail: str):
        super().__init__(f"{kind}: {detail}")
        self.kind, self.detail = kind, detail


HINTS = {
    "no-traffic": "no packets to or from the Echo: check --device-ip, --interface and that the Echo is online",
    "no-response": "the Echo did not answer: check the speaker volume and placement, and the wake word",
    "capture-error": "the capture engine failed: run 'echolab doctor'",
    "audio-error": "the prompt could not be played or synthesized: run 'echolab doctor'",
    "echo-busy": "the Echo stayed busy: is someone else talking to it, or is it playing music?",
    "truncated": "captures were cut short or dropped packets: check disk space and system load",
    "link-down": "the capture interface's link is down: check the gateway's cable or the Echo's Wi-Fi access point",
}


__all__ = ["CampaignPaused", "CollectError", "FAILURE_KINDS", "Failure", "HINTS"]
