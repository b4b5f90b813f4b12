from __future__ import annotations

import math

import numpy as np
import pytest
from implicit.cpu.als import AlternatingLeastSquares
from implicit.evaluation import ranking_metrics_at_k, train_test_split
from scipy.sparse import csr_matrix
from scipy.sparse import random as sparse_random

from recommender.modeling.metrics import (
    catalog_coverage,
    check_k,
    hit_matrix,
    map_at_k,
    ndcg_at_k,
    precision_at_k,
    recall_at_k,
)

# user 0: hits at ranks 1 and 3, 2 relevant; user 1: a hit at rank 2, 4 relevant;
# user 2: no relevant movie, so it is ignored whatever its hits.
HITS = np.array([[1, 0, 1], [0, 1, 0], [1, 1, 1]], dtype=bool)
N_RELEVANT = np.array([2, 4, 0])


def discount(rank: int) -> float:
    return 1 / math.log2(rank + 1)


def test_precision_is_hits_over_k() -> None:
    assert precision_at_k(HITS, N_RELEVANT) == pytest.approx((2 / 3 + 1 / 3) / 2)


def test_recall_is_hits_over_relevant() -> None:
    assert recall_at_k(HITS, N_RELEVANT) == pytest.approx((2 / 2 + 1 / 4) / 2)


def test_ndcg_uses_binary_gains_and_ideal_over_min_relevant_k() -> None:
    user0 = (discount(1) + discount(3)) / (discount(1) + discount(2))
    user1 = discount(2) / (discount(1) + discount(2) + discount(3))
    assert ndcg_at_k(HITS, N_RELEVANT) == pytest.approx((user0 + user1) / 2)


def test_map_sums_precision_at_hits_over_min_k_relevant() -> None:
    user0 = (1 / 1 + 2 / 3) / 2
    user1 = (1 / 2) / 3
    assert map_at_k(HITS, N_RELEVANT) == pytest.approx((user0 + user1) / 2)


def test_perfect_ranking_scores_one() -> None:
    hits = np.array([[1, 1, 0]], dtype=bool)
    for metric in (recall_at_k, ndcg_at_k, map_at_k):
        assert metric(hits, np.array([2])) == pytest.approx(1.0)


@pytest.mark.parametrize("metric", [precision_at_k, recall_at_k, ndcg_at_k, map_at_k])
def test_empty_cases_are_zero(metric: object) -> None:
    no_users = np.zeros((0, 5), dtype=bool)
    assert metric(no_users, np.zeros(0, dtype=int)) == 0.0  # type: ignore[operator]
    nobody_relevant = np.ones((2, 3), dtype=bool)
    assert metric(nobody_relevant, np.array([0, 0])) == 0.0  # type: ignore[operator]
    no_hits = np.zeros((1, 3), dtype=bool)
    assert metric(no_hits, np.array([3])) == 0.0  # type: ignore[operator]


def test_shapes_are_checked() -> None:
    with pytest.raises(ValueError, match="n_relevant"):
        precision_at_k(HITS, np.array([1, 2]))
    with pytest.raises(ValueError, match="hits"):
        ndcg_at_k(np.ones(3, dtype=bool), np.array([1, 1, 1]))
    with pytest.raises(ValueError, match="recommended"):
        hit_matrix(np.array([[1, 2]]), csr_matrix((2, 4)))


def test_hit_matrix_ignores_padding_and_other_users_items() -> None:
    relevant = csr_matrix(np.array([[0, 1, 0, 1], [1, 0, 0, 0]]))
    recommended = np.array([[1, 0, -1], [3, 0, 1]])
    assert hit_matrix(recommended, relevant).tolist() == [
        [True, False, False],
        [False, True, False],
    ]


def test_coverage_counts_distinct_items_over_the_catalog() -> None:
    assert catalog_coverage(np.array([[1, 2, -1], [2, 3, -1]]), 10) == pytest.approx(0.3)
    assert catalog_coverage(np.zeros((0, 3), dtype=int), 10) == 0.0
    assert catalog_coverage(np.array([[1]]), 0) == 0.0
    with pytest.raises(ValueError, match="n_items"):
        catalog_coverage(np.array([[1]]), -1)


def test_check_k() -> None:
    check_k(1)
    with pytest.raises(ValueError, match="k must be >= 1, got 0"):
        check_k(0)


def test_ndcg_and_map_agree_with_implicit() -> None:
    ratings = csr_matrix(sparse_random(60, 80, density=0.15, format="csr", random_state=1))
    ratings.data[:] = 1.0
    train, test = train_test_split(ratings, train_percentage=0.7, random_state=2)
    model = AlternatingLeastSquares(factors=4, iterations=5, random_state=3)
    model.fit(train, show_progress=False)
    k = 5
    ids, _ = model.recommend(np.arange(train.shape[0]), train, N=k)
    hits = hit_matrix(ids, test)
    n_relevant = test.getnnz(axis=1)
    expected = ranking_metrics_at_k(model, train, test, K=k, show_progress=False)
    assert ndcg_at_k(hits, n_relevant) == pytest.approx(expected["ndcg"])
    assert map_at_k(hits, n_relevant) == pytest.approx(expected["map"])
