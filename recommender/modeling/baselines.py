"""Baselines scored next to ALS: most popular unseen movies, and implicit's BM25 item-kNN."""

from __future__ import annotations

from typing import Any

import numpy as np
from implicit.nearest_neighbours import ItemItemRecommender

from recommender.features.build import MatrixConfig, build_interaction_matrix
from recommender.modeling.splits import Holdout

ITEM_KNN_PARAMS: dict[str, Any] = {"K": 200, "K1": 1.2, "B": 0.75}


def popularity_top_k(holdout: Holdout, k: int, *, batch_size: int = 1024) -> np.ndarray:
    """The k most popular training movies each user has not seen (ties: lower movie id)."""
    train = holdout.train.matrix
    n_movies = train.shape[1]
    counts = np.bincount(train.indices, minlength=n_movies)
    order = np.lexsort((np.arange(n_movies), -counts))
    top = np.full((len(holdout.rows), k), -1, dtype=np.int64)
    for start in range(0, len(holdout.rows), batch_size):
        seen_rows = train[holdout.rows[start : start + batch_size]]
        # A user's k best unseen movies lie among the k + |seen| most popular ones.
        candidates = order[: min(n_movies, k + int(seen_rows.getnnz(axis=1).max()))]
        seen = seen_rows[:, candidates].toarray() > 0
        picked = np.argsort(seen, axis=1, kind="stable")[:, :k]
        chosen = np.where(np.take_along_axis(seen, picked, axis=1), -1, candidates[picked])
        top[start : start + len(chosen), : chosen.shape[1]] = chosen
    return top


def item_knn_top_k(holdout: Holdout, k: int) -> np.ndarray:
    """implicit's BM25 item-kNN: what ``BM25Recommender.fit`` does, fed our CSR BM25 matrix
    (``BM25Recommender`` itself hands implicit a COO matrix, which makes it warn)."""
    weighted = build_interaction_matrix(
        holdout.interactions,
        config=MatrixConfig(
            weighting="bm25", bm25_k1=ITEM_KNN_PARAMS["K1"], bm25_b=ITEM_KNN_PARAMS["B"]
        ),
        users=holdout.train.users,
        movies=holdout.train.movies,
    )
    knn = ItemItemRecommender(K=ITEM_KNN_PARAMS["K"])
    knn.fit(weighted.matrix.astype(np.float64), show_progress=False)
    seen = holdout.train.matrix[holdout.rows]
    ids, _ = knn.recommend(holdout.rows, seen, N=k, filter_already_liked_items=True)
    return np.asarray(ids, dtype=np.int64)
