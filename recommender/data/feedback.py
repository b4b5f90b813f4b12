"""The feedback event log written by the serving API and read by the ingestion flow.

The log is a :class:`recommender.data.logs.AppendLog` (lock, one write, fsync, torn-tail rule)
that many threads and processes append to. :func:`read_events` never fails on content: an
unterminated last line is reported as ``EventLog.torn_tail``; any other line that is not a valid
event is returned in ``EventLog.rejected`` with its line number and reason, for the quarantine
table.

:func:`events_to_interactions` turns events into training interactions on the rating scale:

=========  ==========================================================================
event      interaction rating
=========  ==========================================================================
rating     its value (0.5..5.0)
like       5.0, an explicit "I like this" is the top of the scale
click      3.5, the user chose to look closer: a mild positive, about the MovieLens mean
view       3.0, exposure with attention, the weakest positive signal
dislike    dropped: implicit-feedback models have no negative interactions
=========  ==========================================================================

Identical events (same user, movie, event and value) collapse to one interaction, the latest:
15,000 identical ``view`` posts weigh what one does. Different events for the same (user,
movie) stay separate interactions; the feature builder aggregates them to one row per pair.

The log rotates: once the active file would pass ``max_bytes`` (default
:data:`FEEDBACK_LOG_MAX_BYTES`) it becomes a numbered segment beside it, and
:func:`read_events` reads every segment, oldest first, then the active file.
"""

from __future__ import annotations

import time
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import polars as pl
from pydantic import BaseModel, ConfigDict, Field, model_validator

from recommender.data import contracts
from recommender.data.contracts import IMPRESSION_ID_PATTERN
from recommender.data.logs import AppendLog, read_log

EventType = Literal["view", "click", "like", "dislike", "rating"]

MAX_TIMESTAMP = 4_102_444_800.0
"""2100-01-01 UTC in unix seconds: the latest time any table of the pipeline takes (timestamps
become Int64 seconds in the interactions)."""

FEEDBACK_LOG_MAX_BYTES = 64 * 1024 * 1024
"""The size past which the event log rotates to a new segment, unless the writer says otherwise."""

EVENT_RATINGS: dict[str, float] = {"like": 5.0, "click": 3.5, "view": 3.0}
FEEDBACK_DTYPES = contracts.FEEDBACK
REJECTED_DTYPES = contracts.REJECTED_LINES


class FeedbackEvent(BaseModel):
    """One user action on one movie.

    Ids are strict positive integers (``true`` or ``"5"`` is refused). ``value`` is required
    for ``rating`` events; whenever given it must be in 0.5..5.0. ``timestamp`` (unix
    seconds) defaults to now. ``impression_id`` names the recommendation answer the movie was
    shown in (:mod:`recommender.serving.impressions`), when the event answers one.
    """

    model_config = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False)

    user_id: int = Field(gt=0, strict=True)
    movie_id: int = Field(gt=0, strict=True)
    event: EventType
    value: float | None = Field(default=None, ge=0.5, le=5.0)
    timestamp: float = Field(default_factory=time.time, ge=0, le=MAX_TIMESTAMP)
    impression_id: str | None = Field(default=None, pattern=IMPRESSION_ID_PATTERN)

    @model_validator(mode="after")
    def _rating_has_value(self) -> FeedbackEvent:
        if self.event == "rating" and self.value is None:
            raise ValueError("a 'rating' event needs a value between 0.5 and 5.0")
        return self


@dataclass(frozen=True)
class EventLog:
    """What :func:`read_events` found.

    Attributes:
        events: The valid events (columns of ``FEEDBACK_DTYPES``), in log order.
        rejected: Lines that are not valid events: ``line`` (1-based number), ``text`` and
            ``reason``.
        torn_tail: The unterminated last line (a crashed writer's, which the next append cuts
            off, or one being written right now), or None.
    """

    events: pl.DataFrame
    rejected: pl.DataFrame
    torn_tail: str | None


def append_event(
    path: Path, event: FeedbackEvent, *, max_bytes: int = FEEDBACK_LOG_MAX_BYTES
) -> None:
    """Append one event to the log at ``path`` (see :func:`append_events`)."""
    append_events(path, [event], max_bytes=max_bytes)


def append_events(
    path: Path, events: Iterable[FeedbackEvent], *, max_bytes: int = FEEDBACK_LOG_MAX_BYTES
) -> int:
    """Append events to the log at ``path`` as one locked, fsynced write, rotating the file
    to a segment first when the write would take it past ``max_bytes``.

    Returns:
        The number of events written.
    """
    return AppendLog(path, max_bytes=max_bytes).append(event.model_dump_json() for event in events)


def read_events(path: Path) -> EventLog:
    """Read the event log at ``path`` with its rotated segments, oldest first; a missing file
    is an empty log.

    Each line is validated as a :class:`FeedbackEvent`; see :class:`EventLog` for what
    happens to the lines that are not valid.
    """
    contents = read_log(path, FeedbackEvent.model_validate_json)
    events = contents.records
    return EventLog(
        events=pl.DataFrame(
            {name: [getattr(event, name) for event in events] for name in FEEDBACK_DTYPES},
            schema=FEEDBACK_DTYPES,
        ),
        rejected=contents.rejected,
        torn_tail=contents.torn_tail,
    )


def events_to_interactions(events: pl.DataFrame) -> pl.DataFrame:
    """Map feedback events to interactions (``source="feedback"``) with the module's table.

    Identical events keep only their latest (the last in log order); timestamps are floored
    to whole seconds; dislikes are dropped.
    """
    positive = events.filter(pl.col("event").is_in(["rating", *EVENT_RATINGS]))
    return positive.unique(
        ["user_id", "movie_id", "event", "value"], keep="last", maintain_order=True
    ).select(
        "user_id",
        "movie_id",
        pl.when(pl.col("event") == "rating")
        .then(pl.col("value"))
        .otherwise(pl.col("event").replace_strict(EVENT_RATINGS, default=None))
        .cast(pl.Float64)
        .alias("rating"),
        pl.col("timestamp").floor().cast(pl.Int64),
        pl.lit("feedback").alias("source"),
    )
