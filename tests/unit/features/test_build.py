from __future__ import annotations

import math

import numpy as np
import polars as pl
import pytest
from implicit.nearest_neighbours import bm25_weight

from recommender.features.build import (
    SECONDS_PER_DAY,
    IdMap,
    MatrixConfig,
    aggregate_interactions,
    build_interaction_matrix,
    build_movie_features,
    build_user_features,
)
from recommender.modeling.als import ALSParams, ALSRecommender
from tests.frames import interactions_frame

DAY = SECONDS_PER_DAY
NEWEST = 1_700_000_000


interactions = interactions_frame


@pytest.fixture
def ratings() -> pl.DataFrame:
    return interactions(
        [
            (30, 200, 4.0, NEWEST - 10 * DAY),
            (10, 100, 5.0, NEWEST - 20 * DAY),
            (10, 300, 1.0, NEWEST),
            (20, 100, 3.0, NEWEST - 5 * DAY),
            (20, 200, 2.0, NEWEST - 30 * DAY),
        ]
    )


@pytest.fixture
def movies() -> pl.DataFrame:
    return pl.DataFrame(
        {
            "movie_id": [100, 200, 300, 400],
            "title": ["A", "B", "C", "D"],
            "year": pl.Series([1999, None, 2005, 2010], dtype=pl.Int32),
            "genres": [["Drama", "Comedy"], ["Drama"], [], ["Horror"]],
        }
    )


def dense(ratings: pl.DataFrame, **options: object) -> np.ndarray:
    return build_interaction_matrix(ratings, config=MatrixConfig(**options)).matrix.toarray()


def test_id_map_sorts_dedupes_and_marks_unknown_ids() -> None:
    ids = IdMap.from_values([30, 10, 20, 10])
    assert ids.ids.tolist() == [10, 20, 30]
    assert ids.index_of([20, 99, 10, 5, 31]).tolist() == [1, -1, 0, -1, -1]
    assert IdMap.from_values([]).index_of([1]).tolist() == [-1]


def test_matrix_rows_and_columns_follow_sorted_ids(ratings: pl.DataFrame) -> None:
    built = build_interaction_matrix(ratings)
    assert built.users.ids.tolist() == [10, 20, 30]
    assert built.movies.ids.tolist() == [100, 200, 300]
    assert built.matrix.dtype == np.float32
    assert built.shape == (3, 3)
    assert built.matrix.toarray().tolist() == [[1, 0, 1], [1, 1, 0], [0, 1, 0]]


def test_same_interactions_in_any_order_give_the_same_matrix(ratings: pl.DataFrame) -> None:
    first = build_interaction_matrix(ratings, config=MatrixConfig(weighting="log"))
    second = build_interaction_matrix(
        ratings.sample(fraction=1.0, shuffle=True, seed=3), config=MatrixConfig(weighting="log")
    )
    assert first.users == second.users and first.movies == second.movies
    assert (first.matrix != second.matrix).nnz == 0


@pytest.mark.parametrize(
    ("weighting", "expected"),
    [
        ("binary", [[1, 0, 1], [1, 1, 0], [0, 1, 0]]),
        ("linear", [[5, 0, 1], [3, 2, 0], [0, 4, 0]]),
        (
            "log",
            [
                [math.log(6), 0, math.log(2)],
                [math.log(4), math.log(3), 0],
                [0, math.log(5), 0],
            ],
        ),
    ],
)
def test_weightings(ratings: pl.DataFrame, weighting: str, expected: list[list[float]]) -> None:
    np.testing.assert_allclose(dense(ratings, weighting=weighting), expected, rtol=1e-6)


def test_bm25_weights_the_movie_user_matrix_as_implicit_examples_do(
    ratings: pl.DataFrame,
) -> None:
    binary = build_interaction_matrix(ratings).matrix
    expected = bm25_weight(binary.T, K1=50, B=0.5).T.toarray()
    np.testing.assert_allclose(
        dense(ratings, weighting="bm25", bm25_k1=50, bm25_b=0.5), expected, rtol=1e-6
    )


def test_min_rating_keeps_only_good_ratings(ratings: pl.DataFrame) -> None:
    built = build_interaction_matrix(ratings, config=MatrixConfig(min_rating=3.0))
    assert built.users.ids.tolist() == [10, 20, 30]
    assert built.movies.ids.tolist() == [100, 200]
    assert built.matrix.toarray().tolist() == [[1, 0], [1, 0], [0, 1]]


def test_half_life_halves_the_weight_per_half_life_before_the_newest(
    ratings: pl.DataFrame,
) -> None:
    decayed = dense(ratings, half_life_days=10.0)
    expected = [[0.25, 0, 1.0], [0.5**0.5, 0.125, 0], [0, 0.5, 0]]
    np.testing.assert_allclose(decayed, expected, rtol=1e-6)


def test_repeated_pairs_are_aggregated_not_summed() -> None:
    events = interactions([(1, 7, 3.0, 100), (1, 7, 5.0, 50), (1, 7, 4.0, 300), (2, 7, 3.0, 10)])
    assert dense(events, weighting="linear").tolist() == [[5.0], [3.0]]
    pairs = aggregate_interactions(events)
    assert pairs.select("user_id", "movie_id", "rating", "timestamp").rows() == [
        (1, 7, 5.0, 300),
        (2, 7, 3.0, 10),
    ]


def test_fixed_maps_drop_interactions_outside_them(ratings: pl.DataFrame) -> None:
    built = build_interaction_matrix(
        ratings, users=IdMap.from_values([10, 20, 99]), movies=IdMap.from_values([100, 300])
    )
    assert built.shape == (3, 2)
    assert built.matrix.toarray().tolist() == [[1, 1], [1, 0], [0, 0]]


def test_missing_columns_are_named() -> None:
    with pytest.raises(ValueError, match="timestamp"):
        build_interaction_matrix(pl.DataFrame({"user_id": [1], "movie_id": [2], "rating": [3.0]}))


@pytest.mark.parametrize(
    ("options", "argument"),
    [
        ({"weighting": "tfidf"}, "weighting"),
        ({"half_life_days": 0}, "half_life_days"),
        ({"bm25_k1": 0}, "bm25_k1"),
        ({"bm25_b": 1.5}, "bm25_b"),
    ],
)
def test_bad_matrix_config_names_the_argument(options: dict[str, object], argument: str) -> None:
    with pytest.raises(ValueError, match=argument):
        MatrixConfig(**options)  # type: ignore[arg-type]


def test_movie_features(ratings: pl.DataFrame, movies: pl.DataFrame) -> None:
    features = build_movie_features(movies, ratings)
    assert features.columns == [
        "movie_id",
        "genres",
        "year",
        "popularity",
        "rating_count",
        "rating_mean",
    ]
    assert features.get_column("rating_count").to_list() == [2, 2, 1, 0]
    assert features.get_column("rating_mean").to_list() == [4.0, 3.0, 1.0, None]
    assert features.get_column("popularity").null_count() == 4
    assert features.get_column("year").to_list() == [1999, None, 2005, 2010]


def test_movie_features_keep_tmdb_popularity(ratings: pl.DataFrame, movies: pl.DataFrame) -> None:
    catalog = movies.with_columns(popularity=pl.Series([1.5, None, 3.0, 0.0]))
    features = build_movie_features(catalog, ratings)
    assert features.get_column("popularity").to_list() == [1.5, None, 3.0, 0.0]


def test_user_features(ratings: pl.DataFrame, movies: pl.DataFrame) -> None:
    features = build_user_features(ratings, movies)
    assert features.columns == [
        "user_id",
        "activity_count",
        "rating_mean",
        "last_timestamp",
        "days_since_last",
        "affinity_Comedy",
        "affinity_Drama",
        "affinity_Horror",
    ]
    rows = {row["user_id"]: row for row in features.iter_rows(named=True)}
    assert rows[10]["activity_count"] == 2
    assert rows[10]["rating_mean"] == 3.0
    assert rows[10]["days_since_last"] == 0.0
    assert rows[20]["days_since_last"] == 5.0
    # user 10: movie 100 (Drama, Comedy) and 300 (no genre)
    assert (rows[10]["affinity_Drama"], rows[10]["affinity_Comedy"]) == (0.5, 0.5)
    # user 20: movies 100 and 200, both Drama
    assert (rows[20]["affinity_Drama"], rows[20]["affinity_Comedy"]) == (1.0, 0.5)
    assert features.get_column("affinity_Horror").to_list() == [0.0, 0.0, 0.0]


def test_a_flood_of_identical_events_weighs_one_interaction_and_popularity_counts_users(
    movies: pl.DataFrame,
) -> None:
    # One user posts 15,000 views of movie 100 (rating 3.0 each); two users rate movie 200.
    flood = [(1, 100, 3.0, NEWEST + n) for n in range(15_000)]
    events = interactions([*flood, (2, 200, 4.0, NEWEST), (3, 200, 2.0, NEWEST)])
    once = interactions([flood[-1], (2, 200, 4.0, NEWEST), (3, 200, 2.0, NEWEST)])

    assert aggregate_interactions(events).height == 3
    for weighting in ("binary", "linear", "log", "bm25"):
        assert np.array_equal(dense(events, weighting=weighting), dense(once, weighting=weighting))
    assert dense(events, weighting="linear").max() == 4.0  # bounded by the rating scale

    counts = build_movie_features(movies, events).select("movie_id", "rating_count").rows()
    assert counts == [(100, 1), (200, 2), (300, 0), (400, 0)]
    model = ALSRecommender(ALSParams(factors=2, iterations=1), random_state=0).fit(
        build_interaction_matrix(events), movies=movies
    )
    assert [(m, s) for m, s in model.popular(k=2).items] == [(200, 2.0), (100, 1.0)]
