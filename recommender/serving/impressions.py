"""Impressions: what each answer showed, to whom, from which model version.

Every recommendation answer gets an ``impression_id`` that sorts by time (12 hex digits of
milliseconds since the epoch, then 16 random hex digits) and one record in the impression log,
an :class:`~recommender.data.logs.AppendLog` with the project's durability rules. A
synchronous ``fsync`` per answer would cost more than the answer itself, so the service hands
records to an :class:`ImpressionWriter`, which appends them in batches from a thread: at most
``flush_seconds`` (or ``max_batch`` records) pass between an answer and its impression being on
disk. A ``kill -9`` can lose the impressions of that window; feedback that names one of them is
then counted as "unknown impression" by the monitoring flow, never attributed wrongly.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import polars as pl

from recommender.data.logs import AppendLog, json_line, parse_json_object, read_log

logger = logging.getLogger("recommender.serving.impressions")

IMPRESSIONS = pl.Schema(
    {
        "impression_id": pl.String,
        "timestamp": pl.Float64,
        "endpoint": pl.String,
        "user_key": pl.String,
        "model_version": pl.String,
        "fallback": pl.Boolean,
        "movie_ids": pl.List(pl.Int64),
        "experiment": pl.String,
        "arm": pl.String,
        "shadow_version": pl.String,
        "shadow_movie_ids": pl.List(pl.Int64),
    }
)
"""The impression log as a table; ``movie_ids`` in rank order. ``experiment`` names the
experiment the answer was part of (null outside one), ``arm`` the arm that answered;
``shadow_version`` and ``shadow_movie_ids`` are the challenger's list for the same request in
shadow mode (logged, not shown). Lines written before experiments existed read as null there."""
ANONYMOUS = "anonymous"
"""The user key of a visitor who sent neither a user id nor a session id."""


def new_impression_id(now: float | None = None) -> str:
    """A unique id that sorts by creation time (to the millisecond), matching
    :data:`~recommender.data.contracts.IMPRESSION_ID_PATTERN`."""
    millis = int((time.time() if now is None else now) * 1000)
    return f"{millis:012x}{os.urandom(8).hex()}"


def user_key(user_id: int | None, session_id: str | None) -> str:
    """Who saw an answer: the user id, or ``s:<session id>`` for an anonymous visitor, or
    ``anonymous`` when neither is known."""
    if user_id is not None:
        return str(user_id)
    return f"s:{session_id}" if session_id else ANONYMOUS


def impression_record(
    *,
    impression_id: str,
    endpoint: str,
    user: str,
    model_version: str,
    movie_ids: Sequence[int],
    fallback: bool,
    experiment: str | None = None,
    arm: str = "champion",
    shadow: tuple[str, Sequence[int]] | None = None,
) -> dict[str, Any]:
    """One line of the impression log (timestamped now); ``shadow`` is the shadow model's
    version and list."""
    record: dict[str, Any] = {
        "impression_id": impression_id,
        "timestamp": time.time(),
        "endpoint": endpoint,
        "user_key": user,
        "model_version": model_version,
        "fallback": fallback,
        "movie_ids": list(movie_ids),
        "experiment": experiment,
        "arm": arm,
    }
    if shadow is not None:
        record["shadow_version"], record["shadow_movie_ids"] = shadow[0], list(shadow[1])
    return record


class ImpressionWriter:
    """Appends impression records to ``log`` in batches from a daemon thread.

    Args:
        log: The impression log.
        flush_seconds: The longest a record waits for its batch.
        max_batch: A batch this large is written at once.
        max_pending: Records beyond this many waiting (the disk cannot keep up) are dropped and
            counted in :attr:`dropped`, so memory stays bounded.
    """

    def __init__(
        self,
        log: AppendLog,
        *,
        flush_seconds: float = 0.2,
        max_batch: int = 1000,
        max_pending: int = 100_000,
    ) -> None:
        if flush_seconds <= 0 or max_batch < 1 or max_pending < max_batch:
            raise ValueError(
                "need flush_seconds > 0 and 1 <= max_batch <= max_pending, got "
                f"{flush_seconds}, {max_batch}, {max_pending}"
            )
        self.log = log
        self.flush_seconds = flush_seconds
        self.max_batch = max_batch
        self.max_pending = max_pending
        self.dropped = 0
        self._pending: list[str] = []
        self._wake = threading.Condition()
        self._closed = False
        self._thread = threading.Thread(target=self._run, name="impression-writer", daemon=True)
        self._thread.start()

    def record(self, record: dict[str, Any]) -> None:
        """Queue one record (never blocks on the disk)."""
        line = json_line(record)
        with self._wake:
            if len(self._pending) >= self.max_pending:
                self.dropped += 1
                return
            self._pending.append(line)
            if len(self._pending) >= self.max_batch:
                self._wake.notify()

    def close(self) -> None:
        """Write what is queued and stop the thread."""
        with self._wake:
            self._closed = True
            self._wake.notify()
        self._thread.join()

    def _run(self) -> None:
        while True:
            with self._wake:
                if not self._closed and len(self._pending) < self.max_batch:
                    self._wake.wait(self.flush_seconds)
                batch, self._pending = self._pending, []
                closed = self._closed
            if batch:
                try:
                    self.log.append(batch)
                except OSError:
                    # A full or failing disk must not take the answers down with it.
                    logger.exception(
                        "could not write %d impressions to %s", len(batch), self.log.path
                    )
            if closed:
                return


def read_impressions(path: Path) -> pl.DataFrame:
    """The impression log as an :data:`IMPRESSIONS` table (lines that do not parse are left
    out; the writer never writes such lines)."""
    contents = read_log(path, parse_json_object)
    rows = [{name: record.get(name) for name in IMPRESSIONS} for record in contents.records]
    return pl.DataFrame(rows, schema=IMPRESSIONS, orient="row") if rows else IMPRESSIONS.to_frame()
