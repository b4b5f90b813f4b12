"""Ingest rules beyond the row checks: orphan ratings and an empty ratings source."""

from __future__ import annotations

from pathlib import Path

import polars as pl
import pytest

from recommender.data.ingest import ORPHAN_MOVIE, quarantine_orphans
from recommender.data.schemas import RatingsSchema, TooManyRejectedError, validate_frame
from tests.frames import interactions_frame


def _validated(rows: list[tuple[int, int, float, int]]):  # noqa: ANN202
    ratings = interactions_frame(rows, source=None)
    return validate_frame(ratings, RatingsSchema, name="ratings", max_rejected_fraction=1.0)


def test_ratings_of_movies_outside_the_catalog_are_quarantined_and_counted(tmp_path: Path) -> None:
    result = _validated([(1, 1, 4.0, 1), (1, 2, 3.0, 2), (2, 9, 5.0, 3), (3, 1, 9.0, 4)])

    kept = quarantine_orphans(
        result, pl.Series([1, 2]), source="x", max_rejected_fraction=0.6, processed_dir=tmp_path
    )

    assert kept.valid["movie_id"].to_list() == [1, 2]
    assert kept.summary["rejected"] == 2 and kept.summary["rejected_fraction"] == 0.5
    assert kept.summary["reasons"][ORPHAN_MOVIE] == 1
    quarantine = pl.read_parquet(tmp_path / "quarantine" / "ratings.parquet")
    assert sorted(quarantine["movie_id"].to_list()) == [1, 9]


def test_all_orphans_fail_the_run_after_writing_the_quarantine(tmp_path: Path) -> None:
    result = _validated([(1, 7, 4.0, 1), (2, 8, 3.0, 2)])
    with pytest.raises(TooManyRejectedError, match="2 of 2 rows"):
        quarantine_orphans(
            result, pl.Series([1]), source="x", max_rejected_fraction=0.01, processed_dir=tmp_path
        )
    assert pl.read_parquet(tmp_path / "quarantine" / "ratings.parquet").height == 2


def test_a_source_without_ratings_is_an_error(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="holds no ratings"):
        quarantine_orphans(
            _validated([]),
            pl.Series([1]),
            source="ml/empty",
            max_rejected_fraction=0.01,
            processed_dir=tmp_path,
        )
