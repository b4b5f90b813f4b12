"""The service over HTTP: every endpoint and its errors in process, then ``bentoml serve``.

The model is ALS trained on the embedded MovieLens sample (see conftest.py), so ids are real:
user 1 exists, movie 1 is Toy Story, 99999999 is no movie.
"""

from __future__ import annotations

import gc
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from recommender.data.feedback import read_events
from support.servers import ServingEnv

pytestmark = [
    pytest.mark.integration,
]

TOY_STORY, TOY_STORY_2, NO_MOVIE = 1, 3114, 99_999_999
MOVIE_FIELDS = {"movie_id", "title", "year", "genres", "poster_url", "overview"}
JSON = {"content-type": "application/json"}


@pytest.fixture(scope="module")
def client(service_url: str) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=service_url, timeout=30) as client:
        yield client


def post(client: httpx.Client, path: str, body: Any) -> httpx.Response:
    return client.post(path, json=body)


# --- every endpoint -------------------------------------------------------------------------
def test_recommend_answers_movies_with_details_and_the_model_version(client: httpx.Client) -> None:
    answer = post(client, "/recommend", {"user_id": 1, "k": 5})
    assert answer.status_code == 200
    body = answer.json()
    assert body["model_version"] == "1" and body["fallback"] is False
    assert len(body["movies"]) == 5
    assert all(set(movie) == MOVIE_FIELDS | {"score"} for movie in body["movies"])
    scores = [movie["score"] for movie in body["movies"]]
    assert scores == sorted(scores, reverse=True)


def test_recommend_excludes_and_restricts_to_genres(client: httpx.Client) -> None:
    first = post(client, "/recommend", {"user_id": 1, "k": 3}).json()["movies"][0]["movie_id"]
    body = post(
        client,
        "/recommend",
        {"user_id": 1, "k": 10, "exclude_movie_ids": [first], "genres": ["Comedy"]},
    ).json()
    assert first not in [movie["movie_id"] for movie in body["movies"]]
    assert all("Comedy" in movie["genres"] for movie in body["movies"])


def test_an_unknown_user_gets_popular_movies_flagged_as_fallback(client: httpx.Client) -> None:
    body = post(client, "/recommend", {"user_id": 99_999, "k": 4}).json()
    popular = post(client, "/popular", {"k": 4}).json()
    assert body["fallback"] is True and popular["fallback"] is False
    assert body["movies"] == popular["movies"]


def test_recommend_for_liked_folds_in_a_visitor(client: httpx.Client) -> None:
    body = post(
        client, "/recommend_for_liked", {"liked_movie_ids": [TOY_STORY, TOY_STORY_2], "k": 5}
    ).json()
    ids = [movie["movie_id"] for movie in body["movies"]]
    assert len(ids) == 5 and not {TOY_STORY, TOY_STORY_2} & set(ids)
    assert body["fallback"] is False and body["model_version"] == "1"


def test_similar_and_popular(client: httpx.Client) -> None:
    similar = post(client, "/similar", {"movie_id": TOY_STORY, "k": 3}).json()
    similar_ids = [movie["movie_id"] for movie in similar["movies"]]
    assert len(similar_ids) == 3 and TOY_STORY not in similar_ids
    comedies = post(client, "/popular", {"k": 5, "genre": "Comedy"}).json()
    assert len(comedies["movies"]) == 5
    assert all("Comedy" in movie["genres"] for movie in comedies["movies"])


def test_movies_searches_titles_and_paginates(client: httpx.Client) -> None:
    first = post(client, "/movies", {"query": "toy STORY", "page": 1, "page_size": 2}).json()
    assert first["total"] >= 3 and (first["page"], first["page_size"]) == (1, 2)
    assert [movie["movie_id"] for movie in first["items"]] == [TOY_STORY, TOY_STORY_2]
    assert all(set(movie) == MOVIE_FIELDS for movie in first["items"])
    second = post(client, "/movies", {"query": "toy story", "page": 2, "page_size": 2}).json()
    assert all("toy story" in movie["title"].lower() for movie in second["items"])
    beyond = post(client, "/movies", {"query": "toy story", "page": 99}).json()
    assert beyond["items"] == [] and beyond["total"] == first["total"]


def test_explain_names_the_contributing_movies(client: httpx.Client) -> None:
    recommended = post(client, "/recommend", {"user_id": 1, "k": 1}).json()["movies"][0]
    body = post(client, "/explain", {"user_id": 1, "movie_id": recommended["movie_id"]}).json()
    assert body["movie"]["title"] == recommended["title"] and body["model_version"] == "1"
    assert 0 < len(body["contributions"]) <= 10
    assert all(-1 <= part["share"] <= 1 and part["title"] for part in body["contributions"])


def test_feedback_is_appended_to_the_log(client: httpx.Client, serving_env: ServingEnv) -> None:
    event = {"user_id": 5, "movie_id": TOY_STORY, "event": "rating", "value": 4.5}
    answer = post(client, "/feedback", event)
    assert answer.status_code == 200
    stored = answer.json()
    assert stored["timestamp"] > 0 and {k: stored[k] for k in event} == event
    log = read_events(serving_env.feedback_log)
    assert stored in log.events.to_dicts()


def test_health_and_the_web_page(client: httpx.Client, serving_env: ServingEnv) -> None:
    assert client.get("/livez").status_code == 200
    assert client.get("/readyz").status_code == 200
    assert client.get("/").text == (serving_env.frontend_dist / "index.html").read_text()
    assert client.get("/assets/app.js").status_code == 200
    assert client.get("/docs.json").json()["paths"]["/recommend"]["post"]


def test_finished_requests_are_not_kept_alive(client: httpx.Client) -> None:
    """A request must not outlive its response (see bentos.service.IsolateResponseContext)."""
    for user_id in range(1, 201):
        assert post(client, "/recommend", {"user_id": user_id, "k": 3}).status_code == 200
    gc.collect()
    alive = sum(type(o).__name__ == "RequestResponseCycle" for o in gc.get_objects())
    assert alive <= 2  # the keep-alive connection's current one


# --- bad input: always a 4xx that says what to fix ------------------------------------------
@pytest.mark.parametrize(
    ("path", "body", "status", "says"),
    [
        ("/similar", {"movie_id": NO_MOVIE}, 404, "use ids from /movies"),
        ("/recommend_for_liked", {"liked_movie_ids": [TOY_STORY, NO_MOVIE]}, 404, "99999999"),
        ("/feedback", {"user_id": 1, "movie_id": NO_MOVIE, "event": "like"}, 404, "99999999"),
        ("/explain", {"user_id": 99_999, "movie_id": TOY_STORY}, 404, "unknown user id 99999"),
        ("/popular", {"genre": "Nope"}, 422, "known: Action"),
        ("/recommend", {"user_id": 1, "genres": ["Nope"]}, 422, "unknown genre"),
        ("/recommend", {"user_id": 1, "k": 0}, 400, "greater than or equal to 1"),
        ("/recommend", {"user_id": 1, "k": 101}, 400, "less than or equal to 100"),
        ("/recommend", {"user_id": "one"}, 400, "valid integer"),
        ("/recommend", {"user_id": True}, 400, "valid integer"),
        ("/recommend", {}, 400, "Field required"),
        ("/recommend", {"user_id": 1, "userId": 1}, 400, "Extra inputs"),
        ("/recommend", [1, 2], 400, "request body: Input should be an object"),
        ("/recommend_for_liked", {"liked_movie_ids": []}, 400, "at least 1 item"),
        ("/recommend_for_liked", {"liked_movie_ids": [1] * 501}, 400, "at most 500 items"),
        ("/feedback", {"user_id": 1, "movie_id": 1, "event": "rating"}, 400, "needs a value"),
        ("/feedback", {"user_id": 1, "movie_id": 1, "event": "love"}, 400, "'view'"),
        ("/movies", {"page": 0}, 400, "greater than or equal to 1"),
        ("/movies", {"page_size": 1000}, 400, "less than or equal to 100"),
    ],
)
def test_bad_input_is_a_4xx_with_a_message(
    client: httpx.Client, path: str, body: Any, status: int, says: str
) -> None:
    answer = post(client, path, body)
    assert answer.status_code == status
    assert says in answer.text
    assert "error" in answer.json()


def test_malformed_json_is_a_400(client: httpx.Client) -> None:
    answer = client.post("/recommend", content=b'{"user_id": 1', headers=JSON)
    assert answer.status_code == 400 and "json" in answer.text.lower()


def test_a_body_that_is_not_json_is_a_415(client: httpx.Client) -> None:
    answer = client.post("/similar", data={"movie_id": "1"})
    assert answer.status_code == 415 and "application/json" in answer.json()["error"]


@pytest.mark.parametrize("chunked", [False, True])
def test_an_oversized_body_is_a_413(client: httpx.Client, chunked: bool) -> None:
    body = b'{"user_id": 1, "exclude_movie_ids": [' + b"1, " * 30_000 + b"1]}"
    content = iter([body[:40_000], body[40_000:]]) if chunked else body
    answer = client.post("/recommend", content=content, headers=JSON)
    assert answer.status_code == 413 and "at most 500 ids" in answer.json()["error"]


def test_a_chunked_body_within_the_limit_is_served(client: httpx.Client) -> None:
    answer = client.post("/recommend", content=iter([b'{"user_id"', b": 1}"]), headers=JSON)
    assert answer.status_code == 200


def test_the_wrong_method_is_a_405(client: httpx.Client) -> None:
    assert client.get("/recommend").status_code == 405


# --- bentoml serve ----------------------------------------------------------------------------
def test_bentoml_serve_answers_and_counts(served_url: str) -> None:
    with httpx.Client(base_url=served_url, timeout=30) as client:
        assert client.get("/livez").status_code == 200
        known = post(client, "/recommend", {"user_id": 1, "k": 3})
        assert known.status_code == 200 and known.json()["model_version"] == "1"
        assert post(client, "/recommend", {"user_id": 99_999}).json()["fallback"] is True
        assert post(client, "/feedback", {"user_id": 9, "movie_id": 1, "event": "click"}).is_success
        metrics = client.get("/metrics").text
    assert 'movierec_http_requests_total{method="POST",route="/recommend",status="200"}' in metrics
    labels = 'endpoint="recommend",model_version="1"'
    assert _sample(metrics, f"movierec_impressions_total{{{labels}}}") >= 2
    assert _sample(metrics, f"movierec_recommendation_fallbacks_total{{{labels}}}") >= 1
    assert _sample(metrics, 'movierec_feedback_events_total{event="click",model_version="1"}') >= 1


def test_concurrent_feedback_writers_lose_and_tear_nothing(
    served_url: str, serving_env: ServingEnv
) -> None:
    writers, per_writer, first_user = 32, 8, 7_346_219_000
    sent_at = float(int(time.time()) - 3600)  # an hour ago: within the accepted window
    start = threading.Barrier(writers)
    statuses: list[int] = []

    def write(writer: int) -> None:
        with httpx.Client(base_url=served_url, timeout=60) as client:
            start.wait()
            for i in range(per_writer):
                event = {
                    "user_id": first_user + writer,
                    "movie_id": TOY_STORY + i,
                    "event": "rating",
                    "value": 0.5 * (1 + i % 10),
                    "timestamp": sent_at + i,
                }
                statuses.append(post(client, "/feedback", event).status_code)

    threads = [threading.Thread(target=write, args=(w,)) for w in range(writers)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert statuses == [200] * writers * per_writer

    log = read_events(serving_env.feedback_log)
    assert log.rejected.is_empty() and log.torn_tail is None
    mine = log.events.filter(log.events["user_id"] >= first_user)
    expected = {
        (first_user + w, TOY_STORY + i, 0.5 * (1 + i % 10), sent_at + i)
        for w in range(writers)
        for i in range(per_writer)
    }
    assert mine.height == len(expected)
    assert set(mine.select("user_id", "movie_id", "value", "timestamp").rows()) == expected
    lines = serving_env.feedback_log.read_bytes().count(b"\n")
    assert lines == log.events.height  # one line per event, nothing else


def test_schemathesis_finds_no_server_error(served_url: str, tmp_path: Path) -> None:
    run = subprocess.run(
        [sys.executable, "-m", "schemathesis.cli", "run", f"{served_url}/docs.json"]
        + ["--checks", "not_a_server_error", "--max-time", "25", "--workers", "2"]
        + ["--exclude-path", "/metrics"],
        cwd=tmp_path,  # its example database goes here, not into the repository
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert run.returncode == 0, run.stdout[-4000:] + run.stderr[-2000:]
    assert " passed" in run.stdout


def _sample(metrics: str, series: str) -> float:
    """The value of one series in Prometheus text format."""
    for line in metrics.splitlines():
        if line.startswith(series):
            return float(line.rsplit(" ", 1)[1])
    raise AssertionError(f"{series} not in /metrics")
