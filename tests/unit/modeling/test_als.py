"""Contract tests on a checkerboard: users like movies of their own parity.

User ``USER0 + u`` likes movie ``MOVIE0 + i`` when u and i have the same parity, except the two
movies i = u and i = u + 2 (mod N), which are the user's unseen same-parity movies and so the
known answer of a top-2.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import polars as pl
import pytest

import recommender.modeling.als as model_module
from recommender.features.build import MatrixConfig, build_interaction_matrix
from recommender.modeling.als import (
    ALSConfig,
    ALSParams,
    ALSRecommender,
    UnknownMovieError,
    UnknownUserError,
    train_als,
)
from tests import checkerboard
from tests.checkerboard import MOVIE0, PARAMS, USER0, N, movie, parity, user
from tests.frames import interactions_frame

HOLES = (0, 2)


def unseen(u: int) -> set[int]:
    return checkerboard.unseen(u, HOLES)


def liked(u: int) -> list[int]:
    return checkerboard.liked(u, HOLES)


@pytest.fixture(scope="module")
def interactions() -> pl.DataFrame:
    return checkerboard.interactions(HOLES)


@pytest.fixture(scope="module")
def movies() -> pl.DataFrame:
    return checkerboard.genres()


@pytest.fixture(scope="module")
def recommender(interactions: pl.DataFrame, movies: pl.DataFrame) -> ALSRecommender:
    matrix = build_interaction_matrix(interactions)
    return ALSRecommender(PARAMS, random_state=7).fit(matrix, movies=movies)


@pytest.mark.parametrize("u", [0, 1, 6, 13])
def test_top_two_are_the_unseen_same_parity_movies(recommender: ALSRecommender, u: int) -> None:
    result = recommender.recommend(user(u), k=2)
    assert not result.fallback
    assert set(result.movie_ids) == unseen(u)


def test_seen_movies_are_filtered_and_the_rest_ranked(recommender: ALSRecommender) -> None:
    result = recommender.recommend(user(4), k=N)
    assert not set(result.movie_ids) & set(liked(4))
    assert len(result.items) == N - len(liked(4))
    assert [parity(m) for m in result.movie_ids[:2]] == [0, 0]
    scores = [score for _, score in result.items]
    assert scores == sorted(scores, reverse=True)


def test_without_seen_filter_liked_movies_come_back(recommender: ALSRecommender) -> None:
    result = recommender.recommend(user(4), k=10, filter_seen=False)
    assert all(parity(m) == 0 for m in result.movie_ids)
    assert set(result.movie_ids) & set(liked(4))


def test_exclude_is_honoured_and_unknown_excluded_ids_are_ignored(
    recommender: ALSRecommender,
) -> None:
    result = recommender.recommend(user(0), k=2, exclude=[movie(0), 99_999])
    assert movie(0) not in result.movie_ids
    assert movie(2) in result.movie_ids


def test_genre_restriction(recommender: ALSRecommender) -> None:
    result = recommender.recommend(user(0), k=5, genres=["Odd"])
    assert len(result.items) == 5
    assert all(parity(m) == 1 for m in result.movie_ids)
    both = recommender.recommend(user(0), k=N, genres=["Odd", "Even"], exclude=[movie(1)])
    assert movie(1) not in both.movie_ids
    assert len(both.items) == N - len(liked(0)) - 1


def test_unknown_genre_is_a_value_error(recommender: ALSRecommender) -> None:
    with pytest.raises(ValueError, match="genres.*'Western'"):
        recommender.recommend(user(0), genres=["Western"])


def test_unknown_user_falls_back_to_popular(recommender: ALSRecommender) -> None:
    result = recommender.recommend(42, k=3)
    assert result.fallback
    assert result.items == recommender.popular(k=3).items
    odd = recommender.recommend(42, k=3, genres=["Odd"], exclude=[movie(1)])
    assert odd.fallback and odd.movie_ids == [movie(3), movie(5), movie(7)]


def test_popular_counts_users_and_breaks_ties_by_movie_id(recommender: ALSRecommender) -> None:
    # every movie is liked by the 10 users of its parity but the two who have it unseen
    assert recommender.popular(k=3).items == [(movie(0), 8.0), (movie(1), 8.0), (movie(2), 8.0)]
    assert recommender.popular(k=2, genre="Odd").movie_ids == [movie(1), movie(3)]
    assert not recommender.popular(k=2).fallback


@pytest.mark.parametrize("i", [0, 3, 8])
def test_similar_movies_share_parity(recommender: ALSRecommender, i: int) -> None:
    result = recommender.similar(movie(i), k=5)
    assert len(result.items) == 5
    assert movie(i) not in result.movie_ids
    assert all(parity(m) == i % 2 for m in result.movie_ids)


def test_fold_in_from_even_likes_gives_even_movies(recommender: ALSRecommender) -> None:
    likes = [movie(0), movie(2), movie(4), movie(6)]
    result = recommender.recommend_for_liked(likes, k=5)
    assert not result.fallback
    assert len(result.items) == 5
    assert all(parity(m) == 0 for m in result.movie_ids)
    assert not set(result.movie_ids) & set(likes)


def test_fold_in_without_likes_falls_back(recommender: ALSRecommender) -> None:
    result = recommender.recommend_for_liked([], k=4)
    assert result.fallback and len(result.items) == 4


def test_explain_names_the_users_movies(recommender: ALSRecommender) -> None:
    explanation = recommender.explain(user(0), movie(0), n=3)
    assert len(explanation.contributions) == 3
    assert {c.movie_id for c in explanation.contributions} <= set(liked(0))
    assert explanation.score > 0
    shares = [c.share for c in explanation.contributions]
    assert shares == sorted(shares, reverse=True) and all(-1 <= s <= 1 for s in shares)
    full = recommender.explain(user(0), movie(0), n=N)
    assert sum(abs(c.share) for c in full.contributions) == pytest.approx(1.0)
    assert sum(c.score for c in full.contributions) == pytest.approx(full.score, rel=1e-5)


def _implicit_explanation(model: ALSRecommender, user_id: int, movie_id: int, n: int) -> list:
    """implicit's own ``explain`` (a loop over the user's movies) as (movie id, score) pairs."""
    als, state = model._fitted()
    row = state.user_items[int(state.users.index_of([user_id])[0])]
    col = int(state.movies.index_of([movie_id])[0])
    total, contributions, _ = als.explain(0, row, col, N=row.nnz)
    return [total] + [(int(state.movies.ids[item]), score) for item, score in contributions[:n]]


def _weighted_model() -> ALSRecommender:
    """ALS with alpha != 1 on random ratings weighted linearly: unequal confidences."""
    rng = np.random.default_rng(3)
    pairs = {(int(u), int(m)) for u, m in rng.integers(0, 40, size=(600, 2))}
    rows = [(u + 1, m + 1, float(rng.integers(1, 11)) / 2, 1000) for u, m in sorted(pairs)]
    config = ALSConfig(
        als=ALSParams(factors=8, regularization=0.5, alpha=3.0, iterations=5),
        matrix=MatrixConfig(weighting="linear"),
    )
    return train_als(interactions_frame(rows, source=None), config=config)


@pytest.mark.parametrize("which", ["checkerboard", "weighted"])
def test_explain_equals_implicits_explain(recommender: ALSRecommender, which: str) -> None:
    model = recommender if which == "checkerboard" else _weighted_model()
    for user_id in model.user_ids[::3]:
        for movie_id in model.movie_ids[::4]:
            ours = model.explain(int(user_id), int(movie_id), n=8)
            total, *reference = _implicit_explanation(model, int(user_id), int(movie_id), 8)
            # implicit sums float32 outer products: it agrees to float32 precision
            assert ours.score == pytest.approx(total, rel=1e-5, abs=1e-7)
            assert [c.movie_id for c in ours.contributions] == [m for m, _ in reference]
            assert [c.score for c in ours.contributions] == pytest.approx(
                [s for _, s in reference], rel=1e-5, abs=1e-7
            )


def test_explain_unknown_ids(recommender: ALSRecommender) -> None:
    with pytest.raises(UnknownUserError, match="42"):
        recommender.explain(42, movie(0))
    with pytest.raises(UnknownMovieError, match="7"):
        recommender.explain(user(0), 7)


def test_unknown_movies_are_listed(recommender: ALSRecommender) -> None:
    with pytest.raises(UnknownMovieError) as error:
        recommender.recommend_for_liked([movie(0), 999, 998, 999])
    assert error.value.movie_ids == (998, 999)
    assert "998, 999" in str(error.value)
    assert isinstance(error.value, ValueError)
    with pytest.raises(UnknownMovieError):
        recommender.similar(5)


@pytest.mark.parametrize(
    "call",
    [
        lambda r: r.recommend(USER0, k=0),
        lambda r: r.recommend_for_liked([MOVIE0], k=0),
        lambda r: r.similar(MOVIE0, k=-1),
        lambda r: r.popular(k=0),
        lambda r: r.recommend_batch([USER0], k=0),
    ],
)
def test_k_below_one_names_k(recommender: ALSRecommender, call: object) -> None:
    with pytest.raises(ValueError, match="k must be >= 1"):
        call(recommender)  # type: ignore[operator]


def test_batch_matches_single_calls_and_flags_unknown_users(recommender: ALSRecommender) -> None:
    users = [user(3), 42, user(0)]
    batch = recommender.recommend_batch(users, k=3, batch_size=1)
    assert batch.movie_ids.shape == (3, 3)
    assert batch.fallback.tolist() == [False, True, False]
    for row, user_id in enumerate(users):
        assert batch.movie_ids[row].tolist() == recommender.recommend(user_id, k=3).movie_ids
    frame = batch.to_frame()
    assert frame.columns == ["user_id", "rank", "movie_id", "score", "fallback"]
    assert frame.height == 9
    assert frame.filter(pl.col("user_id") == 42).get_column("fallback").all()


def test_batch_pads_when_fewer_candidates_than_k(recommender: ALSRecommender) -> None:
    batch = recommender.recommend_batch([user(0)], k=N)
    available = N - len(liked(0))
    assert (batch.movie_ids[0, :available] >= 0).all()
    assert (batch.movie_ids[0, available:] == -1).all()
    assert np.isnan(batch.scores[0, available:]).all()
    assert batch.to_frame().height == available


def test_save_load_round_trip(recommender: ALSRecommender, tmp_path: Path) -> None:
    recommender.save(tmp_path / "model")
    loaded = ALSRecommender.load(tmp_path / "model")
    users = [user(u) for u in range(N)] + [42]
    before, after = recommender.recommend_batch(users, k=5), loaded.recommend_batch(users, k=5)
    np.testing.assert_array_equal(before.movie_ids, after.movie_ids)
    np.testing.assert_array_equal(before.scores, after.scores)
    assert loaded.recommend(user(1), k=4, genres=["Odd"]) == recommender.recommend(
        user(1), k=4, genres=["Odd"]
    )
    assert loaded.similar(movie(2)) == recommender.similar(movie(2))
    assert loaded.recommend_for_liked([movie(1)]) == recommender.recommend_for_liked([movie(1)])
    assert loaded.explain(user(0), movie(0)) == recommender.explain(user(0), movie(0))
    assert loaded.params == recommender.params
    assert loaded.matrix_config == recommender.matrix_config


def test_load_refuses_another_format(recommender: ALSRecommender, tmp_path: Path) -> None:
    directory = recommender.save(tmp_path / "model")
    metadata = directory / "metadata.json"
    metadata.write_text(metadata.read_text().replace('"format_version": 1', '"format_version": 99'))
    with pytest.raises(ValueError, match="format 99"):
        ALSRecommender.load(directory)


def test_same_seed_same_model(interactions: pl.DataFrame) -> None:
    config = ALSConfig(als=PARAMS)
    first = train_als(interactions, config=config, random_state=3)
    second = train_als(interactions, config=config, random_state=3)
    users = [user(u) for u in range(N)]
    np.testing.assert_array_equal(
        first.recommend_batch(users, k=4).scores, second.recommend_batch(users, k=4).scores
    )


def test_unfitted_model_says_so() -> None:
    with pytest.raises(RuntimeError, match="not fitted"):
        ALSRecommender().recommend(1)


def test_gpu_requested_without_cuda_is_refused(
    interactions: pl.DataFrame, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(model_module.implicit.gpu, "HAS_CUDA", False)
    with pytest.raises(ValueError, match="use_gpu"):
        ALSRecommender(PARAMS, use_gpu=True).fit(build_interaction_matrix(interactions))


def test_config_dict_round_trip() -> None:
    config = ALSConfig.from_dict(
        {"factors": 16, "regularization": 3.0, "weighting": "log", "min_rating": 3.5}
    )
    assert config.als == ALSParams(factors=16, regularization=3.0)
    assert config.matrix.weighting == "log" and config.matrix.min_rating == 3.5
    assert ALSConfig.from_dict(config.to_dict()) == config
    with pytest.raises(ValueError, match="values has unknown key"):
        ALSConfig.from_dict({"factor": 3})


@pytest.mark.parametrize(
    ("options", "argument"),
    [({"factors": 0}, "factors"), ({"alpha": 0}, "alpha"), ({"iterations": 0}, "iterations")],
)
def test_bad_params_name_the_argument(options: dict[str, float], argument: str) -> None:
    with pytest.raises(ValueError, match=argument):
        ALSParams(**options)  # type: ignore[arg-type]
