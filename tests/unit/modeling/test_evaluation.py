from __future__ import annotations

import time

import numpy as np
import polars as pl
import pytest

from recommender.modeling.als import ALSConfig
from recommender.modeling.evaluation import evaluate_models
from recommender.modeling.protocol import SPLIT_KINDS, EvaluationProtocol
from recommender.modeling.splits import Split, split_interactions
from recommender.modeling.tuning import SearchSpace, tune_als
from recommender.settings import EMBEDDED_MOVIELENS
from tests.frames import interactions_frame

ML_LATEST_SMALL = EMBEDDED_MOVIELENS
TINY_SPACE = SearchSpace(factors=(4, 8), iterations=(3,), weighting=("binary", "log"))


@pytest.fixture(scope="module")
def interactions() -> pl.DataFrame:
    """40 users with 6..25 random movies out of 60, plus a repeated pair."""
    rng = np.random.default_rng(0)
    rows = []
    for user_id in range(1, 41):
        n = int(rng.integers(6, 26))
        for movie_id in rng.choice(np.arange(1, 61), size=n, replace=False):
            rows.append(
                (user_id, int(movie_id), float(rng.integers(1, 11)) / 2, int(rng.integers(1e9)))
            )
    rows.append((rows[0][0], rows[0][1], 1.0, rows[0][3] + 10))
    return interactions_frame(rows)


def pairs(frame: pl.DataFrame) -> set[tuple[int, int]]:
    return set(frame.select("user_id", "movie_id").iter_rows())


@pytest.mark.parametrize("kind", SPLIT_KINDS)
def test_split_partitions_pairs_without_leakage(interactions: pl.DataFrame, kind: str) -> None:
    split = split_interactions(interactions, kind=kind, test_fraction=0.25, seed=1)  # type: ignore[arg-type]
    assert not pairs(split.train) & pairs(split.test)
    assert pairs(split.train) | pairs(split.test) == pairs(interactions)
    assert split.interactions.height == len(pairs(interactions))
    assert not np.intersect1d(split.train_index, split.test_index).size
    assert len(split.train_index) + len(split.test_index) == split.interactions.height


@pytest.mark.parametrize("kind", SPLIT_KINDS)
def test_split_holds_out_the_fraction_of_each_group(interactions: pl.DataFrame, kind: str) -> None:
    split = split_interactions(interactions, kind=kind, test_fraction=0.3, seed=1)  # type: ignore[arg-type]
    group = "movie_id" if kind == "random-per-item" else "user_id"
    sizes = split.interactions.group_by(group).len()
    held = split.test.group_by(group).len().rename({"len": "held"})
    counts = sizes.join(held, on=group, how="left").fill_null(0)
    for size, n_held in counts.select("len", "held").iter_rows():
        assert n_held == min(int(size * 0.3 + 0.5), size - 1)


@pytest.mark.parametrize("kind", ["random-per-user", "random-per-item"])
def test_random_splits_are_deterministic_under_a_seed(
    interactions: pl.DataFrame, kind: str
) -> None:
    first = split_interactions(interactions, kind=kind, seed=5)  # type: ignore[arg-type]
    again = split_interactions(
        interactions.sample(fraction=1.0, shuffle=True, seed=9), kind=kind, seed=5
    )  # type: ignore[arg-type]
    other = split_interactions(interactions, kind=kind, seed=6)  # type: ignore[arg-type]
    assert pairs(first.test) == pairs(again.test)
    np.testing.assert_array_equal(first.test_index, again.test_index)
    assert pairs(first.test) != pairs(other.test)


def test_temporal_split_tests_on_each_users_latest(interactions: pl.DataFrame) -> None:
    split = split_interactions(interactions, kind="temporal-per-user", seed=1)
    first_test = split.test.group_by("user_id").agg(pl.col("timestamp").min().alias("first"))
    last_train = split.train.group_by("user_id").agg(pl.col("timestamp").max().alias("last"))
    joined = first_test.join(last_train, on="user_id")
    assert joined.height > 0
    assert (joined.get_column("first") >= joined.get_column("last")).all()
    assert pairs(split.test) == pairs(
        split_interactions(interactions, kind="temporal-per-user", seed=2).test
    )


def test_split_arguments_are_checked(interactions: pl.DataFrame) -> None:
    with pytest.raises(ValueError, match="kind"):
        split_interactions(interactions, kind="random")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="test_fraction"):
        split_interactions(interactions, test_fraction=1.0)


def outer_split(interactions: pl.DataFrame) -> Split:
    return split_interactions(interactions, kind="random-per-user", test_fraction=0.25, seed=3)


def test_tuning_only_sees_the_train_part(interactions: pl.DataFrame) -> None:
    report = evaluate_models(
        interactions, EvaluationProtocol(seed=3, k=5, trials=2), space=TINY_SPACE
    )
    outer = outer_split(interactions)
    tuning_rows = report.tuning.split.interactions
    assert pairs(tuning_rows) == pairs(outer.train)
    assert not pairs(tuning_rows) & pairs(outer.test)
    assert pairs(report.tuning.split.train) | pairs(report.tuning.split.test) == pairs(outer.train)


def test_changing_the_test_part_does_not_change_the_choice(interactions: pl.DataFrame) -> None:
    outer = outer_split(interactions)
    test_pairs = outer.test.select("user_id", "movie_id").with_columns(in_test=pl.lit(True))
    # other ratings (which log weighting would feel) and times on the test rows only
    altered = (
        interactions.join(test_pairs, on=["user_id", "movie_id"], how="left")
        .with_columns(
            rating=pl.when(pl.col("in_test")).then(0.5).otherwise(pl.col("rating")),
            timestamp=pl.when(pl.col("in_test")).then(1).otherwise(pl.col("timestamp")),
        )
        .drop("in_test")
    )
    space = SearchSpace(factors=(4, 8), iterations=(3,), weighting=("log",))
    original = evaluate_models(interactions, EvaluationProtocol(seed=3, k=5, trials=3), space=space)
    changed = evaluate_models(altered, EvaluationProtocol(seed=3, k=5, trials=3), space=space)
    assert pairs(outer_split(altered).test) == pairs(outer.test)
    assert changed.best_config == original.best_config
    assert [t.validation_ndcg for t in changed.tuning.trials] == [
        t.validation_ndcg for t in original.tuning.trials
    ]


def test_tuning_tries_the_default_first_then_the_budget(interactions: pl.DataFrame) -> None:
    result = tune_als(interactions, k=5, trials=4, space=TINY_SPACE, seed=1)
    assert len(result.trials) == 4
    assert result.trials[0].config == ALSConfig()
    assert result.validation_ndcg == max(t.validation_ndcg for t in result.trials)
    assert result.best in [t.config for t in result.trials]
    again = tune_als(interactions, k=5, trials=4, space=TINY_SPACE, seed=1)
    assert [t.config for t in again.trials] == [t.config for t in result.trials]
    with pytest.raises(ValueError, match="trials"):
        tune_als(interactions, trials=0)


def test_report_shape(interactions: pl.DataFrame) -> None:
    report = evaluate_models(
        interactions, EvaluationProtocol(seed=3, k=5, trials=2), dataset="tiny", space=TINY_SPACE
    )
    data = report.to_dict()
    assert (data["dataset"], data["split"], data["k"]) == ("tiny", "random-per-user", 5)
    assert set(data["models"]) == {"als", "popularity", "item_knn"}
    for scores in data["models"].values():
        assert {"precision", "recall", "ndcg", "map", "coverage", "params"} <= set(scores)
        assert all(0 <= scores[m] <= 1 for m in ("precision", "recall", "ndcg", "map", "coverage"))
    assert data["models"]["als"]["params"] == report.best_config.to_dict()
    assert data["curves"]["k"] == list(range(1, 21))
    assert len(data["curves"]["als"]["ndcg"]) == 20
    assert data["curves"]["popularity"]["precision"][4] == data["models"]["popularity"]["precision"]
    assert data["tuning"]["validation_ndcg"] == report.validation_ndcg
    assert len(data["tuning"]["trials"]) == 2
    assert data["n_users"] == report.n_users > 0


def test_popularity_baseline_by_hand() -> None:
    # (user, movie, time): each user's latest movie is held out
    rows = [
        (1, 1, 1), (1, 2, 2), (1, 3, 3),
        (2, 1, 1), (2, 3, 2), (2, 2, 3),
        (3, 1, 1), (3, 4, 2),
        (4, 2, 1), (4, 1, 2),
        (5, 3, 1), (5, 2, 2),
    ]  # fmt: skip
    frame = pl.DataFrame(
        [(u, m, 4.0, t) for u, m, t in rows],
        schema={
            "user_id": pl.Int64,
            "movie_id": pl.Int64,
            "rating": pl.Float64,
            "timestamp": pl.Int64,
        },
        orient="row",
    )
    report = evaluate_models(
        frame, EvaluationProtocol(split="temporal-per-user", test_fraction=0.34, k=1, trials=1)
    )
    split = split_interactions(frame, kind="temporal-per-user", test_fraction=0.34)
    assert pairs(split.test) == {(1, 3), (2, 2), (3, 4), (4, 1), (5, 2)}
    # Training popularity: movie 1 (3 users), 2 and 3 (2 each, 2 first), 4 none. User 3 is not
    # scored (movie 4 is no candidate); the top unseen movies: user 1 -> 3 (hit), 2 -> 2 (hit),
    # 4 -> 1 (hit), 5 -> 1 (miss), then 2 (hit at rank 2).
    assert report.n_users == 4
    popularity = report.to_dict()
    assert popularity["models"]["popularity"]["precision"] == pytest.approx(3 / 4)
    assert popularity["curves"]["popularity"]["precision"][1] == pytest.approx(1 / 2)
    assert popularity["curves"]["popularity"]["recall"][1] == pytest.approx(1.0)
    assert popularity["curves"]["popularity"]["ndcg"][1] == pytest.approx((3 + 1 / np.log2(3)) / 4)


def test_bad_k_is_named(interactions: pl.DataFrame) -> None:
    with pytest.raises(ValueError, match=r"k\n  Input should be greater than or equal to 1"):
        evaluate_models(interactions, EvaluationProtocol(k=0))


@pytest.mark.slow
def test_tuned_als_beats_baselines_on_ml_latest_small() -> None:
    ratings = pl.read_csv(ML_LATEST_SMALL / "ratings.csv").rename(
        {"userId": "user_id", "movieId": "movie_id"}
    )
    started = time.perf_counter()
    report = evaluate_models(ratings, EvaluationProtocol(seed=42, k=10), dataset="ml-latest-small")
    seconds = time.perf_counter() - started
    models = report.to_dict()["models"]
    assert models["popularity"]["ndcg"] == pytest.approx(0.21, abs=0.01)
    assert models["als"]["ndcg"] >= 0.34
    assert models["als"]["ndcg"] > models["item_knn"]["ndcg"] > models["popularity"]["ndcg"]
    assert seconds < 120
