"""The monitoring computations at scale: feature drift and beyond-accuracy list quality.

Synthetic data shaped like a large MovieLens deployment:

* drift: reference and current feature tables with 1M interactions each, 100k users x 12 user
  features (3 activity columns + 9 genre affinities) and 10k movies; the current side has a
  shifted rating distribution and 20% new users, so drift is really found;
* lists: top-10 lists for 100k users from two model versions, popularity from 1M training
  interactions, genres of 10k movies: every figure of ``list_quality`` plus ``overlap_at_k``.

Prints the time of each part (target <= 3 s each on 2 cores) and the peak RSS.

    uv run python benchmarks/monitoring.py
    uv run python benchmarks/monitoring.py --users 20000 --interactions 200000
"""

from __future__ import annotations

import argparse
import resource
import time

from recommender.settings import configure_process

configure_process()

import numpy as np  # noqa: E402
import polars as pl  # noqa: E402

from recommender.monitoring.beyond_accuracy import list_quality, overlap_at_k  # noqa: E402
from recommender.monitoring.drift import feature_drift  # noqa: E402

TARGET_SECONDS = 3.0
GENRES = ["Action", "Comedy", "Drama", "Horror", "Romance", "Sci-Fi", "Thriller", "War", "Western"]
RATINGS = np.arange(1, 11) / 2


def feature_tables(
    rng: np.random.Generator,
    *,
    users: int,
    movies: int,
    interactions: int,
    shift: float,
    first_user: int,
) -> dict[str, pl.DataFrame]:
    """Interactions, movie features and user features of the shape the feature flow builds."""
    weights = np.linspace(1, 2, RATINGS.size) ** shift
    user_ids = np.arange(first_user, first_user + users)
    movie_ids = np.arange(1, movies + 1)
    popularity = 1 / np.arange(1, movies + 1) ** 0.8
    n_genres = rng.integers(1, 4, size=movies)
    return {
        "interactions": pl.DataFrame(
            {
                "user_id": rng.choice(user_ids, size=interactions),
                "movie_id": rng.choice(
                    movie_ids, size=interactions, p=popularity / popularity.sum()
                ),
                "rating": rng.choice(RATINGS, size=interactions, p=weights / weights.sum()),
                "timestamp": rng.integers(1_500_000_000, 1_700_000_000, size=interactions),
                "source": rng.choice(["ratings", "feedback"], size=interactions, p=[0.95, 0.05]),
            }
        ),
        "movie_features": pl.DataFrame(
            {
                "movie_id": movie_ids,
                "genres": [list(rng.choice(GENRES, size=n, replace=False)) for n in n_genres],
                "year": rng.integers(1920, 2026, size=movies).astype(np.int32),
                "popularity": rng.gamma(2.0, 10.0, size=movies),
                "rating_count": rng.poisson(interactions / movies, size=movies),
                "rating_mean": rng.uniform(1, 5, size=movies) + shift / 4,
            }
        ),
        "user_features": pl.DataFrame(
            {
                "user_id": user_ids,
                "activity_count": rng.poisson(interactions / users, size=users),
                "rating_mean": rng.normal(3.5 + shift / 4, 0.5, size=users),
                "days_since_last": rng.exponential(30, size=users),
                **{f"affinity_{g}": rng.beta(2, 5, size=users) for g in GENRES},
            }
        ),
    }


def top_lists(rng: np.random.Generator, *, users: int, movies: int, k: int) -> pl.DataFrame:
    """Top-k lists biased towards popular movies (distinct movies within a list)."""
    weights = 1 / np.arange(1, movies + 1) ** 0.5
    picks = np.argsort(
        -rng.random((users, 4 * k)) * weights[rng.integers(0, movies, (users, 4 * k))], axis=1
    )
    candidates = rng.integers(1, movies + 1, size=(users, 4 * k))
    chosen = np.take_along_axis(candidates, picks, axis=1)
    # distinct per user: take the first k unique of each row
    rows = []
    for row in chosen:
        _, first = np.unique(row, return_index=True)
        rows.append(row[np.sort(first)][:k])
    lists = np.vstack(rows)
    return pl.DataFrame(
        {
            "user_id": np.repeat(np.arange(1, users + 1), k),
            "rank": np.tile(np.arange(1, k + 1, dtype=np.int32), users),
            "movie_id": lists.reshape(-1),
            "score": np.sort(rng.random((users, k)), axis=1)[:, ::-1].reshape(-1),
        }
    )


def timed(label: str, work):  # noqa: ANN001, ANN201
    start = time.perf_counter()
    result = work()
    seconds = time.perf_counter() - start
    verdict = "PASS" if seconds <= TARGET_SECONDS else "FAIL"
    print(f"{label}: {seconds:.2f} s (target <= {TARGET_SECONDS:.0f} s: {verdict})")
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--users", type=int, default=100_000)
    parser.add_argument("--movies", type=int, default=10_000)
    parser.add_argument("--interactions", type=int, default=1_000_000)
    parser.add_argument("--k", type=int, default=10)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    rng = np.random.default_rng(args.seed)
    sizes = {"users": args.users, "movies": args.movies, "interactions": args.interactions}
    reference = feature_tables(rng, **sizes, shift=0.0, first_user=1)
    current = feature_tables(rng, **sizes, shift=1.0, first_user=1 + args.users // 5)
    report = timed(
        f"feature drift ({args.interactions:,} interactions, {args.users:,} users x "
        f"{reference['user_features'].width - 1} features, {args.movies:,} movies)",
        lambda: feature_drift(reference, current),
    )
    drifted = ", ".join(f"{c.table}.{c.column}" for c in report.drifted) or "none"
    print(
        f"  {len(report.columns)} columns, drifted: {drifted}; "
        f"new users {report.new_entities.new_user_share:.1%}"
    )
    champion = top_lists(rng, users=args.users, movies=args.movies, k=args.k)
    previous = top_lists(rng, users=args.users, movies=args.movies, k=args.k)

    def quality():  # noqa: ANN202
        figures = list_quality(
            champion,
            interactions=reference["interactions"],
            movies=reference["movie_features"],
            k=args.k,
        )
        return figures, overlap_at_k(champion, previous, k=args.k)

    figures, overlap = timed(
        f"list quality + overlap (top-{args.k} for {args.users:,} users, two versions)", quality
    )
    print(
        f"  coverage {figures.catalog_coverage:.3f}, novelty {figures.novelty:.2f} bits, "
        f"ARP {figures.average_popularity:.4f}, personalization {figures.personalization:.3f}, "
        f"ILD {figures.intra_list_diversity:.3f}, overlap@{args.k} {overlap:.3f}"
    )
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(f"peak RSS: {peak:.0f} MiB")


if __name__ == "__main__":
    main()
