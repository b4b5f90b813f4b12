"""The simulated audience: the split it comes from, the training part it leaves for the models,
the click model, and the session loop against a scripted loopback server (429s, 503s, errors).
The run against the real service is tests/integration/test_simulate.py."""

from __future__ import annotations

import json
import math
import subprocess
import sys
import threading
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import numpy as np
import polars as pl
import pytest

from recommender.data.movielens import load_movielens
from recommender.experiments.audience import (
    Audience,
    ClickModel,
    SimulationError,
    SimulationResult,
    check_loopback,
    draw_users,
    forwarded_for,
    retry_after_seconds,
    session_rng,
    simulate,
    split_audience,
    write_training_part,
)
from recommender.settings import EMBEDDED_MOVIELENS, PROJECT_ROOT
from support.servers import free_port


def _ratings(counts: dict[int, int]) -> pl.DataFrame:
    """User u rates movies 1..counts[u] (rating 4.0, timestamp = movie id)."""
    rows = [(user, movie) for user, n in counts.items() for movie in range(1, n + 1)]
    users, movies = zip(*rows, strict=True)
    return pl.DataFrame(
        {
            "user_id": list(users),
            "movie_id": list(movies),
            "rating": [4.0] * len(rows),
            "timestamp": list(movies),
        },
        schema={
            "user_id": pl.Int64,
            "movie_id": pl.Int64,
            "rating": pl.Float64,
            "timestamp": pl.Int64,
        },
    )


# --- The split ------------------------------------------------------------------------------
def test_every_user_of_the_audience_holds_out_movies_the_training_part_lacks() -> None:
    ratings = _ratings({1: 10, 2: 10, 3: 5, 4: 1})  # user 4's only rating cannot be held out
    split = split_audience(ratings, test_fraction=0.2, seed=7)

    assert split.audience.user_ids.tolist() == [1, 2, 3]
    assert [len(split.audience.held_out(u)) for u in (1, 2, 3)] == [2, 2, 1]
    pairs = {*zip(split.train["user_id"], split.train["movie_id"], strict=True)}
    held = {(u, int(m)) for u in (1, 2, 3) for m in split.audience.held_out(u)}
    assert not pairs & held
    assert pairs | held == {*zip(ratings["user_id"], ratings["movie_id"], strict=True)}
    assert split.train.height + split.test.height == ratings.height
    assert split.train.columns == ratings.columns
    assert split.audience.pairs == split.test.height == 5


def test_held_out_membership_and_an_unknown_user() -> None:
    audience = Audience.from_pairs(pl.DataFrame({"user_id": [5, 2, 5], "movie_id": [9, 3, 1]}))
    assert audience.user_ids.tolist() == [2, 5]
    assert audience.held_out(5).tolist() == [1, 9]
    assert audience.is_held_out(5, [9, 3, 1, 7]).tolist() == [True, False, True, False]
    with pytest.raises(ValueError, match="user_id 4 is not in the audience"):
        audience.held_out(4)


def test_the_same_seed_gives_the_same_split_and_another_a_different_one() -> None:
    ratings = _ratings({u: 20 for u in range(1, 11)})
    first = split_audience(ratings, seed=1).test
    assert first.equals(split_audience(ratings, seed=1).test)
    assert not first.equals(split_audience(ratings, seed=2).test)


def test_too_few_ratings_for_an_audience() -> None:
    with pytest.raises(ValueError, match="no user holds out a movie"):
        split_audience(_ratings({1: 1, 2: 1}))
    with pytest.raises(ValueError, match="test_fraction"):
        split_audience(_ratings({1: 5}), test_fraction=1.0)


# --- The training part ----------------------------------------------------------------------
def test_the_training_part_reads_back_as_exactly_the_training_ratings(
    ml_latest_dir: Path, tmp_path: Path
) -> None:
    (ml_latest_dir / "README.txt").write_text("licence: keep me with the data\n")
    out = tmp_path / "part"
    split = write_training_part(ml_latest_dir, out, test_fraction=0.5, seed=3)

    assert sorted(p.name for p in out.iterdir()) == [
        "README.txt",
        "links.csv",
        "movies.csv",
        "ratings.csv",
    ]
    back = load_movielens(out)
    assert back.ratings.equals(split.train)
    assert split.train.height == 2 and split.test.height == 2  # each user holds out one of two
    for name in ("movies.csv", "links.csv", "README.txt"):
        assert (out / name).read_bytes() == (ml_latest_dir / name).read_bytes()
    assert (out / "ratings.csv").read_text().splitlines()[0] == "userId,movieId,rating,timestamp"


def test_a_zipped_source_gives_the_same_part(
    ml_latest_dir: Path, tmp_path: Path, make_zip: Callable[..., Path]
) -> None:
    (ml_latest_dir / "README.txt").write_text("licence\n")
    from_dir = write_training_part(ml_latest_dir, tmp_path / "a", test_fraction=0.5, seed=3)
    from_zip = write_training_part(
        make_zip(ml_latest_dir, folder="ml-latest-tiny"), tmp_path / "b", test_fraction=0.5, seed=3
    )
    assert from_zip.train.equals(from_dir.train)
    for name in ("ratings.csv", "movies.csv", "links.csv", "README.txt"):
        assert (tmp_path / "b" / name).read_bytes() == (tmp_path / "a" / name).read_bytes()


def test_an_ml100k_source_is_written_in_the_latest_layout(ml100k_dir: Path, tmp_path: Path) -> None:
    source = load_movielens(ml100k_dir)
    split = write_training_part(ml100k_dir, tmp_path / "part", test_fraction=0.5, seed=0)
    back = load_movielens(tmp_path / "part")
    assert back.source.layout == "ml-latest"
    assert back.ratings.equals(split.train)
    assert back.movies.equals(source.movies)  # titles, years (also from release dates), genres
    assert back.links.is_empty()


def test_the_embedded_sample_keeps_every_movie_and_splits_every_rating(tmp_path: Path) -> None:
    split = write_training_part(EMBEDDED_MOVIELENS, tmp_path / "part")
    assert split.train.height + split.test.height == 100_836
    assert len(split.audience) == 610
    back = load_movielens(tmp_path / "part")
    assert back.movies.height == 9_742 and back.links.height == 9_742
    trained = set(back.ratings["movie_id"].to_list())
    held = split.test.select("user_id", "movie_id").join(
        back.ratings, on=["user_id", "movie_id"], how="semi"
    )
    assert held.is_empty() and len(trained) > 8_000


def test_the_part_is_never_written_over_its_source(ml_latest_dir: Path) -> None:
    with pytest.raises(ValueError, match="out_dir .* is the source directory"):
        write_training_part(ml_latest_dir, ml_latest_dir)


def test_the_command_writes_the_part_without_importing_prefect_or_bentoml(
    ml_latest_dir: Path, tmp_path: Path
) -> None:
    out = tmp_path / "part"
    script = (
        "import sys\n"
        "from flows.cli import main\n"
        f"code = main(['simulate', '--ratings', {str(ml_latest_dir)!r}, '--test-fraction', '0.5',"
        f" '--write-training-part', {str(out)!r}])\n"
        "print(sorted(m for m in ('prefect', 'bentoml', 'mlflow') if m in sys.modules))\n"
        "sys.exit(code)\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", script], cwd=PROJECT_ROOT, capture_output=True, text=True
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.splitlines()[-1] == "[]"
    assert f"movierec data --ratings {out} --no-crawl" in done.stdout
    assert load_movielens(out).ratings.height == 2


# --- Clicks ---------------------------------------------------------------------------------
def test_click_rates_match_the_model_over_many_draws() -> None:
    clicks = ClickModel()
    hits = np.arange(200_000) % 2 == 0
    clicked, liked = clicks.decide(hits, np.random.default_rng(0))
    # Binomial standard deviations: sqrt(p(1-p)/n) ~ 0.0021 (hits), 0.0006 (misses).
    assert clicked[hits].mean() == pytest.approx(0.35, abs=0.01)
    assert clicked[~hits].mean() == pytest.approx(0.02, abs=0.003)
    assert liked[clicked & hits].mean() == pytest.approx(0.5, abs=0.015)
    assert not liked[~hits].any() and not (liked & ~clicked).any()


def test_position_bias_divides_by_a_power_of_the_rank() -> None:
    flat = ClickModel(p_hit=0.4, p_miss=0.1)
    assert flat.click_probabilities(np.array([True, False, True])).tolist() == [0.4, 0.1, 0.4]
    biased = ClickModel(p_hit=0.4, p_miss=0.1, position_bias=1.0)
    assert biased.click_probabilities(np.array([True, False, True, False])) == pytest.approx(
        [0.4, 0.05, 0.4 / 3, 0.025]
    )
    hits = np.ones(10, dtype=bool)
    rates = np.mean(
        [biased.decide(hits, np.random.default_rng(i))[0] for i in range(20_000)], axis=0
    )
    assert rates[0] == pytest.approx(0.4, abs=0.02) and rates[9] == pytest.approx(0.04, abs=0.01)


def test_the_same_seed_user_and_session_make_the_same_decisions() -> None:
    clicks = ClickModel(p_hit=0.5, p_miss=0.5)
    hits = np.arange(50) % 3 == 0
    first = clicks.decide(hits, session_rng(9, 42, 0))
    again = clicks.decide(hits, session_rng(9, 42, 0))
    assert all(np.array_equal(a, b) for a, b in zip(first, again, strict=True))
    others = [clicks.decide(hits, rng)[0] for rng in (session_rng(9, 42, 1), session_rng(8, 42, 0))]
    assert not any(np.array_equal(first[0], other) for other in others)
    audience = Audience.from_pairs(pl.DataFrame({"user_id": [1, 2, 3], "movie_id": [1, 1, 1]}))
    assert np.array_equal(draw_users(audience, n=50, seed=4), draw_users(audience, n=50, seed=4))


@pytest.mark.parametrize(
    ("options", "name"),
    [
        ({"p_hit": 1.5}, "p_hit"),
        ({"p_miss": -0.1}, "p_miss"),
        ({"p_like": math.nan}, "p_like"),
        ({"position_bias": -1.0}, "position_bias"),
        ({"position_bias": math.inf}, "position_bias"),
    ],
)
def test_click_model_parameters_are_checked(options: dict[str, float], name: str) -> None:
    with pytest.raises(ValueError, match=name):
        ClickModel(**options)


def test_each_user_has_an_address_of_their_own() -> None:
    assert forwarded_for(1) == "10.0.0.1"
    assert forwarded_for(65_793) == "10.1.1.1"
    assert forwarded_for(16_777_215) == "10.255.255.255"
    assert len({forwarded_for(u) for u in range(1, 200_001)}) == 200_000


def test_retry_after_is_read_and_capped() -> None:
    assert retry_after_seconds("3") == 3.0
    assert retry_after_seconds(None) == 1.0
    assert retry_after_seconds("soon") == 1.0
    assert retry_after_seconds("3600") == 10.0
    assert retry_after_seconds("Wed, 21 Oct 2015 07:28:00 GMT") == 0.0  # in the past


# --- Where it may send requests ---------------------------------------------------------------
@pytest.mark.parametrize(
    "url",
    ["http://127.0.0.1:3000", "http://localhost:3000/", "http://127.8.9.10", "http://[::1]:3000"],
)
def test_loopback_urls_are_accepted(url: str) -> None:
    assert check_loopback(url) == url.rstrip("/")


@pytest.mark.parametrize(
    ("url", "reason"),
    [
        ("http://example.com", "not loopback"),
        ("http://10.0.0.1:3000", "not loopback"),
        ("http://[::2]:3000", "not loopback"),
        ("http://0.0.0.0:3000", "not loopback"),
        ("ftp://127.0.0.1", "http"),
        ("127.0.0.1:3000", "http"),
    ],
)
def test_other_urls_are_refused_before_any_request(url: str, reason: str) -> None:
    audience = Audience.from_pairs(pl.DataFrame({"user_id": [1], "movie_id": [1]}))
    with pytest.raises(ValueError, match=reason):
        simulate(url, audience, max_requests=1)


@pytest.mark.parametrize(
    ("options", "name"),
    [
        ({"max_requests": 0}, "max_requests"),
        ({"max_seconds": 0}, "max_seconds"),
        ({"concurrency": 0}, "concurrency"),
        ({"concurrency": 65}, "concurrency"),
        ({"k": 0}, "k"),
        ({"seed": -1}, "seed"),
    ],
)
def test_simulation_options_are_checked(options: dict[str, int], name: str) -> None:
    audience = Audience.from_pairs(pl.DataFrame({"user_id": [1], "movie_id": [1]}))
    with pytest.raises(ValueError, match=name):
        simulate("http://127.0.0.1:1", audience, **options)


# --- Sessions against a scripted server -----------------------------------------------------
class _Script:
    """What the scripted service answers and what it received.

    ``/recommend`` shows movies 1..k in order minus the excluded ones; the first request
    answers 503 and the first feedback 429 (``Retry-After: 0``); ``status`` overrides every
    answer.
    """

    def __init__(self, status: int | None = None) -> None:
        self.status = status
        self.lock = threading.Lock()
        self.requests: list[tuple[str, dict, str, int]] = []  # path, body, X-Forwarded-For, status
        self.refused: set[str] = set()
        self.served = 0


def _handler(script: _Script) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"
        disable_nagle_algorithm = True  # headers and body go out as two writes

        def do_POST(self) -> None:
            body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
            with script.lock:
                first = self.path not in script.refused
                script.refused.add(self.path)
                script.served += 1
                serial = script.served
                status = script.status or (
                    (503 if self.path == "/recommend" else 429) if first else 200
                )
                script.requests.append((self.path, body, self.headers["X-Forwarded-For"], status))
            if script.status is not None:
                return self._send(script.status, {"error": "scripted failure"})
            if first:
                return self._send(status, {"error": "later"}, {"Retry-After": "0"})
            if self.path == "/feedback":
                return self._send(200, body)
            movies = [m for m in range(1, 30) if m not in body["exclude_movie_ids"]]
            return self._send(
                200,
                {
                    "model_version": "7",
                    "impression_id": f"{serial:028x}",
                    "fallback": False,
                    "movies": [{"movie_id": m, "score": 1.0} for m in movies[: body["k"]]],
                },
            )

        def _send(self, status: int, body: dict, headers: dict[str, str] | None = None) -> None:
            payload = json.dumps(body).encode()
            self.send_response(status)
            for name, value in {"Content-Type": "application/json", **(headers or {})}.items():
                self.send_header(name, value)
            self.send_header("Content-Length", str(len(payload)))
            self.end_headers()
            self.wfile.write(payload)

        def log_message(self, format: str, *args: object) -> None:
            pass

    return Handler


@pytest.fixture
def scripted() -> Iterator[Callable[..., tuple[str, _Script]]]:
    servers: list[ThreadingHTTPServer] = []

    def start(status: int | None = None) -> tuple[str, _Script]:
        script = _Script(status)
        server = ThreadingHTTPServer(("127.0.0.1", 0), _handler(script))
        server.daemon_threads = True
        threading.Thread(target=server.serve_forever, args=(0.05,), daemon=True).start()
        servers.append(server)
        return f"http://127.0.0.1:{server.server_address[1]}", script

    yield start
    for server in servers:
        server.shutdown()
        server.server_close()


# Users 1..6 each held out movies u and u + 10; the script shows movies 1..29.
AUDIENCE = Audience.from_pairs(
    pl.DataFrame({"user_id": [*range(1, 7)] * 2, "movie_id": [*range(1, 7), *range(11, 17)]})
)


def test_sessions_exclude_earlier_clicks_and_post_them_with_the_impression(
    scripted: Callable[..., tuple[str, _Script]],
) -> None:
    url, script = scripted()
    clicks = ClickModel(p_hit=0.9, p_miss=0.2, p_like=0.5)
    result = simulate(
        url, AUDIENCE, clicks, seed=1, max_requests=60, k=12, keep_impression_ids=True
    )

    assert result.stopped_by == "requests" and result.requests == 60 and result.errors == 0
    assert result.unavailable == 1 and result.rate_limited == 1  # each waited for, then retried
    assert result.impressions == 60 and result.answers_per_arm == {"none": 60}
    assert result.answers_per_model_version == {"7": 60}
    assert result.feedback_accepted == result.clicks + result.likes
    # One user's calls come from one thread in order: each request excludes exactly the movies
    # that user clicked before it.
    clicked: dict[int, list[int]] = {}
    for path, body, xff, status in script.requests:
        user = body["user_id"]
        assert xff == forwarded_for(user)
        if path == "/recommend":
            assert body["exclude_movie_ids"] == clicked.get(user, [])
        elif status == 200 and body["event"] == "click":
            clicked.setdefault(user, []).append(body["movie_id"])
            assert body["impression_id"] in result.impression_ids
        elif status == 200:
            assert body["event"] == "like" and body["movie_id"] in (user, user + 10)
    assert sum(map(len, clicked.values())) == result.clicks > 0
    assert result.held_out_shown > 0 and result.held_out_click_rate > result.other_click_rate


def test_the_same_seed_and_answers_give_the_same_clicks_at_any_concurrency(
    scripted: Callable[..., tuple[str, _Script]],
) -> None:
    clicks = ClickModel(p_hit=0.6, p_miss=0.1)

    def run(seed: int, concurrency: int) -> list[tuple[int, int, str]]:
        url, script = scripted()
        simulate(url, AUDIENCE, clicks, seed=seed, max_requests=40, concurrency=concurrency)
        return sorted(
            (body["user_id"], body["movie_id"], body["event"])
            for path, body, _, status in script.requests
            if path == "/feedback" and status == 200
        )

    assert run(5, 1) == run(5, 4) != run(6, 4)


def test_too_many_errors_stop_the_run_with_what_it_did(
    scripted: Callable[..., tuple[str, _Script]],
) -> None:
    url, _ = scripted(status=422)
    with pytest.raises(SimulationError, match=r"calls failed .* /recommend answered 422") as caught:
        simulate(url, AUDIENCE, max_requests=1000, concurrency=2)
    result = caught.value.result
    assert result is not None and result.stopped_by == "error"
    assert 10 <= result.errors < 1000 and result.impressions == 0
    assert result.error_messages == {"/recommend answered 422: scripted failure": result.errors}


def test_an_unreachable_service_is_named() -> None:
    url = f"http://127.0.0.1:{free_port()}"  # nothing listens there
    with pytest.raises(
        SimulationError, match=f"cannot reach {url}/recommend .* is `bentoml serve`"
    ):
        simulate(url, AUDIENCE)


def test_progress_sees_the_run_under_way(scripted: Callable[..., tuple[str, _Script]]) -> None:
    url, _ = scripted()
    seen: list[SimulationResult] = []
    result = simulate(url, AUDIENCE, max_requests=300, progress=seen.append, progress_seconds=0.01)
    assert seen and {s.stopped_by for s in seen} == {"running"}
    assert [s.requests for s in seen] == sorted(s.requests for s in seen)
    assert seen[-1].requests <= result.requests == 300
