"""The data stage: validated tables from MovieLens files, TMDB details and feedback events.

Rejected rows are written to ``<processed>/quarantine/<table>.parquet`` with a ``reason``
column, also when the rejected fraction is too high and the stage fails, so the operator can
see what to fix. Processed tables go to ``<processed>/{movies,interactions}.parquet`` with a
manifest (:func:`recommender.data.storage.write_tables`).
"""

from __future__ import annotations

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
