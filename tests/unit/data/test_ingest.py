"""Ingest rules beyond the row checks: orphan ratings, an empty ratings source, and which
new feedback-only users enter training."""

from __future__ import annotations

from pathlib import Path

import polars as pl
import pytest

from recommender.data.contracts import FEEDBACK
from recommender.data.ingest import (
    FEEDBACK_USERS,
    ORPHAN_MOVIE,
    OVER_NEW_USER_CAP,
    TOO_FEW_MOVIES,
    admit_feedback_users,
    previous_users,
    quarantine_orphans,
)
from recommender.data.schemas import (
    FeedbackSchema,
    RatingsSchema,
    TooManyRejectedError,
    ValidationResult,
    validate_frame,
)
from recommender.settings import Settings
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


def _feedback(rows: list[tuple[int, int]]) -> ValidationResult:
    """Valid feedback: one view per (user_id, movie_id) row, in log order."""
    events = pl.DataFrame(
        [(user, movie, "view", None, float(n), None) for n, (user, movie) in enumerate(rows)],
        schema=FEEDBACK,
        orient="row",
    )
    return validate_frame(events, FeedbackSchema, name="feedback", max_rejected_fraction=0.0)


def test_fake_users_with_one_event_each_do_not_enter_training(tmp_path: Path) -> None:
    feedback = _feedback([(1_000_000 + n, 1) for n in range(15_000)] + [(1, 1), (1, 2)])
    minimum = Settings.model_fields["feedback_min_user_movies"].default

    result = admit_feedback_users(
        feedback,
        pl.Series([1, 2]),
        pl.Series([], dtype=pl.Int64),
        min_movies=minimum,
        max_new_fraction=Settings.model_fields["feedback_max_new_user_fraction"].default,
        processed_dir=tmp_path,
    )

    assert result.valid.select("user_id", "movie_id").rows() == [(1, 1), (1, 2)]  # a ratings user
    too_few = TOO_FEW_MOVIES.format(minimum)
    assert result.summary == {
        "table": FEEDBACK_USERS,
        "rows_in": 15_002,
        "valid": 2,
        "rejected": 15_000,
        "rejected_fraction": 15_000 / 15_002,
        "reasons": {too_few: 15_000},
        "new_users": 0,
        "held_users": 15_000,
        "max_new_users": 0,  # 5 % of two users
    }
    quarantine = pl.read_parquet(tmp_path / "quarantine" / f"{FEEDBACK_USERS}.parquet")
    assert quarantine.height == 15_000 and set(quarantine["reason"]) == {too_few}


def test_at_most_the_cap_of_new_users_enter_in_the_order_of_their_first_event(
    tmp_path: Path,
) -> None:
    # Users 30, 10 and 20 each view movies 1..3, interleaved; user 40 views only one movie.
    rows = [(user, movie) for movie in (1, 2, 3) for user in (30, 10, 20)] + [(40, 1)]

    result = admit_feedback_users(
        _feedback(rows),
        pl.Series([1, 2, 3, 3]),  # three ratings users
        pl.Series([], dtype=pl.Int64),
        min_movies=3,
        max_new_fraction=0.7,  # floor(0.7 * 3) = 2
        processed_dir=tmp_path,
    )

    assert result.valid["user_id"].unique(maintain_order=True).to_list() == [30, 10]
    assert result.summary["reasons"] == {
        OVER_NEW_USER_CAP.format(2): 3,
        TOO_FEW_MOVIES.format(3): 1,
    }
    assert (result.summary["new_users"], result.summary["held_users"]) == (2, 2)
    assert result.summary["max_new_users"] == 2


def test_previous_users_pass_the_cap_but_not_the_minimum(tmp_path: Path) -> None:
    table = tmp_path / "interactions.parquet"
    assert previous_users(table).to_list() == []
    previous = [(5, 1, 3.0, 1), (5, 2, 3.0, 2), (6, 1, 3.0, 3), (8, 1, 3.0, 4)]
    interactions_frame(previous, source="feedback").write_parquet(table)
    assert sorted(previous_users(table).to_list()) == [5, 6, 8]

    result = admit_feedback_users(
        # 5 and 6 were in before; 6 has one movie only (let in by an unguarded run); 7 is new.
        _feedback([(5, 1), (5, 2), (6, 1), (7, 1), (7, 2)]),
        pl.Series([], dtype=pl.Int64),
        previous_users(table),
        min_movies=2,
        max_new_fraction=0.0,
        processed_dir=tmp_path,
    )

    assert result.valid["user_id"].to_list() == [5, 5]
    assert result.quarantine.select("user_id", "reason").unique(maintain_order=True).rows() == [
        (6, TOO_FEW_MOVIES.format(2)),
        (7, OVER_NEW_USER_CAP.format(0)),
    ]


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"min_movies": 0, "max_new_fraction": 1.0}, "min_movies must be at least 1"),
        ({"min_movies": 1, "max_new_fraction": -0.1}, "max_new_fraction must be at least 0"),
    ],
)
def test_admission_limits_are_checked(
    tmp_path: Path, options: dict[str, float], message: str
) -> None:
    with pytest.raises(ValueError, match=message):
        admit_feedback_users(
            _feedback([]), pl.Series([1]), pl.Series([2]), processed_dir=tmp_path, **options
        )
