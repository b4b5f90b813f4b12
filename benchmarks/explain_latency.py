"""Latency of ``/explain``'s work (``RecommenderAPI.explain``) on the embedded MovieLens sample.

Trains ALS (default configuration) on ``data/movielens/ml-latest-small`` as the service tests do
(``support/sample_model.py``), then times ``RecommenderAPI.explain`` for the heaviest user (the
one with the most ratings) and a typical user (the median number of ratings), each for their
top recommendation, next to implicit's own ``explain`` on the same row (the implementation the
service used before, a Python loop over the user's movies), and checks that both name the same
movies in the same order.

    uv run python benchmarks/explain_latency.py                 # 200 calls per figure
    uv run python benchmarks/explain_latency.py --repeats 50

Target: p50 <= 10 ms for the heaviest user. Exits 1 when it is missed or the answers differ.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

from recommender.settings import configure_process

configure_process()  # before numpy loads OpenBLAS

import numpy as np  # noqa: E402

from recommender.data.movielens import load_movielens  # noqa: E402
from recommender.serving.api import ExplainRequest, RecommenderAPI, ServedModel  # noqa: E402
from recommender.settings import EMBEDDED_MOVIELENS  # noqa: E402
from support.sample_model import train_sample  # noqa: E402

P50_TARGET_MS = 10.0
N = 10
ROW = "{:<22} {:>8.2f} {:>8.2f}"


def percentiles_ms(call: Callable[[], object], repeats: int) -> tuple[float, float]:
    """p50 and p99 (nearest rank) of ``repeats`` timed calls, after 5 untimed ones."""
    for _ in range(5):
        call()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        call()
        times.append((time.perf_counter() - start) * 1000)
    ordered = sorted(times)
    return ordered[len(ordered) // 2], ordered[min(len(ordered) - 1, int(0.99 * len(ordered)))]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=200)
    args = parser.parse_args()

    with tempfile.TemporaryDirectory() as tmp:
        train_sample(Path(tmp))
        api = RecommenderAPI(
            ServedModel.load(Path(tmp), version="1", image_base_url="https://img"),
            feedback_log=Path(tmp),
        )
    ratings = load_movielens(EMBEDDED_MOVIELENS).ratings
    counts = ratings.group_by("user_id").len().sort(["len", "user_id"], descending=True)
    users = {
        "heaviest": counts.row(0),
        "typical": counts.row(counts.height // 2),
    }
    model, state = api.champion.model._fitted()
    print(f"{'user':<10} {'ratings':>7}  {'implementation':<22} {'p50 ms':>8} {'p99 ms':>8}")
    failed = []
    for label, (user_id, n_ratings) in users.items():
        movie_id = api.champion.model.recommend(user_id, k=1).movie_ids[0]
        request = ExplainRequest(user_id=user_id, movie_id=movie_id, n=N)
        row = state.user_items[int(state.users.index_of([user_id])[0])]
        col = int(state.movies.index_of([movie_id])[0])

        def implicit_explain(row=row, col=col) -> list[tuple[int, float]]:
            return model.explain(0, row, col, N=row.nnz)[1][:N]

        new = percentiles_ms(lambda request=request: api.explain(request), args.repeats)
        old = percentiles_ms(implicit_explain, args.repeats)
        print(f"{label:<10} {n_ratings:>7}  {ROW.format('RecommenderAPI.explain', *new)}")
        print(f"{'':<10} {'':>7}  {ROW.format('implicit explain', *old)}")
        served = [(c.movie_id, c.score) for c in api.explain(request).contributions]
        reference = [(int(state.movies.ids[item]), score) for item, score in implicit_explain()]
        same = [m for m, _ in served] == [m for m, _ in reference] and np.allclose(
            [s for _, s in served], [s for _, s in reference], rtol=1e-6
        )
        if not same:
            failed.append(f"{label} user {user_id}: contributions differ from implicit's")
        if label == "heaviest" and new[0] > P50_TARGET_MS:
            failed.append(f"heaviest user p50 {new[0]:.2f} ms > {P50_TARGET_MS} ms")
    passed = f"PASS: p50 <= {P50_TARGET_MS} ms, same answers"
    print("FAIL: " + "; ".join(failed) if failed else passed)
    sys.exit(1 if failed else 0)


if __name__ == "__main__":
    main()
