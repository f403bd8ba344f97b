"""The one list of request classes.

The study's six classes come first, in the order its tables use. More classes
(the study's future work) are added as prompt lists in ``prompts/lists/``
without code changes; :func:`echolab.prompts.lists.available_classes` finds them.
"""

from __future__ import annotations

STUDY_CLASSES: tuple[str, ...] = (
    "information",
    "quotes",
    "weather",
    "directions",
    "music",
    "unintelligible",
)

#: The study's future-work classes, shipped as ready lists.
EXTRA_CLASSES: tuple[str, ...] = ("shopping", "podcasts", "other")

#: Per-class target of the study: 130 captures each, 780 in all.
STUDY_PER_CLASS = 130
