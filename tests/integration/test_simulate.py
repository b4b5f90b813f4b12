"""The simulated audience against a real ``bentoml serve`` of ALS trained on the training part of
the embedded sample: what it gets is in the service's impression log, what it posts is in the
feedback log, it clicks held-out movies more, and it stops at its request and time bounds."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import polars as pl
import pytest

from recommender.data.feedback import read_events
from recommender.experiments.audience import (
    Audience,
    SimulationResult,
    simulate,
    write_training_part,
)
from recommender.serving.impressions import read_impressions
from recommender.settings import EMBEDDED_MOVIELENS, PROJECT_ROOT
from support.sample_model import import_sample
from support.servers import HOST, free_port, running_server

pytestmark = [pytest.mark.integration, pytest.mark.slow]

MODEL_VERSION = "sim-1"


@dataclass(frozen=True)
class Served:
    url: str
    audience: Audience
    data_dir: Path

    @property
    def impression_log(self) -> Path:
        return self.data_dir / "raw" / "impressions" / "impressions.jsonl"

    @property
    def feedback_log(self) -> Path:
        return self.data_dir / "raw" / "feedback" / "events.jsonl"


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Served]:
    """ALS trained on the training part only, served with one client per X-Forwarded-For
    address (the default feedback rate limit applies to each simulated user)."""
    root = tmp_path_factory.mktemp("simulate")
    split = write_training_part(EMBEDDED_MOVIELENS, root / "part")
    tag, _ = import_sample(root / "trained", model_version=MODEL_VERSION, source=root / "part")
    env = {
        **os.environ,  # BENTOML_HOME: the session's (tests/conftest.py)
        "MOVIEREC_DATA_DIR": str(root / "data"),
        "MOVIEREC_BENTO_MODEL_TAG": tag,
        "MOVIEREC_FRONTEND_DIST": str(root / "no-page"),
        "MOVIEREC_TRUSTED_PROXY_HOPS": "1",
    }
    port = free_port()
    command = [sys.executable, "-m", "bentoml", "serve", "bentos.service:MovieRecommender"]
    command += ["--host", HOST, "--port", str(port)]
    log = root / "serve.log"
    with running_server(command, port=port, env=env, cwd=PROJECT_ROOT, log=log) as url:
        yield Served(url=url, audience=split.audience, data_dir=root / "data")


def _logged_impressions(path: Path, ids: frozenset[str], *, timeout: float = 10.0) -> pl.DataFrame:
    """The impression log's records of ``ids``, once all of them are on disk (the service
    writes them in batches, every 0.2 s)."""
    deadline = time.monotonic() + timeout
    while True:
        logged = read_impressions(path) if path.exists() else None
        found = (
            pl.DataFrame() if logged is None else logged.filter(pl.col("impression_id").is_in(ids))
        )
        if found.height == len(ids) or time.monotonic() > deadline:
            return found
        time.sleep(0.2)


def test_what_the_audience_saw_and_did_is_in_the_service_logs(served: Served) -> None:
    result = simulate(
        served.url,
        served.audience,
        seed=11,
        max_requests=300,
        max_seconds=120,
        keep_impression_ids=True,
    )

    assert result.stopped_by == "requests" and result.requests == result.impressions == 300
    assert result.errors == 0 and result.rate_limited == 0  # every simulated user is a client
    assert result.answers_per_model_version == {MODEL_VERSION: 300}
    assert sum(result.answers_per_arm.values()) == 300 and result.fallbacks == 0

    impressions = _logged_impressions(served.impression_log, result.impression_ids)
    assert impressions.height == 300
    assert set(impressions["endpoint"]) == {"recommend"}
    assert set(impressions["model_version"]) == {MODEL_VERSION}

    events = read_events(served.feedback_log).events
    ours = events.filter(pl.col("impression_id").is_in(result.impression_ids))
    assert ours.height == result.feedback_accepted == result.clicks + result.likes > 0
    assert ours["event"].value_counts().sort("event").rows() == [
        ("click", result.clicks),
        ("like", result.likes),
    ]
    # Each event names an answer this user got, and a movie that answer showed.
    shown = ours.join(
        impressions.select("impression_id", "user_key", "movie_ids"), on="impression_id"
    )
    assert shown.height == ours.height
    assert (shown["user_key"] == shown["user_id"].cast(pl.String)).all()
    assert shown.select(pl.col("movie_ids").list.contains(pl.col("movie_id")).all()).item()

    assert result.held_out_shown > 0
    assert result.held_out_click_rate > 3 * result.other_click_rate


def test_the_same_seed_gets_the_same_clicks_from_the_same_model(served: Served) -> None:
    def clicks(result: SimulationResult) -> tuple[int, ...]:
        return (result.movies_shown, result.held_out_shown, result.clicks, result.likes)

    runs = [
        simulate(served.url, served.audience, seed=seed, max_requests=60, max_seconds=60)
        for seed in (5, 5, 6)
    ]
    assert clicks(runs[0]) == clicks(runs[1]) != clicks(runs[2])


def test_the_run_stops_on_time(served: Served) -> None:
    result = simulate(served.url, served.audience, seed=2, max_requests=1_000_000, max_seconds=1.5)
    assert result.stopped_by == "time" and 0 < result.requests < 1_000_000
    assert 1.5 <= result.elapsed_seconds < 3.0  # a session under way finishes its feedback


def _movierec(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "flows.cli", "simulate", *args],
        cwd=PROJECT_ROOT,
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_the_command_prints_one_json_object(served: Served) -> None:
    done = _movierec("--url", served.url, "--requests", "40", "--seed", "3", "--json")
    assert done.returncode == 0, done.stderr
    result = json.loads(done.stdout)
    assert result["requests"] == 40 and result["stopped_by"] == "requests"
    assert result["errors"] == 0 and result["answers_per_model_version"] == {MODEL_VERSION: 40}
    assert result["feedback_accepted"] == result["clicks"] + result["likes"]


@pytest.mark.parametrize(
    ("url", "message"),
    [
        (f"http://{HOST}:{free_port()}", "is `bentoml serve` running?"),
        ("http://example.com:3000", "is not loopback"),
    ],
)
def test_the_command_names_a_url_it_cannot_use(url: str, message: str) -> None:
    done = _movierec("--url", url, "--requests", "5")
    assert done.returncode == 2 and done.stdout == ""
    assert done.stderr.startswith("movierec simulate: error: ")
    assert url in done.stderr and message in done.stderr


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--p-hit", "1.5"], "--p-hit: must be a probability between 0 and 1, got 1.5"),
        (["--position-bias", "-1"], "--position-bias: must be a finite number >= 0"),
        (["--seconds", "0"], "--seconds: must be more than 0"),
        (["--seed", "-3"], "--seed: must be at least 0"),
        (["--concurrency", "65"], "concurrency must be within 1..64, got 65"),
    ],
)
def test_bad_options_say_what_to_fix(args: list[str], message: str) -> None:
    done = _movierec(*args)
    assert done.returncode == 2 and message in done.stderr
    assert "Traceback" not in done.stderr
