"""Batch prediction for every user of an ML-20M-scale model against raw implicit.

Builds a synthetic users x movies matrix (about 138k users, 27k movies, 20M interactions,
power-law movie popularity), fits :class:`~recommender.modeling.als.ALSRecommender` on it
(64 factors; one iteration by default: the factors' values do not change the cost of scoring),
then times

* the batch prediction path: ``recommend_batch`` over every known user followed by
  ``to_frame()`` (what ``flows/batch_prediction.py`` runs), and
* raw implicit: one batched ``AlternatingLeastSquares.recommend`` call over every user row with
  the same matrix, ``N`` and filtering,

and prints both, their ratio (target <= 1.2) and a check that both return the same movies.

    uv run python benchmarks/batch_predict.py                    # full scale, a few minutes
    uv run python benchmarks/batch_predict.py --users 20000 --movies 10000 --ratings 2000000
"""

from __future__ import annotations

import argparse
import os
import time

from recommender.settings import configure_process

configure_process()  # before numpy loads OpenBLAS

import numpy as np  # noqa: E402
from scipy.sparse import csr_matrix  # noqa: E402

from recommender.features.build import IdMap, InteractionMatrix, MatrixConfig  # noqa: E402
from recommender.modeling.als import ALSParams, ALSRecommender  # noqa: E402

RATIO_TARGET = 1.2


def synthetic_matrix(users: int, movies: int, ratings: int, seed: int) -> InteractionMatrix:
    """A binary users x movies matrix with Zipf-like movie popularity (duplicates merged)."""
    rng = np.random.default_rng(seed)
    weights = 1.0 / np.arange(1, movies + 1) ** 0.9
    cols = rng.choice(movies, size=ratings, p=weights / weights.sum())
    rows = rng.integers(0, users, size=ratings)
    matrix = csr_matrix((np.ones(ratings, dtype=np.float32), (rows, cols)), shape=(users, movies))
    matrix.data[:] = 1.0  # merged duplicates count once
    return InteractionMatrix(
        matrix=matrix,
        users=IdMap(np.arange(1, users + 1, dtype=np.int64)),
        movies=IdMap(np.arange(1, movies + 1, dtype=np.int64)),
        config=MatrixConfig(),
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--users", type=int, default=138_000)
    parser.add_argument("--movies", type=int, default=27_000)
    parser.add_argument("--ratings", type=int, default=20_000_000)
    parser.add_argument("--k", type=int, default=10)
    parser.add_argument("--iterations", type=int, default=1)
    parser.add_argument("--seed", type=int, default=42)
    args = parser.parse_args()

    started = time.perf_counter()
    matrix = synthetic_matrix(args.users, args.movies, args.ratings, args.seed)
    print(
        f"matrix {matrix.shape[0]:,} x {matrix.shape[1]:,}, {matrix.matrix.nnz:,} interactions "
        f"({time.perf_counter() - started:.1f} s)"
    )
    started = time.perf_counter()
    model = ALSRecommender(ALSParams(factors=64, iterations=args.iterations)).fit(matrix)
    print(f"fit: {time.perf_counter() - started:.1f} s ({args.iterations} iteration(s))")

    started = time.perf_counter()
    batch = model.recommend_batch(model.user_ids, k=args.k)
    frame = batch.to_frame()
    path_s = time.perf_counter() - started

    raw_model = model._model  # the fitted implicit model the wrapper calls
    user_items = matrix.matrix
    started = time.perf_counter()
    raw_ids, _ = raw_model.recommend(
        np.arange(user_items.shape[0]), user_items, N=args.k, filter_already_liked_items=True
    )
    raw_s = time.perf_counter() - started

    same = np.array_equal(batch.movie_ids, matrix.movies.ids[raw_ids])
    ratio = path_s / raw_s
    verdict = "PASS" if ratio <= RATIO_TARGET else "FAIL"
    print(
        f"batch prediction path (recommend_batch + to_frame): {path_s:7.1f} s, {frame.height} rows"
    )
    print(f"raw implicit recommend (one call, all users):       {raw_s:7.1f} s")
    print(f"ratio: {ratio:.2f} (target <= {RATIO_TARGET}): {verdict}")
    print(f"same recommendations as raw implicit: {same}")
    print(f"load average: {os.getloadavg()[0]:.1f} on {os.cpu_count()} cores")


if __name__ == "__main__":
    main()
