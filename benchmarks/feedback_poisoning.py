"""The issue-10 poisoning scenario: fake ``view`` events for one movie, fed into a data dir with
the demo data, then ``movierec data --no-crawl`` and the training features. Prints, per
scenario, the movie's popularity (distinct users, as the served popularity and the popularity
baseline count them) and rank against the most popular other movie, the users in the processed
interactions and in the features, and the rows the processed interactions hold for the movie.

    uv run python benchmarks/feedback_poisoning.py                 # 15,000 events for movie 1
    uv run python benchmarks/feedback_poisoning.py --events 3000

Scenarios: ``many-users`` (one event from each of N fake user ids), ``one-user`` (N events
from one fake user) and ``five-movies`` (N / 5 fake users, each viewing the movie and the four
after it: an attacker who knows the minimum of distinct movies; the cap of new users per run
bounds it). Each runs in a fresh temporary data dir (about 30 s: Prefect's ephemeral
server starts once per run). Target: the fake events add no user and no popularity, and in
``five-movies`` no more than the cap of each (exit 1 otherwise).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import polars as pl

from recommender.data.feedback import FeedbackEvent, append_events
from recommender.features.build import build_feature_tables

FAKE_USER_BASE = 1_000_000
SCENARIOS = ("many-users", "one-user", "five-movies")


def _fake_events(scenario: str, events: int, movie_id: int) -> list[FeedbackEvent]:
    now = time.time()
    user = {"many-users": lambda n: n, "one-user": lambda n: 0, "five-movies": lambda n: n // 5}
    # five-movies: each fake user also views the four movies after the promoted one, to pass
    # the minimum of distinct movies.
    movie = (lambda n: movie_id + n % 5) if scenario == "five-movies" else (lambda n: movie_id)
    return [
        FeedbackEvent(
            user_id=FAKE_USER_BASE + user[scenario](n),
            movie_id=movie(n),
            event="view",
            timestamp=now + n / 1000,
        )
        for n in range(events)
    ]


def _run_data_flow(data_dir: Path) -> None:
    env = {
        **os.environ,
        "MOVIEREC_DATA_DIR": str(data_dir),
        "PREFECT_HOME": str(data_dir / "prefect"),
        "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
        "PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS": "120",
    }
    env.pop("TMDB_API_KEY", None)
    env.pop("TMDB_API_TOKEN", None)
    subprocess.run(
        [sys.executable, "-m", "flows.cli", "data", "--no-crawl"],
        env=env,
        check=True,
        stdout=subprocess.DEVNULL,
    )


def measure(scenario: str, events: int, movie_id: int) -> dict[str, float | int]:
    """Feed the fake events, run the data flow and the features; return the figures."""
    with tempfile.TemporaryDirectory(prefix="movierec-poison-") as tmp:
        data_dir = Path(tmp)
        append_events(
            data_dir / "raw" / "feedback" / "events.jsonl", _fake_events(scenario, events, movie_id)
        )
        _run_data_flow(data_dir)
        processed = data_dir / "processed"
        interactions = pl.read_parquet(processed / "interactions.parquet")
        movies = pl.read_parquet(processed / "movies.parquet")
        manifest = json.loads((processed / "manifest.json").read_text())
    admission = [s for s in manifest["validation"] if s["table"] == "feedback_users"]
    features = build_feature_tables(interactions, movies)
    counts = features["movie_features"].sort(["rating_count", "movie_id"], descending=[True, False])
    target = counts.filter(movie_id=movie_id)["rating_count"].item()
    best_other = counts.filter(pl.col("movie_id") != movie_id)["rating_count"].max()
    rank = counts["movie_id"].to_list().index(movie_id) + 1
    genuine = interactions.filter(source="movielens")
    return {
        "popularity (users)": target,
        "popularity added by the fake events": target
        - genuine.filter(movie_id=movie_id)["user_id"].n_unique(),
        "rank": rank,
        "ratio to the most popular other movie": target / best_other,
        "users in interactions.parquet": interactions["user_id"].n_unique(),
        "users added by the fake events": interactions["user_id"].n_unique()
        - genuine["user_id"].n_unique(),
        "users in the features": features["user_features"].height,
        f"rows of movie {movie_id} in interactions.parquet": interactions.filter(
            movie_id=movie_id
        ).height,
        # The code before the admission rules has no cap: every new user entered.
        "cap of new users": admission[0]["max_new_users"] if admission else events,
    }


def main(argv: list[str] | None = None) -> int:
    """Run the scenarios and print their figures."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=15_000, help="fake view events")
    parser.add_argument("--movie", type=int, default=1, help="the movie they promote")
    parser.add_argument("--scenario", choices=SCENARIOS, action="append", help="default: all")
    args = parser.parse_args(argv)
    failed = False
    for scenario in args.scenario or SCENARIOS:
        figures = measure(scenario, args.events, args.movie)
        print(f"{scenario}: {args.events:,} fake view events for movie {args.movie}")
        for name, value in figures.items():
            shown = f"{value:.2f}" if isinstance(value, float) else f"{value:,}"
            print(f"  {name}: {shown}")
        added = figures["users added by the fake events"]
        boost = figures["popularity added by the fake events"]
        if scenario == "five-movies":
            cap = int(figures["cap of new users"])
            ok = added <= cap and boost <= cap
            target = f"the fake events add at most the cap of {cap:,} users and popularity"
        else:
            ok = added == 0 and boost == 0
            target = "the fake events add no user and no popularity"
        failed |= not ok
        print(f"  {'PASS' if ok else 'FAIL'}: {target}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
