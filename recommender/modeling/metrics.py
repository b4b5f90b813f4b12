"""Ranking metrics at k as pure functions over a hit matrix.

``hits`` has one row per user and one column per rank (k = ``hits.shape[1]``): ``hits[u, i]``
is True when the movie recommended to user u at rank i + 1 is one of u's relevant (held-out)
movies. ``n_relevant[u]`` is |T_u|, the number of u's relevant movies. A user receives at most k
recommendations; missing ones are simply not hits.

Every ranking metric is the mean over the users with |T_u| > 0 (the others are ignored) and is
0.0 when there is no such user.
"""

from __future__ import annotations

import numpy as np
from scipy.sparse import csr_matrix


def check_k(k: int) -> None:
    """Raise ValueError unless the cut-off ``k`` is at least 1."""
    if k < 1:
        raise ValueError(f"k must be >= 1, got {k}")


def hit_matrix(recommended: np.ndarray, relevant: csr_matrix) -> np.ndarray:
    """``hits[u, i]``: is ``recommended[u, i]`` a nonzero column of row u of ``relevant``?

    Args:
        recommended: Item indices, shape (n_users, k); negative entries mean "no item".
        relevant: Shape (n_users, n_items); the nonzero entries of row u are T_u.

    Returns:
        A boolean array shaped like ``recommended``.
    """
    recommended = np.asarray(recommended)
    if recommended.ndim != 2 or recommended.shape[0] != relevant.shape[0]:
        raise ValueError(
            f"recommended must have shape (n_users, k) with n_users = {relevant.shape[0]}, "
            f"got {recommended.shape}"
        )
    n_items = relevant.shape[1]
    coo = relevant.tocoo()
    nonzero = coo.data != 0
    relevant_keys = np.unique(coo.row[nonzero].astype(np.int64) * n_items + coo.col[nonzero])
    rows = np.arange(recommended.shape[0], dtype=np.int64)[:, None]
    keys = rows * n_items + recommended.astype(np.int64)
    present = (recommended >= 0) & (recommended < n_items)
    return present & np.isin(keys, relevant_keys)


def precision_at_k(hits: np.ndarray, n_relevant: np.ndarray) -> float:
    """Precision@k = mean over users of |hits in the top k| / k."""
    hits, n_relevant = _check(hits, n_relevant)
    return _mean(hits.sum(axis=1) / hits.shape[1], n_relevant)


def recall_at_k(hits: np.ndarray, n_relevant: np.ndarray) -> float:
    """Recall@k = mean over users of |hits in the top k| / |T_u|."""
    hits, n_relevant = _check(hits, n_relevant)
    return _mean(hits.sum(axis=1) / np.maximum(n_relevant, 1), n_relevant)


def ndcg_at_k(hits: np.ndarray, n_relevant: np.ndarray) -> float:
    """NDCG@k with binary gains = mean over users of DCG / IDCG, where

    DCG = sum over ranks i = 1..k of hit_i / log2(i + 1) and
    IDCG = sum over i = 1..min(|T_u|, k) of 1 / log2(i + 1) (all relevant movies on top).
    """
    hits, n_relevant = _check(hits, n_relevant)
    k = hits.shape[1]
    discounts = 1.0 / np.log2(np.arange(2, k + 2))
    # ideal[n] is the IDCG of n relevant movies; ideal[0] only avoids a division by zero for
    # users that _mean ignores.
    ideal = np.concatenate(([1.0], np.cumsum(discounts)))
    return _mean(hits @ discounts / ideal[np.minimum(n_relevant, k)], n_relevant)


def map_at_k(hits: np.ndarray, n_relevant: np.ndarray) -> float:
    """MAP@k = mean over users of AP@k, where

    AP@k = (sum over ranks i with a hit of precision@i) / min(k, |T_u|),
    precision@i being the number of hits in the top i divided by i.
    """
    hits, n_relevant = _check(hits, n_relevant)
    k = hits.shape[1]
    precision_at_rank = np.cumsum(hits, axis=1) / np.arange(1, k + 1)
    average_precision = (precision_at_rank * hits).sum(axis=1) / np.maximum(
        np.minimum(n_relevant, k), 1
    )
    return _mean(average_precision, n_relevant)


def catalog_coverage(recommended: np.ndarray, n_items: int) -> float:
    """Coverage = |distinct recommended items| / n_items (negative entries are no item).

    0.0 when ``n_items`` is 0.
    """
    if n_items < 0:
        raise ValueError(f"n_items must be >= 0, got {n_items}")
    if n_items == 0:
        return 0.0
    recommended = np.asarray(recommended)
    return len(np.unique(recommended[recommended >= 0])) / n_items


def _check(hits: np.ndarray, n_relevant: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    hits = np.asarray(hits, dtype=bool)
    n_relevant = np.asarray(n_relevant, dtype=np.int64)
    if hits.ndim != 2 or hits.shape[1] < 1:
        raise ValueError(f"hits must have shape (n_users, k) with k >= 1, got {hits.shape}")
    if n_relevant.shape != (hits.shape[0],):
        raise ValueError(
            f"n_relevant must have shape ({hits.shape[0]},) to match hits, got {n_relevant.shape}"
        )
    return hits, n_relevant


def _mean(per_user: np.ndarray, n_relevant: np.ndarray) -> float:
    evaluated = n_relevant > 0
    return float(per_user[evaluated].mean()) if evaluated.any() else 0.0
