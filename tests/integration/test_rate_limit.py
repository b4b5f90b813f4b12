"""The feedback rate limit on ``bentoml serve``: one worker, behind one trusted proxy hop.

The test client plays the Ingress controller: it sets ``X-Forwarded-For`` to the address of
the client it forwards. With one worker the whole limit is in one process, so the burst is
exact (docs/threat-model.md says how workers compose).
"""

from __future__ import annotations

import os
import sys
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from recommender.data.feedback import read_events
from recommender.settings import PROJECT_ROOT
from support.servers import HOST, ServingEnv, free_port, running_server

pytestmark = [pytest.mark.integration]

BURST = 5
FLOOD = 20
NO_MOVIE = 99_999_999


@pytest.fixture(scope="module")
def server(
    serving_env: ServingEnv, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[tuple[str, Path]]:
    """``bentoml serve`` with 1 feedback event a minute after a burst of 5, one trusted hop;
    yields its URL and its feedback log."""
    root = tmp_path_factory.mktemp("rate-limit")
    port = free_port()
    command = [sys.executable, "-m", "bentoml", "serve", "bentos.service:MovieRecommender"]
    command += ["--host", HOST, "--port", str(port)]
    env = {
        **os.environ,
        **serving_env.env,
        "MOVIEREC_DATA_DIR": str(root / "data"),
        "MOVIEREC_FEEDBACK_RATE_PER_MINUTE": "1",
        "MOVIEREC_FEEDBACK_BURST": str(BURST),
        "MOVIEREC_TRUSTED_PROXY_HOPS": "1",
        "BENTOML_CONFIG_OPTIONS": "services.MovieRecommender.workers=1",
    }
    with running_server(
        command, port=port, env=env, cwd=PROJECT_ROOT, log=root / "serve.log"
    ) as url:
        yield url, root / "data" / "raw" / "feedback" / "events.jsonl"


def feedback(client: httpx.Client, address: str, user_id: int, movie_id: int = 1) -> httpx.Response:
    event = {"user_id": user_id, "movie_id": movie_id, "event": "view"}
    return client.post("/feedback", json=event, headers={"X-Forwarded-For": address})


def test_a_flooding_client_gets_429_after_its_burst_and_others_are_served(
    server: tuple[str, Path],
) -> None:
    url, log = server
    with httpx.Client(base_url=url, timeout=30) as client:
        flood = [feedback(client, "203.0.113.7", 7_000 + n) for n in range(FLOOD)]
        assert [answer.status_code for answer in flood] == [200] * BURST + [429] * (FLOOD - BURST)
        refused = flood[-1]
        assert 1 <= int(refused.headers["Retry-After"]) <= 60
        assert "retry after" in refused.json()["error"]
        # Addresses left of the one the trusted proxy appended are the client's own words.
        spoofed = feedback(client, "198.51.100.1, 203.0.113.7", 7_100)
        assert spoofed.status_code == 429
        other = feedback(client, "203.0.113.8", 8_000)
        assert other.status_code == 200
        # Reads are not limited.
        reads = [client.post("/popular", json={"k": 3}).status_code for _ in range(FLOOD)]
        assert reads == [200] * FLOOD
        metrics = client.get("/metrics").text
    assert 'movierec_requests_rate_limited_total{path="/feedback"} 16.0' in metrics
    accepted = {7_000 + n for n in range(BURST)} | {8_000}
    logged = read_events(log).events["user_id"].to_list()
    assert sorted(logged) == sorted(accepted)  # every 200 is logged once, no 429 is


def test_feedback_for_a_movie_outside_the_catalog_is_refused(server: tuple[str, Path]) -> None:
    url, _ = server
    with httpx.Client(base_url=url, timeout=30) as client:
        answer = feedback(client, "203.0.113.20", 9_000, movie_id=NO_MOVIE)
    assert answer.status_code == 404
    assert str(NO_MOVIE) in answer.json()["error"]
    assert answer.json()["unknown_movie_ids"] == [NO_MOVIE]
