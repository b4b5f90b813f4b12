"""``bentoml serve`` against hostile clients: made-up paths and methods (metrics labels), bad
bodies (error messages), half-sent requests (header timeout) and probes while the model loads.

The first tests share the session's server (conftest.py ``served_url``); the others start their
own, each with its own BentoML home (the model store linked in) so that its start does not wipe
the shared server's Prometheus multiprocess directory.
"""

from __future__ import annotations

import os
import re
import secrets
import socket
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx
import pytest

from bentos.metrics import METHODS, OTHER, STATIC, SYSTEM_ROUTES
from recommender.settings import PROJECT_ROOT
from support.servers import HOST, ServingEnv, free_port, running_server

pytestmark = [pytest.mark.integration]

API_ROUTES = {
    "/recommend",
    "/recommend_for_liked",
    "/similar",
    "/popular",
    "/movies",
    "/explain",
    "/feedback",
}


def _sample(metrics: str, name: str, **labels: str) -> float:
    """The value of one series in Prometheus text format, 0 when it is absent. (The
    multiprocess collector writes labels in alphabetical order.)"""
    series = name + "{" + ",".join(f'{k}="{v}"' for k, v in sorted(labels.items())) + "} "
    for line in metrics.splitlines():
        if line.startswith(series):
            return float(line.rsplit(" ", 1)[1])
    return 0.0


REQUESTS, DURATION = "movierec_http_requests_total", "movierec_http_request_duration_seconds"


# --- /metrics: labels from a fixed set -------------------------------------------------------
def test_made_up_paths_and_methods_add_no_metrics_series(served_url: str) -> None:
    tokens = [secrets.token_hex(6) for _ in range(300)]
    with httpx.Client(base_url=served_url, timeout=30) as client:
        # One request of each kind first, so that the series they need exist before.
        for path in ("/x", "/assets/x.js", "/x/y.css"):
            client.get(path)
        client.request("BREW", "/recommend")
        before = client.get("/metrics").text
        for i, token in enumerate(tokens):
            path = (f"/x{token}", f"/assets/{token}.js", f"/{token}/{token}.css")[i % 3]
            assert client.get(path).status_code == 404
        for token in tokens[:20]:
            assert client.request(f"M{token}".upper(), "/recommend").status_code == 405
        after = client.get("/metrics").text

    assert not [token for token in tokens if token in after]
    assert len(after) <= 1.05 * len(before)
    routes = set(re.findall(r'\broute="([^"]*)"', after))
    assert API_ROUTES <= routes <= API_ROUTES | SYSTEM_ROUTES | {STATIC, OTHER}
    assert set(re.findall(r'\bmethod="([^"]*)"', after)) <= METHODS | {OTHER}
    assert not re.search(r'\bendpoint="/(x|assets)', after)  # BentoML's raw-path labels
    assert _sample(after, REQUESTS, route=OTHER, method="GET", status="404") >= 200
    assert _sample(after, REQUESTS, route=STATIC, method="GET", status="404") >= 100
    assert _sample(after, REQUESTS, route="/recommend", method=OTHER, status="405") >= 20


def test_metrics_sum_the_requests_of_both_workers(served_url: str) -> None:
    """Every request on its own connection, from 4 threads, so that both workers serve some."""
    served = {"route": "/popular", "method": "POST", "status": "200"}
    first = httpx.get(f"{served_url}/metrics", timeout=30).text
    statuses: list[int] = []

    def send() -> None:
        for _ in range(15):
            answer = httpx.post(f"{served_url}/popular", json={"k": 2}, timeout=30)
            statuses.append(answer.status_code)

    threads = [threading.Thread(target=send) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    then = httpx.get(f"{served_url}/metrics", timeout=30).text
    assert statuses == [200] * 60
    assert _sample(then, REQUESTS, **served) - _sample(first, REQUESTS, **served) == 60
    count = DURATION + "_count"
    assert _sample(then, count, route="/popular") - _sample(first, count, route="/popular") == 60
    assert f'{DURATION}_bucket{{le="0.005",route="/explain"}}' in then  # exported from the start
    impressions = "movierec_impressions_total"
    assert _sample(then, impressions, endpoint="popular", model_version="1") >= 60
    # Both workers write into the directory /metrics reads (each exports its zeros at start).
    directory = Path(os.environ["BENTOML_HOME"]) / "prometheus_multiproc_dir"
    assert len({path.stem.split("_")[-1] for path in directory.glob("histogram_*.db")}) == 2


# --- 400 answers say what to fix --------------------------------------------------------------
BAD_BODIES = [
    # (endpoint, body, the field the answer must name)
    ("/recommend", {"user_id": "one"}, "user_id"),
    ("/recommend", {"k": 3}, "user_id"),
    ("/recommend", {"user_id": 1, "colour": "red"}, "colour"),
    ("/recommend", {"user_id": 1, "k": 101}, "k"),
    ("/recommend_for_liked", {"liked_movie_ids": [1, "two"]}, "liked_movie_ids.1"),
    ("/recommend_for_liked", {"k": 3}, "liked_movie_ids"),
    ("/recommend_for_liked", {"liked_movie_ids": [1], "likes": [2]}, "likes"),
    ("/recommend_for_liked", {"liked_movie_ids": [1], "k": 0}, "k"),
    ("/similar", {"movie_id": [1]}, "movie_id"),
    ("/similar", {}, "movie_id"),
    ("/similar", {"movie_id": 1, "user_id": 1}, "user_id"),
    ("/similar", {"movie_id": 1, "k": 500}, "k"),
    ("/popular", {"k": "ten"}, "k"),
    ("/popular", {"genres": ["Comedy"]}, "genres"),
    ("/popular", {"k": -1}, "k"),
    ("/movies", {"page": "first"}, "page"),
    ("/movies", {"search": "toy"}, "search"),
    ("/movies", {"page_size": 1000}, "page_size"),
    ("/explain", {"user_id": 1, "movie_id": "one"}, "movie_id"),
    ("/explain", {"user_id": 1}, "movie_id"),
    ("/explain", {"user_id": 1, "movie_id": 1, "why": True}, "why"),
    ("/explain", {"user_id": 1, "movie_id": 1, "n": 0}, "n"),
    ("/feedback", {"user_id": 1, "movie_id": 1, "event": 5}, "event"),
    ("/feedback", {"user_id": 1, "movie_id": 1}, "event"),
    ("/feedback", {"user_id": 1, "movie_id": 1, "event": "like", "stars": 5}, "stars"),
    ("/feedback", {"user_id": 1, "movie_id": 1, "event": "rating", "value": 9}, "value"),
]


@pytest.mark.parametrize(("path", "body", "field"), BAD_BODIES)
def test_a_refused_body_is_a_400_naming_the_field(
    served_url: str, path: str, body: dict[str, object], field: str
) -> None:
    answer = httpx.post(f"{served_url}{path}", json=body, timeout=30)
    assert answer.status_code == 400
    assert "IODescriptor" not in answer.text
    error = answer.json()
    assert list(error) == ["error"]  # the shape of the API's other 4xx answers
    assert error["error"].startswith(f"{field}: ")
    assert int(answer.headers["content-length"]) == len(answer.content)


@pytest.mark.parametrize(
    ("body", "says"),
    [
        (b"[1, 2]", "request body: Input should be an object"),
        (b'{"user_id": 1', "request body: Invalid JSON"),
        (b'{"user_id": "x", "k": 0}', "user_id: Input should be a valid integer; k: "),
    ],
)
def test_a_body_refused_as_a_whole_says_why(served_url: str, body: bytes, says: str) -> None:
    answer = httpx.post(
        f"{served_url}/recommend", content=body, headers={"content-type": "application/json"}
    )
    assert answer.status_code == 400 and answer.json()["error"].startswith(says)


# --- a server of its own ----------------------------------------------------------------------
@contextmanager
def _own_server(
    serving_env: ServingEnv, tmp_path: Path, env: dict[str, str] | None = None
) -> Iterator[str]:
    """``bentoml serve`` in a BentoML home of its own holding the session's model store; yield
    its URL at once (not waiting for it to be ready)."""
    home = tmp_path / "bentoml"
    home.mkdir()
    (home / "models").symlink_to(Path(os.environ["BENTOML_HOME"]) / "models")
    port = free_port()
    command = [sys.executable, "-m", "bentoml", "serve", "bentos.service:MovieRecommender"]
    command += ["--host", HOST, "--port", str(port)]
    with running_server(
        command,
        port=port,
        env={**os.environ, **serving_env.env, "BENTOML_HOME": str(home), **(env or {})},
        cwd=PROJECT_ROOT,
        log=tmp_path / "serve.log",
        wait_ready=False,
    ) as url:
        yield url


def _first_answer(method: str, url: str, body: object = None) -> httpx.Response:
    """The answer to a request sent as soon as the server's socket accepts connections."""
    deadline = time.monotonic() + 180
    while True:
        try:
            return httpx.request(method, url, json=body, timeout=httpx.Timeout(180, connect=1))
        except httpx.ConnectError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.02)


# --- probes while the model loads -------------------------------------------------------------
def test_probes_answer_while_the_model_loads(serving_env: ServingEnv, tmp_path: Path) -> None:
    """Requests queued from the moment BentoML binds its socket are the first a worker serves,
    right after the service's __init__: before the model can have loaded (seconds)."""
    with _own_server(serving_env, tmp_path) as url:
        requests = {
            "readyz": ("GET", f"{url}/readyz", None),
            "livez": ("GET", f"{url}/livez", None),
            "recommend": ("POST", f"{url}/recommend", {"user_id": 1, "k": 3}),
        }
        answers: dict[str, httpx.Response] = {}

        def ask(name: str) -> None:
            answers[name] = _first_answer(*requests[name])

        threads = [threading.Thread(target=ask, args=(name,)) for name in requests]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        assert answers["readyz"].status_code == 503
        assert answers["livez"].status_code == 200
        loading = answers["recommend"]
        assert loading.status_code == 503 and loading.headers["retry-after"] == "5"
        assert "loading" in loading.json()["error"]

        deadline = time.monotonic() + 120
        while (probe := httpx.get(f"{url}/readyz", timeout=10)).status_code == 503:
            assert time.monotonic() < deadline
            time.sleep(0.1)
        assert probe.status_code == 200
        served = httpx.post(f"{url}/recommend", json={"user_id": 1, "k": 3}, timeout=30)
        assert served.status_code == 200 and served.json()["model_version"] == "1"


# --- half-sent requests -----------------------------------------------------------------------
HEADER_TIMEOUT = 2.0
HALF_SENT = [
    b"",  # connect, send nothing
    b"GET /livez HT",  # part of the request line
    b"POST /recommend HTTP/1.1\r\nHost: movierec\r\nContent-Type: appl",  # part of the headers
]


def test_half_sent_requests_are_closed_after_the_header_timeout(
    serving_env: ServingEnv, tmp_path: Path
) -> None:
    env = {"MOVIEREC_SERVE_HEADER_TIMEOUT_SECONDS": str(HEADER_TIMEOUT)}
    with _own_server(serving_env, tmp_path, env) as url:
        deadline = time.monotonic() + 180
        while _first_answer("GET", f"{url}/readyz").status_code != 200:
            assert time.monotonic() < deadline
            time.sleep(0.1)
        port = int(url.rsplit(":", 1)[1])
        sockets = []
        for i in range(60):
            sock = socket.create_connection((HOST, port), timeout=1)
            sock.sendall(HALF_SENT[i % len(HALF_SENT)])
            sockets.append(sock)
        trickle = socket.create_connection((HOST, port), timeout=1)  # a byte every 0.25 s
        opened = time.monotonic()

        # A normal request is served meanwhile.
        answer = httpx.post(f"{url}/recommend", json={"user_id": 1, "k": 3}, timeout=10)
        assert answer.status_code == 200

        slack = 6.0
        for byte in b"GET /livez HTTP/1.1\r\nHost: movierec\r\nX-Slow: " + b"a" * 200:
            try:
                trickle.sendall(bytes([byte]))
            except OSError:  # closed by the server
                break
            assert time.monotonic() - opened < HEADER_TIMEOUT + slack, "the trickle was kept"
            time.sleep(0.25)
        for sock in sockets:
            sock.settimeout(max(0.01, opened + HEADER_TIMEOUT + slack - time.monotonic()))
            try:
                assert sock.recv(1024) == b""  # closed, without an answer
            except ConnectionResetError:
                pass
            except TimeoutError:
                pytest.fail(f"a half-sent request was still open {HEADER_TIMEOUT + slack} s on")
            finally:
                sock.close()
        trickle.close()
