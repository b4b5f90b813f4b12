from __future__ import annotations

import shutil
from pathlib import Path

import pandera.polars as pa
import polars as pl
import pytest
from polars.testing import assert_frame_equal

from recommender.data.catalog import build_catalog
from recommender.data.movielens import load_movielens
from recommender.data.schemas import (
    CatalogSchema,
    FeedbackSchema,
    FrameSchemaError,
    InteractionsSchema,
    LinksSchema,
    MoviesSchema,
    RatingsSchema,
    TooManyRejectedError,
    ValidationResult,
    validate_frame,
    validation_summary_markdown,
)
from recommender.settings import EMBEDDED_MOVIELENS

RATINGS = pl.DataFrame(
    {
        "user_id": [1, 1, 2, 2],
        "movie_id": [10, 20, 10, 30],
        "rating": [4.0, 0.5, 5.0, 3.5],
        "timestamp": [100, 200, 300, 0],
    }
)
FEEDBACK = pl.DataFrame(
    {
        "user_id": [1, 2, 3],
        "movie_id": [10, 10, 20],
        "event": ["rating", "view", "like"],
        "value": [4.5, None, None],
        "timestamp": [1.5, 2.0, 3.25],
        "impression_id": [None, "0190a1b2c3d40123456789abcdef", None],
    }
)


def _validate(df: pl.DataFrame, schema: type[pa.DataFrameModel]) -> ValidationResult:
    return validate_frame(df, schema, name="table", max_rejected_fraction=1.0)


def _with_row(good: pl.DataFrame, **values: object) -> pl.DataFrame:
    """``good`` followed by a copy of its first row with ``values`` replaced."""
    bad = good.head(1).with_columns(
        pl.lit(value, dtype=good.schema[column]).alias(column) for column, value in values.items()
    )
    return pl.concat([good, bad])


def test_embedded_dataset_passes_every_schema() -> None:
    data = load_movielens(EMBEDDED_MOVIELENS)
    interactions = data.ratings.with_columns(source=pl.lit("movielens"))
    catalog = build_catalog(data.movies, data.links)
    for frame, schema in [
        (data.ratings, RatingsSchema),
        (data.movies, MoviesSchema),
        (data.links, LinksSchema),
        (interactions, InteractionsSchema),
        (catalog, CatalogSchema),
    ]:
        result = validate_frame(frame, schema, name=schema.__name__, max_rejected_fraction=0)
        assert result.summary["rejected"] == 0
        assert_frame_equal(result.valid, frame)


@pytest.mark.parametrize(
    ("schema", "good", "bad_values", "reason"),
    [
        (RatingsSchema, RATINGS, {"user_id": 0}, "user_id: greater_than(0)"),
        (RatingsSchema, RATINGS, {"movie_id": None}, "movie_id: not_nullable"),
        (RatingsSchema, RATINGS, {"user_id": 3, "rating": 5.5}, "rating: in_range(0.5, 5.0)"),
        (
            RatingsSchema,
            RATINGS,
            {"user_id": 3, "rating": float("nan")},
            "rating: in_range(0.5, 5.0); rating: not_nullable",
        ),
        (
            RatingsSchema,
            RATINGS,
            {"user_id": 3, "timestamp": -1},
            "timestamp: greater_than_or_equal_to(0)",
        ),
        (FeedbackSchema, FEEDBACK, {"event": "share"}, "event: isin("),
        (FeedbackSchema, FEEDBACK, {"value": None}, "rating event without a value"),
        (FeedbackSchema, FEEDBACK, {"value": 0.0}, "value: in_range(0.5, 5.0)"),
        (FeedbackSchema, FEEDBACK, {"impression_id": "not-an-id"}, "impression_id: str_matches("),
        (
            InteractionsSchema,
            RATINGS.with_columns(source=pl.lit("movielens")),
            {"source": "web"},
            "source: isin(",
        ),
    ],
)
def test_a_bad_row_lands_in_quarantine_with_its_reason(
    schema: type[pa.DataFrameModel],
    good: pl.DataFrame,
    bad_values: dict[str, object],
    reason: str,
) -> None:
    df = _with_row(good, **bad_values)

    result = _validate(df, schema)

    assert_frame_equal(result.valid, good)
    assert result.quarantine.columns == [*good.columns, "reason"]
    assert result.quarantine.height == 1
    assert result.quarantine["reason"].item().startswith(reason)
    assert_frame_equal(result.quarantine.drop("reason"), df.tail(1))


def test_every_copy_of_a_repeated_rating_is_quarantined() -> None:
    df = pl.concat([RATINGS, RATINGS.slice(1, 1).with_columns(rating=pl.lit(2.0))])

    result = _validate(df, RatingsSchema)

    assert_frame_equal(result.valid, RATINGS.filter(pl.col("movie_id") != 20))
    assert result.quarantine["reason"].to_list() == ["duplicate (user_id, movie_id)"] * 2
    assert result.summary["reasons"] == {"duplicate (user_id, movie_id)": 2}


def test_interactions_may_repeat_a_user_movie_pair() -> None:
    events = RATINGS.with_columns(source=pl.lit("feedback"))
    result = _validate(pl.concat([events, events]), InteractionsSchema)
    assert result.summary["rejected"] == 0


def test_movie_checks_and_summary_counts() -> None:
    movies = pl.DataFrame(
        {
            "movie_id": [1, 1, 2, 3],
            "title": ["Heat", "Heat", "", "Alien"],
            "year": pl.Series([1995, 1995, 1500, None], dtype=pl.Int32),
            "genres": pl.Series([["Crime"], ["Crime"], [], []], dtype=pl.List(pl.String)),
        }
    )

    result = _validate(movies, MoviesSchema)

    assert result.valid["movie_id"].to_list() == [3]
    assert result.quarantine["reason"].to_list() == [
        "movie_id: field_uniqueness",
        "movie_id: field_uniqueness",
        "title: str_length(1, None); year: in_range(1870, 2100)",
    ]
    assert result.summary == {
        "table": "table",
        "rows_in": 4,
        "valid": 1,
        "rejected": 3,
        "rejected_fraction": 0.75,
        "reasons": {
            "movie_id: field_uniqueness": 2,
            "title: str_length(1, None)": 1,
            "year: in_range(1870, 2100)": 1,
        },
    }


def test_too_many_rejected_rows_raise_with_the_numbers_and_the_setting() -> None:
    df = _with_row(RATINGS, user_id=3, rating=9.0)  # 1 of 5 rows = 20 %

    assert _validate(df, RatingsSchema).summary["rejected_fraction"] == 0.2
    validate_frame(df, RatingsSchema, name="ratings", max_rejected_fraction=0.2)  # not above
    with pytest.raises(TooManyRejectedError) as caught:
        validate_frame(df, RatingsSchema, name="ratings", max_rejected_fraction=0.01)

    message = str(caught.value)
    for part in ["ratings", "1 of 5", "20.00%", "1.00%", "MOVIEREC_MAX_REJECTED_FRACTION"]:
        assert part in message
    assert "rating: in_range(0.5, 5.0) (1)" in message
    assert caught.value.result.quarantine.height == 1


def test_one_bad_row_in_a_real_file_is_quarantined_not_fatal(tmp_path: Path) -> None:
    copy = Path(shutil.copytree(EMBEDDED_MOVIELENS, tmp_path / "ml"))
    with (copy / "ratings.csv").open("a") as handle:
        handle.write("611,abc,4.0,1537799250\n")
    ratings = load_movielens(copy).ratings

    result = validate_frame(ratings, RatingsSchema, name="ratings", max_rejected_fraction=0.01)

    assert result.valid.height == 100_836
    assert result.quarantine.to_dicts() == [
        {
            "user_id": 611,
            "movie_id": None,
            "rating": 4.0,
            "timestamp": 1537799250,
            "reason": "movie_id: not_nullable",
        }
    ]


@pytest.mark.parametrize(
    ("df", "message"),
    [
        (RATINGS.drop("timestamp"), "column_in_dataframe: timestamp"),
        (RATINGS.with_columns(extra=pl.lit(1)), "column_in_schema: extra"),
        (RATINGS.with_columns(pl.col("rating").cast(pl.Float32)), "rating: dtype('Float64')"),
    ],
)
def test_a_frame_with_the_wrong_columns_is_rejected_whole(df: pl.DataFrame, message: str) -> None:
    with pytest.raises(FrameSchemaError) as caught:
        validate_frame(df, RatingsSchema, name="ratings", max_rejected_fraction=1.0)
    assert str(caught.value).startswith("ratings: the frame does not match RatingsSchema: ")
    assert message in str(caught.value)


def test_empty_frame_is_valid() -> None:
    result = validate_frame(RATINGS.clear(), RatingsSchema, name="r", max_rejected_fraction=0)
    assert (result.valid.height, result.quarantine.height) == (0, 0)
    assert result.summary["rejected_fraction"] == 0.0


def test_bad_arguments() -> None:
    with pytest.raises(TypeError, match="eager polars DataFrame"):
        validate_frame(RATINGS.lazy(), RatingsSchema, name="r", max_rejected_fraction=0.1)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="max_rejected_fraction must be in 0..1"):
        validate_frame(RATINGS, RatingsSchema, name="r", max_rejected_fraction=1.5)


def test_summary_markdown() -> None:
    clean = validate_frame(FEEDBACK, FeedbackSchema, name="feedback", max_rejected_fraction=0)
    dirty = _validate(_with_row(RATINGS, user_id=3, rating=9.0), RatingsSchema)

    assert validation_summary_markdown([clean, dirty]) == (
        "| table | rows in | valid | rejected | rejected fraction | top reasons |\n"
        "| --- | ---: | ---: | ---: | ---: | --- |\n"
        "| feedback | 3 | 3 | 0 | 0.00% | - |\n"
        "| table | 5 | 4 | 1 | 20.00% | rating: in_range(0.5, 5.0) (1) |\n"
    )
