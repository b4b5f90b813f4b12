"""The data stage: validated tables from MovieLens files, TMDB details and feedback events.

Rejected rows are written to ``<processed>/quarantine/<table>.parquet`` with a ``reason``
column, also when the rejected fraction is too high and the stage fails, so the operator can
see what to fix. Processed tables go to ``<processed>/{movies,interactions}.parquet`` with a
manifest (:func:`recommender.data.storage.write_tables`).
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import pandera.polars as pa
import polars as pl

from recommender.data.feedback import EventLog, events_to_interactions
from recommender.data.schemas import (
    FeedbackSchema,
    TooManyRejectedError,
    ValidationResult,
    enforce_rejected_fraction,
    validate_frame,
)

QUARANTINE_DIR = "quarantine"
UNPARSEABLE_LINE = "unparseable line"


def ratings_to_interactions(ratings: pl.DataFrame) -> pl.DataFrame:
    """MovieLens ratings in the interactions contract (``source`` = ``"movielens"``)."""
    return ratings.with_columns(source=pl.lit("movielens"))


def _write_quarantine(quarantine: pl.DataFrame, path: Path) -> None:
    if quarantine.height:
        path.parent.mkdir(parents=True, exist_ok=True)
        quarantine.write_parquet(path)
    else:  # a quarantine file always describes the latest run
        path.unlink(missing_ok=True)


def validate_table(
    df: pl.DataFrame,
    schema: type[pa.DataFrameModel],
    *,
    name: str,
    max_rejected_fraction: float,
    processed_dir: Path,
) -> ValidationResult:
    """Validate ``df`` and write its rejected rows to the quarantine table ``name``.

    Raises:
        TooManyRejectedError: After writing the quarantine, when too many rows failed.
    """
    path = processed_dir / QUARANTINE_DIR / f"{name}.parquet"
    try:
        result = validate_frame(df, schema, name=name, max_rejected_fraction=max_rejected_fraction)
    except TooManyRejectedError as exc:
        _write_quarantine(exc.result.quarantine, path)
        raise
    _write_quarantine(result.quarantine, path)
    return result


def validate_feedback(
    log: EventLog, *, max_rejected_fraction: float, processed_dir: Path
) -> ValidationResult:
    """Validate the feedback log: parsed events against the schema plus the unparseable lines.

    Lines that are not events at all count as rejected rows of the ``feedback`` table (reason
    ``"unparseable line"``) and go to the quarantine table ``feedback_lines``; a torn last
    line from a crashed writer is not counted (the next append completes the log).
    """
    result = validate_table(
        log.events,
        FeedbackSchema,
        name="feedback",
        max_rejected_fraction=1.0,
        processed_dir=processed_dir,
    )
    _write_quarantine(log.rejected, processed_dir / QUARANTINE_DIR / "feedback_lines.parquet")
    summary = _with_rejections(
        result.summary, UNPARSEABLE_LINE, log.rejected.height, from_valid=False
    )
    return enforce_rejected_fraction(
        ValidationResult(valid=result.valid, quarantine=result.quarantine, summary=summary),
        max_rejected_fraction=max_rejected_fraction,
    )


ORPHAN_MOVIE = "movie_id: not in movies"


def quarantine_orphans(
    result: ValidationResult,
    movie_ids: pl.Series,
    *,
    source: str,
    max_rejected_fraction: float,
    processed_dir: Path,
) -> ValidationResult:
    """Move the valid ratings of movies that ``movie_ids`` lacks to the ratings' quarantine.

    They count as rejected rows (reason :data:`ORPHAN_MOVIE`): a rating of a movie the catalog
    does not hold cannot be served or explained.

    Raises:
        ValueError: ``source`` has no ratings at all (an empty or header-only file).
        TooManyRejectedError: After writing the quarantine, when too many rows failed.
    """
    if result.summary["rows_in"] == 0:
        raise ValueError(
            f"the ratings source {source} holds no ratings; point --ratings "
            "(MOVIEREC_RATINGS_SOURCE) at a MovieLens dataset with a non-empty ratings file"
        )
    orphan = ~result.valid.get_column("movie_id").is_in(movie_ids.implode())
    orphans = int(orphan.sum())
    if orphans:
        quarantine = pl.concat(
            [
                result.quarantine,
                result.valid.filter(orphan).with_columns(reason=pl.lit(ORPHAN_MOVIE)),
            ]
        )
        summary = _with_rejections(result.summary, ORPHAN_MOVIE, orphans, from_valid=True)
        result = ValidationResult(
            valid=result.valid.filter(~orphan), quarantine=quarantine, summary=summary
        )
        _write_quarantine(
            quarantine, processed_dir / QUARANTINE_DIR / f"{summary['table']}.parquet"
        )
    return enforce_rejected_fraction(result, max_rejected_fraction=max_rejected_fraction)


FEEDBACK_USERS = "feedback_users"
TOO_FEW_MOVIES = "user_id: feedback-only user with fewer than {} distinct movies"
OVER_NEW_USER_CAP = "user_id: past this run's cap of {} new feedback-only users"


def admit_feedback_users(
    feedback: ValidationResult,
    ratings_users: pl.Series,
    previous_users: pl.Series,
    *,
    min_movies: int,
    max_new_fraction: float,
    processed_dir: Path,
) -> ValidationResult:
    """Hold back the events of feedback-only users that have not earned a place in training.

    A user of the valid feedback events who is not in ``ratings_users`` is feedback-only and
    enters training only with events for at least ``min_movies`` distinct movies. Those not in
    ``previous_users`` either (the users of the previous processed interactions) are new: at
    most ``floor(max_new_fraction * distinct ratings and previous users)`` of them enter per
    run, in the order of their first event in the log; the others wait for a later run.
    Anonymous clients can make up any number of user ids: this bounds what made-up users add
    to a model, relative to the users it has. The minimum applies to previous users too, so
    made-up users that an earlier, unguarded run let in are not kept for having been in.

    Held-back events go to the quarantine table :data:`FEEDBACK_USERS` with the reason, and the
    returned summary (table ``feedback_users``) counts them, with ``new_users`` (admitted),
    ``held_users`` and ``max_new_users`` (the cap). They do not fail the run, whatever their
    number: they are valid events that may count later, and failing would let anyone stop the
    data flow with fake users.

    Returns:
        The admitted events as ``valid``, the held-back ones as ``quarantine``.

    Raises:
        ValueError: ``min_movies`` is below 1 or ``max_new_fraction`` below 0.
    """
    if min_movies < 1:
        raise ValueError(f"min_movies must be at least 1, got {min_movies}")
    if not max_new_fraction >= 0:
        raise ValueError(f"max_new_fraction must be at least 0, got {max_new_fraction}")
    known = pl.concat([ratings_users, previous_users]).n_unique()
    max_new_users = math.floor(max_new_fraction * known)
    events = feedback.valid
    eligible = pl.col("movies") >= min_movies
    new = eligible & ~pl.col("user_id").is_in(previous_users.implode())
    users = (
        events.filter(~pl.col("user_id").is_in(ratings_users.implode()))
        .group_by("user_id", maintain_order=True)  # in the order of their first event
        .agg(pl.col("movie_id").n_unique().alias("movies"))
        .with_columns(
            new.alias("new"),
            pl.when(~eligible)
            .then(pl.lit(TOO_FEW_MOVIES.format(min_movies)))
            .when(new & (new.cast(pl.Int64).cum_sum() > max_new_users))
            .then(pl.lit(OVER_NEW_USER_CAP.format(max_new_users)))
            .alias("reason"),
        )
    )
    held = users.filter(pl.col("reason").is_not_null()).select("user_id", "reason")
    quarantine = events.join(held, on="user_id", how="inner", maintain_order="left")
    summary = {
        "table": FEEDBACK_USERS,
        "rows_in": events.height,
        "valid": events.height,
        "rejected": 0,
        "rejected_fraction": 0.0,
        "reasons": {},
        "new_users": users.filter(pl.col("new") & pl.col("reason").is_null()).height,
        "held_users": held.height,
        "max_new_users": max_new_users,
    }
    for reason, count in quarantine.group_by("reason").len().iter_rows():
        summary = _with_rejections(summary, reason, count, from_valid=True)
    _write_quarantine(quarantine, processed_dir / QUARANTINE_DIR / f"{FEEDBACK_USERS}.parquet")
    return ValidationResult(
        valid=events.join(held, on="user_id", how="anti", maintain_order="left"),
        quarantine=quarantine,
        summary=summary,
    )


def previous_users(interactions_table: Path) -> pl.Series:
    """The users of the processed interactions at ``interactions_table`` (none when missing)."""
    if not interactions_table.exists():
        return pl.Series("user_id", [], dtype=pl.Int64)
    return pl.read_parquet(interactions_table, columns=["user_id"]).get_column("user_id").unique()


def _with_rejections(
    summary: dict[str, Any], reason: str, count: int, *, from_valid: bool
) -> dict[str, Any]:
    """``summary`` with ``count`` more rejected rows for ``reason``: rows taken from the valid
    ones (``from_valid``) or rows the frame did not hold (which add to ``rows_in``)."""
    if not count:
        return summary
    summary = dict(summary)
    summary["valid" if from_valid else "rows_in"] += -count if from_valid else count
    summary["rejected"] += count
    summary["rejected_fraction"] = summary["rejected"] / summary["rows_in"]
    reasons = {reason: count, **summary["reasons"]}
    summary["reasons"] = dict(sorted(reasons.items(), key=lambda item: -item[1]))
    return summary


def combine_interactions(ratings: pl.DataFrame, feedback_events: pl.DataFrame) -> pl.DataFrame:
    """Validated MovieLens ratings plus the positive feedback events, oldest first."""
    return pl.concat(
        [ratings_to_interactions(ratings), events_to_interactions(feedback_events)],
        how="vertical",
    ).sort("timestamp", "user_id", "movie_id", maintain_order=True)
