"""pandera models (polars backend) for every table, and row-wise validation with quarantine.

The models are the column contracts in executable form. They are strict (an extra column is an
error) and do not coerce: a frame with a missing, extra or wrongly typed column is a programming
or layout error and raises :class:`FrameSchemaError`; a row that breaks a value check is moved to
the quarantine table by :func:`validate_frame` with the failing checks as its ``reason``.

Rules worth knowing:

* Ids are positive, ratings are in 0.5..5.0 (MovieLens' scale), timestamps are >= 0.
* ``RatingsSchema`` (MovieLens ratings) allows one rating per (user_id, movie_id), as every
  MovieLens release does; when a pair repeats, every copy is quarantined, since nothing says
  which one is right. ``InteractionsSchema`` has no such rule: it is an event stream in which
  a user may view, click and rate the same movie; aggregating is the feature builder's job.
* Feedback events: ``value`` is required for ``rating`` events and, when present, in 0.5..5.0.
* A null (or NaN) in a non-nullable column fails as ``<column>: not_nullable``; the MovieLens
  loader reads unparseable numbers as null, so a stray ``"abc"`` id is quarantined this way.

Validate eager ``pl.DataFrame`` objects: pandera skips data checks on a ``LazyFrame``.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

import pandera.polars as pa
import polars as pl
from pandera.errors import SchemaErrors

from recommender.data import contracts

EVENT_TYPES = ("view", "click", "like", "dislike", "rating")
IMPRESSION_ID_PATTERN = contracts.IMPRESSION_ID_PATTERN
INTERACTION_SOURCES = ("movielens", "feedback")
MAX_REJECTED_FRACTION_ENV = "MOVIEREC_MAX_REJECTED_FRACTION"

_RATING_RANGE = {"min_value": 0.5, "max_value": 5.0}
_ROW = "__row__"


class _StrictModel(pa.DataFrameModel):
    class Config:
        strict = True


def _model(
    name: str,
    contract: pl.Schema,
    fields: dict[str, Any],
    *,
    doc: str,
    checks: dict[str, Any] | None = None,
) -> type[pa.DataFrameModel]:
    """A strict pandera model of ``contract``: its columns and dtypes, ``fields`` adding the
    value checks (``pa.Field``) of some columns, ``checks`` frame-level checks."""
    unknown = sorted(set(fields) - set(contract.names()))
    if unknown:
        raise ValueError(f"{name}: fields names column(s) {unknown} outside its contract")
    namespace: dict[str, Any] = {
        "__annotations__": dict(contract),
        "__doc__": doc,
        "__module__": __name__,
        "__qualname__": name,
        **fields,
        **(checks or {}),
    }
    return type(name, (_StrictModel,), namespace)


_POSITIVE_ID = {"gt": 0}
_IMDB_ID = {"nullable": True, "str_matches": r"^\d{7,}$"}
_DATE = {"nullable": True, "str_matches": r"^\d{4}-\d{2}-\d{2}$"}
_VOTE_AVERAGE = {"in_range": {"min_value": 0, "max_value": 10}}
_MOVIE_FIELDS = {
    "movie_id": pa.Field(**_POSITIVE_ID, unique=True),
    "title": pa.Field(str_length={"min_value": 1}),
    "year": pa.Field(nullable=True, in_range={"min_value": 1870, "max_value": 2100}),
}
_RATING_FIELDS = {
    "user_id": pa.Field(**_POSITIVE_ID),
    "movie_id": pa.Field(**_POSITIVE_ID),
    "rating": pa.Field(in_range=_RATING_RANGE),
    "timestamp": pa.Field(ge=0),
}

MoviesSchema = _model(
    "MoviesSchema",
    contracts.MOVIES,
    _MOVIE_FIELDS,
    doc="MovieLens movies: one row per movie_id; genres is an empty list when none are listed.",
)
LinksSchema = _model(
    "LinksSchema",
    contracts.LINKS,
    {
        "movie_id": pa.Field(**_POSITIVE_ID, unique=True),
        "imdb_id": pa.Field(**_IMDB_ID),
        "tmdb_id": pa.Field(nullable=True, **_POSITIVE_ID),
    },
    doc="MovieLens links: imdb_id keeps its leading zeros; either id may be missing.",
)
TmdbDetailsSchema = _model(
    "TmdbDetailsSchema",
    contracts.TMDB_DETAILS,
    {
        "tmdb_id": pa.Field(**_POSITIVE_ID, unique=True),
        "poster_path": pa.Field(nullable=True),
        "overview": pa.Field(nullable=True),
        "popularity": pa.Field(ge=0),
        "vote_average": pa.Field(**_VOTE_AVERAGE),
        "vote_count": pa.Field(ge=0),
        "release_date": pa.Field(**_DATE),
    },
    doc="TMDB movie details as produced by :func:`recommender.data.tmdb.load_tmdb_details`.",
)
CatalogSchema = _model(
    "CatalogSchema",
    contracts.CATALOG,
    {
        **_MOVIE_FIELDS,
        "imdb_id": pa.Field(**_IMDB_ID),
        "tmdb_id": pa.Field(nullable=True, **_POSITIVE_ID),
        "poster_path": pa.Field(nullable=True),
        "overview": pa.Field(nullable=True),
        "popularity": pa.Field(nullable=True, ge=0),
        "vote_average": pa.Field(nullable=True, **_VOTE_AVERAGE),
        "vote_count": pa.Field(nullable=True, ge=0),
        "release_date": pa.Field(**_DATE),
    },
    doc="Movies with their links and TMDB details (TMDB columns null when there are none).",
)


def _pair_is_duplicated(frame: pl.LazyFrame) -> pl.Expr:
    """``is_duplicated`` of (user_id, movie_id), by comparing neighbours when the frame is in
    (user_id, movie_id) order, as MovieLens files are: hashing every one of millions of pairs
    costs many times the one pass that checks the order."""
    user, movie = pl.col("user_id"), pl.col("movie_id")
    schema = frame.collect_schema()
    if all(name in schema and schema[name].is_integer() for name in ("user_id", "movie_id")):
        previous_user = user.shift(1)
        nulls, ordered = (
            frame.select(
                (user.null_count() + movie.null_count()).alias("nulls"),
                # The first row compares with null, which all() skips.
                ((user > previous_user) | ((user == previous_user) & (movie >= movie.shift(1))))
                .all()
                .alias("ordered"),
            )
            .collect()
            .row(0)
        )
        if nulls == 0 and ordered:
            # Equal pairs are neighbours: a row is duplicated when it equals the one before or
            # the one after it.
            same_as_previous = (user == user.shift(1)) & (movie == movie.shift(1))
            same_as_next = (user == user.shift(-1)) & (movie == movie.shift(-1))
            return same_as_previous.fill_null(False) | same_as_next.fill_null(False)
    return pl.struct("user_id", "movie_id").is_duplicated()


@pa.dataframe_check(error="duplicate (user_id, movie_id)")
def _one_rating_per_pair(cls: Any, data: pa.PolarsData) -> pl.LazyFrame:
    return data.lazyframe.select(~_pair_is_duplicated(data.lazyframe))


@pa.dataframe_check(error="rating event without a value")
def _rating_has_value(cls: Any, data: pa.PolarsData) -> pl.LazyFrame:
    return data.lazyframe.select((pl.col("event") != "rating") | pl.col("value").is_not_null())


RatingsSchema = _model(
    "RatingsSchema",
    contracts.RATINGS,
    _RATING_FIELDS,
    checks={"one_rating_per_pair": _one_rating_per_pair},
    doc="MovieLens ratings: at most one rating per (user_id, movie_id).",
)
InteractionsSchema = _model(
    "InteractionsSchema",
    contracts.INTERACTIONS,
    {**_RATING_FIELDS, "source": pa.Field(isin=INTERACTION_SOURCES)},
    doc="Training interactions from MovieLens ratings and served feedback.",
)
FeedbackSchema = _model(
    "FeedbackSchema",
    contracts.FEEDBACK,
    {
        "user_id": pa.Field(**_POSITIVE_ID),
        "movie_id": pa.Field(**_POSITIVE_ID),
        "event": pa.Field(isin=EVENT_TYPES),
        "value": pa.Field(nullable=True, in_range=_RATING_RANGE),
        "timestamp": pa.Field(ge=0),
        "impression_id": pa.Field(nullable=True, str_matches=IMPRESSION_ID_PATTERN),
    },
    checks={"rating_has_value": _rating_has_value},
    doc="Feedback events from the serving API's log.",
)


class FrameSchemaError(ValueError):
    """A frame's columns or dtypes do not match its schema, so no row can be validated."""


class TooManyRejectedError(ValueError):
    """More rows failed validation than the allowed fraction; ``result`` holds the split."""

    def __init__(self, message: str, result: ValidationResult) -> None:
        super().__init__(message)
        self.result = result


@dataclass(frozen=True)
class ValidationResult:
    """The outcome of :func:`validate_frame`.

    Attributes:
        valid: The rows that passed every check, in input order.
        quarantine: The rejected rows, in input order, with a ``reason`` column listing the
            failed checks as ``"<column>: <check>"`` (or the frame-level check's message),
            joined by ``"; "``.
        summary: ``table``, ``rows_in``, ``valid``, ``rejected``, ``rejected_fraction`` and
            ``reasons`` (failed check -> number of rows, most frequent first).
    """

    valid: pl.DataFrame
    quarantine: pl.DataFrame
    summary: dict[str, Any]


def validate_frame(
    df: pl.DataFrame,
    schema: type[pa.DataFrameModel],
    *,
    name: str,
    max_rejected_fraction: float,
) -> ValidationResult:
    """Validate ``df`` row by row, splitting it into valid and quarantined rows.

    Args:
        df: The eager frame to validate.
        schema: One of the models of this module.
        name: The table's name, used in messages and the summary.
        max_rejected_fraction: The largest allowed rejected/total fraction (0..1), normally
            ``Settings.max_rejected_fraction``.

    Returns:
        The split and its summary (an empty frame gives a rejected fraction of 0).

    Raises:
        TypeError: ``df`` is not an eager ``pl.DataFrame``.
        ValueError: ``max_rejected_fraction`` is outside 0..1.
        FrameSchemaError: A column is missing, unexpected or of the wrong dtype.
        TooManyRejectedError: rejected/total > ``max_rejected_fraction``.
    """
    if not isinstance(df, pl.DataFrame):
        raise TypeError(
            f"df must be an eager polars DataFrame (collect a LazyFrame first), "
            f"got {type(df).__name__}"
        )
    if not 0 <= max_rejected_fraction <= 1:
        raise ValueError(f"max_rejected_fraction must be in 0..1, got {max_rejected_fraction}")
    failures = _row_failures(df, schema, name=name)
    if failures.is_empty():
        # Every row passed: no need to number and join millions of rows to split nothing off.
        valid = df.clone()
        quarantine = df.clear().with_columns(pl.lit(None, dtype=pl.String).alias("reason"))
    else:
        reasons = failures.group_by(_ROW).agg(pl.col("reason").sort().str.join("; "))
        numbered = df.with_row_index(_ROW)
        valid = numbered.join(reasons, on=_ROW, how="anti", maintain_order="left").drop(_ROW)
        quarantine = numbered.join(reasons, on=_ROW, how="inner", maintain_order="left").drop(_ROW)
    rejected = quarantine.height
    fraction = rejected / df.height if df.height else 0.0
    counts = failures.group_by("reason").len().sort(["len", "reason"], descending=[True, False])
    summary: dict[str, Any] = {
        "table": name,
        "rows_in": df.height,
        "valid": valid.height,
        "rejected": rejected,
        "rejected_fraction": fraction,
        "reasons": dict(counts.iter_rows()),
    }
    result = ValidationResult(valid=valid, quarantine=quarantine, summary=summary)
    return enforce_rejected_fraction(result, max_rejected_fraction=max_rejected_fraction)


def enforce_rejected_fraction(
    result: ValidationResult, *, max_rejected_fraction: float
) -> ValidationResult:
    """Return ``result``, or raise :class:`TooManyRejectedError` when its summary's
    ``rejected_fraction`` is above ``max_rejected_fraction``."""
    s = result.summary
    if s["rejected_fraction"] > max_rejected_fraction:
        top = ", ".join(_top_reasons(s))
        raise TooManyRejectedError(
            f"{s['table']}: {s['rejected']} of {s['rows_in']} rows ({s['rejected_fraction']:.2%}) "
            f"failed validation, more than the allowed {max_rejected_fraction:.2%} (set by "
            f"{MAX_REJECTED_FRACTION_ENV}); top failing checks: {top}",
            result,
        )
    return result


def _row_failures(df: pl.DataFrame, schema: type[pa.DataFrameModel], *, name: str) -> pl.DataFrame:
    """One row per (failing row, failed check): columns ``__row__`` (UInt32) and ``reason``."""
    try:
        schema.validate(df, lazy=True)
    except SchemaErrors as exc:
        cases = exc.failure_cases
    else:
        return pl.DataFrame(schema={_ROW: pl.UInt32, "reason": pl.String})
    frame_level = cases.filter(pl.col("index").is_null())
    if frame_level.height:
        problems = "; ".join(
            f"{check}: {case}" if column == schema.__name__ else f"{column}: {check}, got {case}"
            for column, check, case in frame_level.select("column", "check", "failure_case")
            .unique(maintain_order=True)
            .iter_rows()
        )
        raise FrameSchemaError(f"{name}: the frame does not match {schema.__name__}: {problems}")
    return cases.select(
        pl.col("index").cast(pl.UInt32).alias(_ROW),
        pl.when(pl.col("column") == schema.__name__)
        .then(pl.col("check"))
        .otherwise(pl.concat_str("column", pl.lit(": "), "check"))
        .alias("reason"),
    ).unique()


def validation_summary_markdown(results: Iterable[ValidationResult]) -> str:
    """A markdown table of validation summaries (for a Prefect markdown artifact).

    Columns: table, rows in, valid, rejected, rejected fraction and the top three reasons.
    """
    lines = [
        "| table | rows in | valid | rejected | rejected fraction | top reasons |",
        "| --- | ---: | ---: | ---: | ---: | --- |",
    ]
    for result in results:
        s = result.summary
        reasons = "<br>".join(_top_reasons(s)).replace("|", r"\|") or "-"
        lines.append(
            f"| {s['table']} | {s['rows_in']:,} | {s['valid']:,} | {s['rejected']:,} "
            f"| {s['rejected_fraction']:.2%} | {reasons} |"
        )
    return "\n".join(lines) + "\n"


def _top_reasons(summary: dict[str, Any], *, n: int = 3) -> list[str]:
    return [f"{reason} ({count})" for reason, count in list(summary["reasons"].items())[:n]]


def valid_ratings(
    ratings: pl.DataFrame, *, source: object, max_rejected_fraction: float
) -> pl.DataFrame:
    """The ratings (of MovieLens ``source``, named in messages) that pass :class:`RatingsSchema`.

    Raises:
        TooManyRejectedError: More than ``max_rejected_fraction`` of them are invalid.
        ValueError: None is valid.
    """
    valid = validate_frame(
        ratings,
        RatingsSchema,
        name=f"ratings of {source}",
        max_rejected_fraction=max_rejected_fraction,
    ).valid
    if valid.is_empty():
        raise ValueError(f"{source} has no valid ratings")
    return valid
