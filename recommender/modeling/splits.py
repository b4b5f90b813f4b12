"""Leakage-free train/test splits of interactions, and the scoring view of a split.

No (user, movie) pair is ever on both sides; :class:`Holdout` is what a model is scored on: the
binary training matrix and, for every user known in training, the held-out movies that also
appear in training (the candidates are the training movies).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import polars as pl
from scipy.sparse import csr_matrix

from recommender.features.build import (
    InteractionMatrix,
    aggregate_interactions,
    build_interaction_matrix,
)
from recommender.modeling.als import ALSRecommender
from recommender.modeling.metrics import hit_matrix
from recommender.modeling.protocol import SPLIT_KINDS, SplitKind


@dataclass(frozen=True)
class Split:
    """A train/test partition of aggregated interactions.

    ``interactions`` holds one row per (user, movie), sorted by user then movie;
    ``train_index`` and ``test_index`` are disjoint sorted row positions covering all of it.
    """

    interactions: pl.DataFrame
    train_index: np.ndarray
    test_index: np.ndarray
    kind: SplitKind
    test_fraction: float
    seed: int

    @property
    def train(self) -> pl.DataFrame:
        return self.interactions[self.train_index]

    @property
    def test(self) -> pl.DataFrame:
        return self.interactions[self.test_index]


def split_interactions(
    interactions: pl.DataFrame,
    *,
    kind: SplitKind = "random-per-user",
    test_fraction: float = 0.25,
    seed: int = 42,
) -> Split:
    """Split interactions into train and test with no (user, movie) pair in both.

    Repeated pairs are aggregated first
    (:func:`~recommender.features.build.aggregate_interactions`), so a pair is one row and lands
    on one side. Each group (a user, or a movie for ``random-per-item``) of n rows puts
    round(n * test_fraction) of them in test, at most n - 1,
    so every user (movie) keeps a training row:

    * ``random-per-user``: a random sample of each user's movies;
    * ``random-per-item``: a random sample of each movie's users;
    * ``temporal-per-user``: each user's latest movies (ties: higher movie id counts as later).

    The result depends only on the set of interactions and ``seed``, not on their row order.
    """
    if kind not in SPLIT_KINDS:
        raise ValueError(f"kind must be one of {', '.join(SPLIT_KINDS)}, got {kind!r}")
    if not 0 < test_fraction < 1:
        raise ValueError(f"test_fraction must be in (0, 1), got {test_fraction}")
    pairs = aggregate_interactions(interactions)
    group = "movie_id" if kind == "random-per-item" else "user_id"
    numbered = pairs.select("user_id", "movie_id", "timestamp").with_row_index("row")
    if kind == "temporal-per-user":
        ordered = numbered.sort(
            ["user_id", "timestamp", "movie_id"], descending=[False, True, True]
        )
    else:
        random_key = np.random.default_rng(seed).random(pairs.height)
        ordered = numbered.with_columns(key=pl.Series(random_key)).sort(group, "key")
    position = pl.int_range(pl.len()).over(group)
    size = pl.len().over(group)
    n_test = pl.min_horizontal((size * test_fraction + 0.5).floor(), size - 1)
    in_test = ordered.select(pl.col("row"), (position < n_test).alias("test"))
    test_rows = in_test.filter(pl.col("test")).get_column("row").to_numpy()
    train_rows = in_test.filter(~pl.col("test")).get_column("row").to_numpy()
    return Split(
        interactions=pairs,
        train_index=np.sort(train_rows).astype(np.int64),
        test_index=np.sort(test_rows).astype(np.int64),
        kind=kind,
        test_fraction=test_fraction,
        seed=seed,
    )


@dataclass(frozen=True)
class Holdout:
    """A split's binary training matrix and the held-out movies of the users to score."""

    interactions: pl.DataFrame
    train: InteractionMatrix
    rows: np.ndarray
    relevant: csr_matrix

    @classmethod
    def from_split(cls, split: Split) -> Holdout:
        interactions = split.train
        train = build_interaction_matrix(interactions)
        test = build_interaction_matrix(split.test, users=train.users, movies=train.movies)
        rows = np.flatnonzero(test.matrix.getnnz(axis=1) > 0)
        return cls(interactions=interactions, train=train, rows=rows, relevant=test.matrix[rows])

    @property
    def user_ids(self) -> np.ndarray:
        return self.train.users.ids[self.rows]

    def hits(self, recommended: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """The hit matrix of ``recommended`` (column indices) and |T_u| per user."""
        return hit_matrix(recommended, self.relevant), self.relevant.getnnz(axis=1)

    def als_top_k(self, model: ALSRecommender, k: int) -> np.ndarray:
        """The model's top-k training-movie columns per scored user, training movies excluded."""
        movie_ids = model.recommend_batch(self.user_ids, k=k).movie_ids
        return self.train.movies.index_of(movie_ids).reshape(movie_ids.shape)
