"""The crawler's machinery (rate limit, retries, stores, resume) against a real fake TMDB server."""

from __future__ import annotations

import json
import logging
import math
import signal
import socket
import subprocess
import sys
import threading
import time
from collections import Counter
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from email.utils import format_datetime
from pathlib import Path
from typing import Any

import pytest
import requests
from pydantic import SecretStr

from recommender.data.crawler import (
    CorruptStoreError,
    RateLimiter,
    RetryPolicy,
    is_transient,
    parse_retry_after,
    read_jsonl,
)
from recommender.data.logs import AppendLog
from recommender.data.tmdb import LIST_PATHS, TMDBAuthError, TMDBCrawler, load_tmdb_details
from support.fake_tmdb import (
    BAD_GATEWAY,
    DROPPED,
    MALFORMED_JSON,
    NOT_FOUND,
    NOT_JSON,
    RATE_LIMITED,
    SERVER_ERROR,
    UNAVAILABLE,
    WRONG_SHAPE,
    FakeTMDB,
    Fault,
    max_in_window,
    slow,
)

FAST_RETRY = RetryPolicy(max_attempts=3, base_delay=0.01, max_delay=2.0)


@pytest.fixture
def fake() -> Iterator[FakeTMDB]:
    with FakeTMDB(movies=40) as server:
        yield server


def make_crawler(fake: FakeTMDB, raw_dir: Path, **options: Any) -> TMDBCrawler:
    settings: dict[str, Any] = {
        "out_dir": raw_dir,
        "api_key": SecretStr(fake.api_key),
        "base_url": fake.base_url,
        "rate_limit": 500.0,
        "retry": FAST_RETRY,
        "timeout": 2.0,
    }
    return TMDBCrawler(**{**settings, **options})


def requests_for(fake: FakeTMDB, path: str) -> list[Any]:
    return [request for request in fake.requests if request.path == path]


def records(raw_dir: Path, name: str) -> list[dict[str, Any]]:
    return list(read_jsonl(raw_dir / name))


def _http_error(status: int) -> requests.HTTPError:
    response = requests.Response()
    response.status_code = status
    return requests.HTTPError(f"HTTP {status}", response=response)


def _wrapped(cause: BaseException) -> ValueError:
    try:
        raise ValueError("download failed") from cause
    except ValueError as exc:
        return exc


@pytest.mark.parametrize(
    ("error", "transient"),
    [
        (requests.ConnectionError("refused"), True),
        (requests.Timeout("slow"), True),
        (TimeoutError("read"), True),
        (_http_error(503), True),
        (_http_error(429), True),
        (_wrapped(_http_error(502)), True),  # as MovieLensSourceError wraps a download
        (_wrapped(requests.exceptions.ChunkedEncodingError("cut")), True),
        (_http_error(404), False),
        (_wrapped(_http_error(403)), False),
        (ValueError("ratings.csv lacks the column(s) userId"), False),
        (FileNotFoundError("no such file"), False),
    ],
)
def test_is_transient_tells_what_a_retry_can_fix(error: BaseException, transient: bool) -> None:
    assert is_transient(error) is transient


# -- rate limiter --------------------------------------------------------------------------


@pytest.mark.parametrize(("rate", "workers"), [(60.0, 8), (7.5, 2)])
def test_rate_limiter_never_exceeds_rate_in_any_second_and_gets_close(
    rate: float, workers: int
) -> None:
    limiter = RateLimiter(rate)
    grants: list[float] = []
    duration = 1.6
    deadline = time.monotonic() + duration

    def worker() -> None:
        while (granted := limiter.acquire()) < deadline:
            grants.append(granted)

    threads = [threading.Thread(target=worker) for _ in range(workers)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()

    allowed = math.floor(rate)
    assert max_in_window(grants) <= allowed
    assert len(grants) >= 0.95 * allowed * duration


@pytest.mark.parametrize("rate", [0.0, -1.0, math.nan, math.inf])
def test_rate_limiter_rejects_a_bad_rate(rate: float) -> None:
    with pytest.raises(ValueError, match="rate"):
        RateLimiter(rate)


# -- retry policy --------------------------------------------------------------------------


def test_retry_delay_backs_off_exponentially_with_jitter_and_honours_retry_after() -> None:
    policy = RetryPolicy(max_attempts=6, base_delay=0.5, max_delay=4.0)
    for attempt, ceiling in [(1, 0.5), (2, 1.0), (3, 2.0), (4, 4.0), (5, 4.0)]:
        delays = {policy.delay(attempt) for _ in range(50)}
        assert all(ceiling / 2 <= d <= ceiling for d in delays)
        assert len(delays) > 1  # jittered
    assert policy.delay(1, retry_after=3.0) == 3.0


@pytest.mark.parametrize(
    ("options", "argument"),
    [({"max_attempts": 0}, "max_attempts"), ({"base_delay": 5, "max_delay": 1}, "base_delay")],
)
def test_retry_policy_rejects_bad_settings(options: dict[str, Any], argument: str) -> None:
    with pytest.raises(ValueError, match=argument):
        RetryPolicy(**options)


def test_parse_retry_after_reads_seconds_and_http_dates() -> None:
    in_ten_seconds = format_datetime(datetime.now(UTC) + timedelta(seconds=10), usegmt=True)
    assert parse_retry_after("2") == 2.0
    assert 8 < (parse_retry_after(in_ten_seconds) or 0) <= 10
    assert parse_retry_after("soon") is None
    assert parse_retry_after(None) is None


# -- JSONL store ---------------------------------------------------------------------------


def test_store_reader_rejects_a_corrupt_line_before_the_last(tmp_path: Path) -> None:
    path = tmp_path / "records.jsonl"
    path.write_bytes(b'{"key": "1"}\nnot json\n{"key": "3"}\n')
    with pytest.raises(CorruptStoreError, match=r"records.jsonl:2"):
        list(read_jsonl(path))


# -- HTTP behaviour against the fake server ------------------------------------------------


def test_429_waits_at_least_retry_after(fake: FakeTMDB, tmp_path: Path) -> None:
    fake.inject("/movie/popular", RATE_LIMITED, page=1)

    report = make_crawler(fake, tmp_path).crawl(lists=["popular"], pages=1)

    first, retry = requests_for(fake, "/movie/popular")
    assert (first.status, retry.status) == (429, 200)
    assert retry.time - first.time >= RATE_LIMITED.retry_after
    assert (report.pages_fetched, report.movies_fetched, report.failures) == (1, 20, 0)


def test_5xx_are_retried_until_success(fake: FakeTMDB, tmp_path: Path) -> None:
    movie = fake.list_ids("/movie/popular", 1)[0]
    fake.inject(f"/movie/{movie}", SERVER_ERROR)
    fake.inject(f"/movie/{movie}", BAD_GATEWAY)

    report = make_crawler(fake, tmp_path).crawl(lists=["popular"], pages=1)

    assert [r.status for r in requests_for(fake, f"/movie/{movie}")] == [500, 502, 200]
    assert report.failures == 0
    assert movie in load_tmdb_details(tmp_path)["tmdb_id"].to_list()


def test_retries_are_bounded_then_the_failure_is_recorded_and_retried_next_crawl(
    fake: FakeTMDB, tmp_path: Path
) -> None:
    movie = fake.list_ids("/movie/popular", 1)[0]
    fake.inject(f"/movie/{movie}", UNAVAILABLE, times=None)

    report = make_crawler(fake, tmp_path).crawl(lists=["popular"], pages=1)

    assert len(requests_for(fake, f"/movie/{movie}")) == FAST_RETRY.max_attempts
    assert (report.movies_fetched, report.failures) == (19, 1)
    (failure,) = records(tmp_path, "failures.jsonl")
    assert failure["key"] == str(movie)
    assert (failure["kind"], failure["status"], failure["attempts"]) == ("movie", 503, 3)
    assert "HTTP 503" in failure["reason"]
    assert movie not in load_tmdb_details(tmp_path)["tmdb_id"].to_list()

    fake.clear_faults()
    already = len(fake.requests)
    again = make_crawler(fake, tmp_path).crawl(lists=["popular"], pages=1)

    assert [r.path for r in fake.requests[already:]] == [f"/movie/{movie}"]
    assert (again.movies_fetched, again.movies_skipped, again.pages_skipped) == (1, 19, 1)


def test_timeouts_are_retried_and_recorded_when_they_persist(
    fake: FakeTMDB, tmp_path: Path
) -> None:
    once, always = fake.list_ids("/movie/popular", 1)[:2]
    fake.inject(f"/movie/{once}", slow(1.0))
    fake.inject(f"/movie/{always}", slow(1.0), times=None)

    report = make_crawler(fake, tmp_path, timeout=0.25).crawl(lists=["popular"], pages=1)

    assert len(requests_for(fake, f"/movie/{once}")) == 2
    assert report.failures == 1
    (failure,) = records(tmp_path, "failures.jsonl")
    assert failure["key"] == str(always)
    assert "Timeout" in failure["reason"]
    assert failure["status"] is None


@pytest.mark.parametrize(
    ("fault", "reason", "attempts"),
    [
        (MALFORMED_JSON, "malformed JSON", FAST_RETRY.max_attempts),
        (WRONG_SHAPE, "unexpected response shape", 1),
    ],
    ids=["not-json-retried", "wrong-shape-not-retried"],
)
def test_an_unusable_response_is_recorded_with_the_reason(
    fake: FakeTMDB, tmp_path: Path, fault: Any, reason: str, attempts: int
) -> None:
    movie = fake.list_ids("/movie/popular", 1)[3]
    fake.inject(f"/movie/{movie}", fault, times=None)
    fake.inject("/movie/popular", fault, page=2, times=None)

    report = make_crawler(fake, tmp_path).crawl(lists=["popular"], pages=2)

    assert len(requests_for(fake, f"/movie/{movie}")) == attempts
    assert (report.pages_fetched, report.movies_fetched, report.failures) == (1, 19, 2)
    failures = {f["key"]: f for f in records(tmp_path, "failures.jsonl")}
    assert set(failures) == {str(movie), "popular:2"}
    assert all(reason in f["reason"] for f in failures.values())


@pytest.mark.parametrize("fault", [MALFORMED_JSON, NOT_JSON, DROPPED], ids=["cut", "html", "drop"])
def test_a_200_whose_body_is_cut_short_or_not_json_is_retried_like_a_5xx(
    fake: FakeTMDB, tmp_path: Path, fault: Any
) -> None:
    movie = fake.list_ids("/movie/popular", 1)[0]
    fake.inject(f"/movie/{movie}", fault, times=2)
    fake.inject("/movie/popular", fault, page=1)

    report = make_crawler(fake, tmp_path).crawl(lists=["popular"], pages=1)

    assert [r.faulted for r in requests_for(fake, f"/movie/{movie}")] == [True, True, False]
    assert [r.faulted for r in requests_for(fake, "/movie/popular")] == [True, False]
    assert (report.pages_fetched, report.movies_fetched, report.failures) == (1, 20, 0)
    assert records(tmp_path, "failures.jsonl") == []


def test_one_answer_in_19_cut_short_loses_no_movie_and_stores_each_once(tmp_path: Path) -> None:
    # The scenario: before, 7 to 35 of 300 listed movies had no details after one run.
    with FakeTMDB(movies=300) as fake:
        fake.random_faults([MALFORMED_JSON, NOT_JSON, DROPPED], rate=1 / 19, seed=1)
        retry = RetryPolicy(max_attempts=6, base_delay=0.01, max_delay=0.1)
        report = make_crawler(fake, tmp_path, retry=retry).crawl(lists=["popular"], pages=15)
        listed = {i for page in range(1, 16) for i in fake.list_ids("/movie/popular", page)}
        whole = Counter(r.path for r in fake.requests if r.status == 200 and not r.faulted)

    assert sum(r.faulted for r in fake.requests) >= 10  # the faults did happen
    assert (report.movies_fetched, report.failures) == (300, 0)
    assert set(load_tmdb_details(tmp_path)["tmdb_id"]) == listed
    stored = Counter(r["key"] for r in records(tmp_path, "movies.jsonl"))
    assert set(stored.values()) == {1} and len(stored) == 300
    assert {whole[f"/movie/{i}"] for i in listed} == {1}  # fetched whole once each


def test_a_failure_recorded_by_an_old_run_is_filled_by_the_next(
    fake: FakeTMDB, tmp_path: Path
) -> None:
    movie = fake.list_ids("/movie/popular", 1)[2]
    fake.inject(f"/movie/{movie}", MALFORMED_JSON, times=None)
    make_crawler(fake, tmp_path).crawl(lists=["popular"], pages=1)
    assert [f["key"] for f in records(tmp_path, "failures.jsonl")] == [str(movie)]
    fake.clear_faults()  # the server is fixed
    already = len(fake.requests)

    again = make_crawler(fake, tmp_path).crawl(lists=["popular"], pages=1)

    assert [r.path for r in fake.requests[already:]] == [f"/movie/{movie}"]
    assert again.movies_fetched == 1
    stored = Counter(r["key"] for r in records(tmp_path, "movies.jsonl"))
    assert set(stored.values()) == {1} and len(stored) == 20


def test_a_404_is_asked_for_again_only_once_older_than_the_configured_age(
    fake: FakeTMDB, tmp_path: Path
) -> None:
    recent, old, gone = fake.list_ids("/movie/popular", 1)[:3]
    now = datetime.now(UTC)
    AppendLog(tmp_path / "not_found.jsonl").append_records(  # what earlier runs recorded
        [
            {"key": str(movie), "path": f"/movie/{movie}", "params": {},
             "fetched_at": when.isoformat(), "status": 404, "reason": "HTTP 404"}
            for movie, when in [
                (recent, now - timedelta(days=9)),
                (old, now - timedelta(days=11)),
                (gone, now - timedelta(days=11)),
                (gone, now - timedelta(days=1)),  # asked again since: still gone then
            ]
        ]
    )  # fmt: skip
    crawler = make_crawler(fake, tmp_path, retry_not_found_after=timedelta(days=10))

    report = crawler.crawl(lists=["popular"], pages=1)

    details = {
        r.path for r in fake.requests if r.path.startswith("/movie/") and r.path[7:].isdigit()
    }
    assert f"/movie/{old}" in details
    assert not {f"/movie/{recent}", f"/movie/{gone}"} & details
    assert (report.movies_fetched, report.movies_skipped) == (18, 2)
    assert old in load_tmdb_details(tmp_path)["tmdb_id"].to_list()


def test_a_movie_for_another_id_is_an_unusable_response(fake: FakeTMDB, tmp_path: Path) -> None:
    movie = fake.list_ids("/movie/popular", 1)[0]
    other = json.dumps(fake.movies[fake.list_ids("/movie/popular", 1)[1]]).encode()
    fake.inject(f"/movie/{movie}", Fault(body=other))

    make_crawler(fake, tmp_path).crawl(lists=["popular"], pages=1)

    (failure,) = records(tmp_path, "failures.jsonl")
    assert failure["key"] == str(movie)
    assert "not " + str(movie) in failure["reason"]


def test_401_stops_the_crawl_with_a_message_about_the_credentials(
    fake: FakeTMDB, tmp_path: Path
) -> None:
    crawler = make_crawler(fake, tmp_path, api_key=SecretStr("wrong-key"), concurrency=2)

    with pytest.raises(TMDBAuthError, match="TMDB_API_KEY.*TMDB_API_TOKEN") as raised:
        crawler.crawl(lists=["popular"], pages=2)

    assert "Invalid API key" in str(raised.value)
    assert len(fake.requests) <= 3  # the queued 40-odd jobs were cancelled


def test_no_credentials_is_an_auth_error(tmp_path: Path) -> None:
    with pytest.raises(TMDBAuthError, match="TMDB_API_KEY"):
        TMDBCrawler(out_dir=tmp_path, api_key=None, api_token=SecretStr(""))


def test_404_movies_are_recorded_and_skipped_by_the_next_crawl(
    fake: FakeTMDB, tmp_path: Path
) -> None:
    listed = fake.list_ids("/movie/popular", 1)[5]
    fake.inject(f"/movie/{listed}", NOT_FOUND, times=None)
    unknown = 5  # not in the fake catalog

    report = make_crawler(fake, tmp_path).crawl(lists=["popular"], pages=1, movie_ids=[unknown])

    assert (report.movies_fetched, report.movies_not_found, report.failures) == (19, 2, 0)
    assert {r["key"] for r in records(tmp_path, "not_found.jsonl")} == {str(listed), "5"}
    already = len(fake.requests)
    again = make_crawler(fake, tmp_path).crawl(lists=["popular"], pages=1, movie_ids=[unknown])
    assert fake.requests[already:] == []
    assert (again.movies_skipped, again.requests) == (21, 0)


@pytest.mark.parametrize("credential", ["api_key", "api_token"])
def test_credentials_never_reach_files_or_logs(
    fake: FakeTMDB, tmp_path: Path, caplog: pytest.LogCaptureFixture, credential: str
) -> None:
    secret = getattr(fake, credential)
    ids = fake.list_ids("/movie/popular", 1)
    faults = [SERVER_ERROR, MALFORMED_JSON, NOT_FOUND, slow(1.0)]
    for movie, fault in zip(ids[: len(faults)], faults, strict=True):
        fake.inject(f"/movie/{movie}", fault, times=None)
    with socket.socket() as closed:  # a port where nothing listens: connection refused
        closed.bind(("127.0.0.1", 0))
        dead_url = f"http://127.0.0.1:{closed.getsockname()[1]}/3"
    caplog.set_level(logging.DEBUG)
    options = {credential: SecretStr(secret), "timeout": 0.25, "progress_every": 0.05}
    if credential == "api_token":
        options["api_key"] = None

    make_crawler(fake, tmp_path / "live", **options).crawl(lists=["popular"], pages=1)
    make_crawler(fake, tmp_path / "dead", base_url=dead_url, **options).crawl(
        lists=["popular"], pages=1
    )

    sent = fake.requests[-1]
    if credential == "api_key":
        assert sent.params["api_key"] == secret
        assert "api_key=***" in caplog.text  # urllib3's debug lines, redacted
    else:
        assert sent.headers["Authorization"] == f"Bearer {secret}"
        assert "api_key" not in sent.params
    assert secret not in caplog.text
    written = [path for path in tmp_path.rglob("*") if path.is_file()]
    assert written
    assert all(secret.encode() not in path.read_bytes() for path in written)
    reasons = [f["reason"] for f in records(tmp_path / "dead", "failures.jsonl")]
    assert reasons and all("ConnectionError" in reason for reason in reasons)


def test_progress_is_logged_periodically_with_rate_and_eta(
    fake: FakeTMDB, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="recommender")
    crawler = make_crawler(fake, tmp_path, rate_limit=100.0, progress_every=0.15)

    report = crawler.crawl(lists=["popular"], pages=2)

    lines = [r.getMessage() for r in caplog.records if r.name == "recommender.data.crawler"]
    progress = [line for line in lines if line.startswith("progress")]
    assert 2 <= len(progress) <= report.requests / 10
    assert all("req/s" in line and "ETA" in line for line in progress)
    assert lines[-1].startswith("finished")
    assert any(r.name == "recommender.data.tmdb" for r in caplog.records)


# -- resuming ------------------------------------------------------------------------------


def test_a_resumed_crawl_fetches_only_what_is_missing(fake: FakeTMDB, tmp_path: Path) -> None:
    make_crawler(fake, tmp_path).crawl(lists=["popular"], pages=1)
    movies = tmp_path / "movies.jsonl"
    lines = movies.read_bytes().splitlines(keepends=True)
    movies.write_bytes(b"".join(lines[:-1]) + lines[-1][:25])  # killed while writing the last
    lost = json.loads(lines[-1])["key"]
    already = len(fake.requests)

    report = make_crawler(fake, tmp_path).crawl(lists=["popular"], pages=2)

    fetched = {r.path for r in fake.requests[already:]}
    page2 = {f"/movie/{i}" for i in fake.list_ids("/movie/popular", 2)}
    assert fetched == {"/movie/popular", f"/movie/{lost}"} | page2
    assert requests_for(fake, "/movie/popular")[-1].params["page"] == "2"
    assert (report.pages_skipped, report.movies_skipped) == (1, 19)
    keys = Counter(r["key"] for r in records(tmp_path, "movies.jsonl"))
    assert set(keys.values()) == {1}
    assert len(keys) == 40


KILLABLE_CRAWL = """
import sys
from pathlib import Path
from pydantic import SecretStr
from recommender.data.tmdb import TMDBCrawler

raw_dir, base_url, key = sys.argv[1:]
crawler = TMDBCrawler(out_dir=Path(raw_dir), api_key=SecretStr(key), base_url=base_url,
                      rate_limit=300.0)
crawler.crawl(lists=["popular", "top_rated"], pages=10)
"""


@pytest.mark.integration
@pytest.mark.parametrize("kill_after", [12, 130])
def test_a_crawl_killed_with_sigkill_resumes_without_loss_duplicates_or_refetching(
    tmp_path: Path, kill_after: int
) -> None:
    killed_dir, clean_dir = tmp_path / "killed", tmp_path / "clean"
    lists = {path: name for name, path in LIST_PATHS.items()}
    with FakeTMDB(movies=200) as fake:
        crawl = subprocess.Popen(
            [sys.executable, "-c", KILLABLE_CRAWL, str(killed_dir), fake.base_url, fake.api_key]
        )
        deadline = time.monotonic() + 30
        while len(fake.requests) < kill_after and crawl.poll() is None:
            assert time.monotonic() < deadline, "the crawl subprocess made no progress"
            time.sleep(0.002)
        crawl.send_signal(signal.SIGKILL)
        assert crawl.wait() == -signal.SIGKILL
        time.sleep(0.1)  # let the server log what was already on the wire
        before = len(fake.requests)
        done_pages = {r["key"] for r in records(killed_dir, "list_pages.jsonl")}
        done_movies = {r["key"] for r in records(killed_dir, "movies.jsonl")}

        resumed = make_crawler(fake, killed_dir).crawl(lists=["popular", "top_rated"], pages=10)
        refetched = [
            f"{lists[r.path]}:{r.params['page']}" if r.path in lists else r.path[7:]
            for r in fake.requests[before:]
            if r.path != "/genre/movie/list"
        ]
        make_crawler(fake, clean_dir).crawl(lists=["popular", "top_rated"], pages=10)

    assert before < 221, "killed too late: the crawl had finished"
    assert not (done_pages | done_movies) & set(refetched)
    assert resumed.pages_skipped == len(done_pages)
    killed = Counter(r["key"] for r in records(killed_dir, "movies.jsonl"))
    clean = Counter(r["key"] for r in records(clean_dir, "movies.jsonl"))
    assert killed == clean
    assert set(clean.values()) == {1} and len(clean) == 200
