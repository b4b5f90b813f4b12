from __future__ import annotations

import math

import polars as pl
import pytest

from recommender.monitoring.beyond_accuracy import (
    average_popularity,
    intra_list_diversity,
    item_popularity,
    list_quality,
    novelty,
    overlap_at_k,
    personalization,
)

# Movies 1..5 are a..e. Training: user 1 saw a and b, user 2 saw a, user 3 saw a and c (a twice).
TRAINING = pl.DataFrame({"user_id": [1, 1, 2, 3, 3, 3], "movie_id": [1, 2, 1, 1, 3, 1]})
MOVIES = pl.DataFrame(
    {
        "movie_id": [1, 2, 3, 4, 5],
        "genres": [["Action"], ["Action", "Comedy"], ["Drama"], [], ["Action"]],
    }
)


def lists(rows: dict[int, list[int]]) -> pl.DataFrame:
    return pl.DataFrame(
        [
            {"user_id": user, "rank": rank, "movie_id": movie, "score": 1.0 / rank}
            for user, movies in rows.items()
            for rank, movie in enumerate(movies, start=1)
        ]
    )


def test_popularity_is_the_share_of_users() -> None:
    popularity = dict(item_popularity(TRAINING).iter_rows())
    assert popularity == {1: 1.0, 2: pytest.approx(1 / 3), 3: pytest.approx(1 / 3)}


def test_novelty_and_average_popularity_by_hand() -> None:
    popularity = item_popularity(TRAINING)
    recs = lists({1: [1, 2], 2: [2, 3]})
    # user 1: (-log2 1 - log2 1/3) / 2; user 2: -log2 1/3.
    assert novelty(recs, popularity) == pytest.approx((math.log2(3) / 2 + math.log2(3)) / 2)
    # user 1: (1 + 1/3) / 2; user 2: 1/3.
    assert average_popularity(recs, popularity) == pytest.approx((2 / 3 + 1 / 3) / 2)


def test_an_unseen_movie_is_as_novel_as_one_more_user_makes_it() -> None:
    popularity = item_popularity(TRAINING)
    assert novelty(lists({1: [5]}), popularity) == pytest.approx(math.log2(4))
    no_lists = pl.DataFrame(schema={"user_id": pl.Int64, "rank": pl.Int32, "movie_id": pl.Int64})
    assert novelty(no_lists, popularity) == 0.0


def test_personalization() -> None:
    assert personalization(lists({1: [1, 2], 2: [1, 2], 3: [1, 2]}), k=2) == pytest.approx(0.0)
    assert personalization(lists({1: [1, 2], 2: [3, 4]}), k=2) == pytest.approx(1.0)
    # pairs (1,2) share one of two movies, (1,3) and (2,3) none: mean overlap 1/6.
    assert personalization(lists({1: [1, 2], 2: [1, 3], 3: [4, 5]}), k=2) == pytest.approx(5 / 6)
    assert personalization(lists({1: [1, 2]}), k=2) == 0.0
    with pytest.raises(ValueError, match="k must be"):
        personalization(lists({1: [1]}), k=0)


def test_intra_list_diversity_by_hand() -> None:
    # a = {Action}, b = {Action, Comedy}, c = {Drama}: cos(a, b) = 1/sqrt(2), the others 0.
    expected = 1 - (1 / math.sqrt(2)) / 3
    assert intra_list_diversity(lists({1: [1, 2, 3]}), MOVIES) == pytest.approx(expected)
    # a and e have the same genres: distance 0; d has none: distance 1 to anything.
    assert intra_list_diversity(lists({1: [1, 5]}), MOVIES) == pytest.approx(0.0)
    assert intra_list_diversity(lists({1: [1, 4]}), MOVIES) == pytest.approx(1.0)
    assert intra_list_diversity(lists({1: [1, 2, 3], 2: [1, 5], 3: [2]}), MOVIES) == pytest.approx(
        (expected + 0.0) / 2
    )
    assert intra_list_diversity(lists({1: [1]}), MOVIES) == 0.0


def test_overlap_between_versions() -> None:
    a = lists({1: [1, 2], 2: [3, 4]})
    b = lists({1: [2, 5], 3: [1, 2]})
    assert overlap_at_k(a, b, k=2) == pytest.approx(0.5)
    assert overlap_at_k(a, a, k=2) == pytest.approx(1.0)
    assert overlap_at_k(a, lists({9: [1]}), k=2) == 0.0


def test_list_quality_collects_every_figure() -> None:
    recs = lists({1: [1, 2], 2: [2, 3]})
    quality = list_quality(recs, interactions=TRAINING, movies=MOVIES, k=2)
    assert quality.users == 2
    assert quality.catalog_coverage == pytest.approx(3 / 5)
    assert quality.personalization == pytest.approx(1 - (1 / 1) / 2)
    assert quality.score_quantiles["p50"] == pytest.approx(0.75, abs=0.25)
    assert set(quality.to_dict()) >= {"novelty", "average_popularity", "intra_list_diversity"}
