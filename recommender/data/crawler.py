"""Generic crawling machinery: a shared rate limiter, a retry policy, the store reader and a
thread-pool crawler that fetches JSON over HTTP. Nothing here knows about TMDB. The crawl's
stores are :class:`recommender.data.logs.AppendLog` files.

Worker threads only do HTTP (rate limit, request, retries, JSON decoding and validation); the
thread that calls :meth:`BaseCrawler.run` receives every result and does all the writing, so the
stores need no locks and a record is on disk before anything that depends on it is scheduled.
"""

from __future__ import annotations

import logging
import math
import queue
import random
import threading
import time
from abc import ABC, abstractmethod
from collections import Counter, deque
from collections.abc import Callable, Collection, Iterable, Iterator, Mapping
from concurrent.futures import Future, ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime
from pathlib import Path
from typing import Any
from urllib.parse import quote_plus, urlencode

import requests
from requests.adapters import HTTPAdapter

from recommender.data.logs import parse_json_object, read_log

logger = logging.getLogger("recommender.data.crawler")

SEND_SLACK = 0.02
"""Seconds :class:`BaseCrawler` adds to its limiter's window. The delay between a grant and the
request reaching the server varies by a few milliseconds; without slack that jitter could put
R + 1 requests into one of the server's 1-second windows."""

_TRANSIENT_ERRORS = (
    requests.Timeout,
    requests.ConnectionError,
    requests.exceptions.ChunkedEncodingError,
)


def _retryable_status(status: int) -> bool:
    """429 (rate limited) and 5xx may succeed later; every other 4xx will not."""
    return status == 429 or status >= 500


def is_transient(exc: BaseException) -> bool:
    """Whether ``exc``, or an error it was raised from, may not happen on a retry: a timeout, a
    dropped connection, a truncated body, an HTTP 429 or 5xx. A malformed file, a validation
    failure or a missing path gives the same error every time: not transient."""
    seen: set[int] = set()
    error: BaseException | None = exc
    while error is not None and id(error) not in seen:
        seen.add(id(error))
        if isinstance(error, (*_TRANSIENT_ERRORS, TimeoutError, ConnectionError)):
            return True
        response = getattr(error, "response", None)
        if isinstance(error, requests.HTTPError) and response is not None:
            return _retryable_status(response.status_code)
        error = error.__cause__
    return False


class CrawlError(Exception):
    """Base class of the crawler's errors."""


class AuthError(CrawlError):
    """The server rejected the credentials (HTTP 401): nothing will succeed, the crawl stops."""


class FetchError(CrawlError):
    """One item could not be fetched; the crawl records it and goes on."""

    def __init__(self, reason: str, *, status: int | None = None, attempts: int = 1) -> None:
        super().__init__(reason)
        self.reason = reason
        self.status = status
        self.attempts = attempts


class NotFoundError(FetchError):
    """HTTP 404: the item does not exist."""


class MalformedResponseError(FetchError):
    """A successful response whose body is not JSON or lacks what the crawler needs."""


class CorruptStoreError(CrawlError):
    """A line of a JSONL store, other than a torn last line, is not a JSON object."""


class RateLimiter:
    """Thread-safe limiter: never more than ``floor(rate)`` grants in any 1-second window.

    Two rules, checked under one lock at the moment of each grant. A sliding log of the last
    ``n = floor(rate)`` grant times gives the guarantee: grant ``i + n`` comes at least one window
    after grant ``i``. An even schedule of one slot every ``1/rate`` seconds spreads the grants
    over the second instead of bursting ``n`` at once; the schedule advances from its own slots,
    not from the (late) wake-up times, so the achieved rate stays close to ``rate``. Below one
    request per second the window stretches to ``1/rate`` seconds with one grant in it.

    Args:
        rate: Requests per second, > 0.
        slack: Seconds added to the window, to absorb jitter between grant and send.
    """

    def __init__(self, rate: float, *, slack: float = 0.0) -> None:
        if not rate > 0 or math.isinf(rate):
            raise ValueError(f"rate must be a positive number of requests per second, got {rate!r}")
        if not slack >= 0:
            raise ValueError(f"slack must be >= 0 seconds, got {slack!r}")
        self.rate = rate
        self._capacity = max(1, math.floor(rate))
        self._window = max(1.0, self._capacity / rate) + slack
        self._interval = self._window / self._capacity
        self._grants: deque[float] = deque(maxlen=self._capacity)
        self._next_slot = -math.inf
        self._lock = threading.Lock()

    def acquire(self) -> float:
        """Block until a request may be sent; return the grant time (``time.monotonic()``)."""
        while True:
            with self._lock:
                now = time.monotonic()
                ready = self._next_slot
                if len(self._grants) == self._capacity:
                    ready = max(ready, self._grants[0] + self._window)
                if now >= ready:
                    self._grants.append(now)
                    self._next_slot = max(self._next_slot + self._interval, now)
                    return now
            time.sleep(ready - now)


@dataclass(frozen=True)
class RetryPolicy:
    """Bounded retries with exponential backoff and jitter.

    Attempt ``k`` (1-based) that fails transiently is followed by a wait drawn uniformly from
    ``[b/2, b]`` with ``b = min(max_delay, base_delay * 2**(k-1))``, or the server's Retry-After
    if that is longer. A Retry-After beyond ``max_delay`` ends the retries.
    """

    max_attempts: int = 5
    base_delay: float = 0.5
    max_delay: float = 30.0

    def __post_init__(self) -> None:
        if self.max_attempts < 1:
            raise ValueError(f"max_attempts must be >= 1, got {self.max_attempts!r}")
        if not 0 <= self.base_delay <= self.max_delay:
            raise ValueError(
                f"base_delay must be between 0 and max_delay ({self.max_delay!r}), "
                f"got {self.base_delay!r}"
            )

    def delay(self, attempt: int, *, retry_after: float | None = None) -> float:
        """Seconds to wait after failed attempt ``attempt`` (1-based) before the next one."""
        backoff = min(self.max_delay, self.base_delay * 2 ** (attempt - 1))
        jittered = random.uniform(backoff / 2, backoff)
        return jittered if retry_after is None else max(retry_after, jittered)


def parse_retry_after(value: str | None) -> float | None:
    """Seconds to wait from a ``Retry-After`` header (delay-seconds or HTTP-date); None if absent
    or unreadable."""
    if value is None:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        when = parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return max(0.0, (when - datetime.now(UTC)).total_seconds())


def read_jsonl(path: Path) -> Iterator[dict[str, Any]]:
    """Yield the records of a crawl store (an :class:`~recommender.data.logs.AppendLog`), oldest
    first; nothing if the file does not exist. A torn last line is not a record.

    Raises:
        CorruptStoreError: a line is not a JSON object (the crawl never writes one).
    """
    contents = read_log(path, parse_json_object)
    if contents.rejected.height:
        number, _, reason = contents.rejected.row(0)
        raise CorruptStoreError(f"{path}:{number}: not a JSON object ({reason})")
    yield from contents.records


@dataclass(frozen=True)
class Job:
    """One GET to make: ``kind`` groups jobs in progress reports, ``key`` names the item."""

    kind: str
    key: str
    path: str
    params: Mapping[str, str] = field(default_factory=dict)

    def url(self, base_url: str) -> str:
        """The URL without credentials (those are added only when the request is sent)."""
        query = urlencode(self.params)
        return f"{base_url}{self.path}?{query}" if query else f"{base_url}{self.path}"


@dataclass(frozen=True)
class RunStats:
    """What one :meth:`BaseCrawler.run` did.

    ``outcomes`` counts jobs by ``(kind, outcome)``, outcome one of ``fetched``, ``not_found``,
    ``failed``; ``requests`` counts HTTP attempts, retries included.
    """

    outcomes: Mapping[tuple[str, str], int]
    requests: int
    retries: int
    elapsed_s: float

    @property
    def requests_per_s(self) -> float:
        """Achieved request rate over the whole run."""
        return self.requests / self.elapsed_s if self.elapsed_s > 0 else 0.0


class BaseCrawler(ABC):
    """Fetches JSON jobs with a pool of worker threads, a shared :class:`RateLimiter` and a
    :class:`RetryPolicy`; subclasses say how to validate a body and what to do with it.

    429, 5xx, timeouts, connection errors and a 200 whose body is not JSON (cut short, a proxy's
    error page) are retried; 401 raises :class:`AuthError` and stops the run; 404 and other 4xx,
    a body that is still not JSON after the last attempt, or one :meth:`parse` rejects, become a
    :class:`FetchError` passed to :meth:`handle_error`. ``secrets`` are replaced by ``***`` in
    every error reason and in urllib3's debug log (which prints request URLs).
    """

    def __init__(
        self,
        *,
        base_url: str,
        auth_params: Mapping[str, str] | None = None,
        auth_headers: Mapping[str, str] | None = None,
        secrets: Collection[str] = (),
        rate_limit: float = 40.0,
        concurrency: int = 8,
        retry: RetryPolicy | None = None,
        timeout: float = 10.0,
        progress_every: float = 10.0,
    ) -> None:
        if concurrency < 1:
            raise ValueError(f"concurrency must be >= 1, got {concurrency!r}")
        if not timeout > 0:
            raise ValueError(f"timeout must be > 0 seconds, got {timeout!r}")
        if not progress_every > 0:
            raise ValueError(f"progress_every must be > 0 seconds, got {progress_every!r}")
        self.base_url = base_url.rstrip("/")
        self.limiter = RateLimiter(rate_limit, slack=SEND_SLACK)
        self.concurrency = concurrency
        self.retry = retry or RetryPolicy()
        self.timeout = timeout
        self.progress_every = progress_every
        self._auth_params = dict(auth_params or {})
        self._auth_headers = dict(auth_headers or {})
        self._secrets = [s for s in secrets if s]
        self._stop = threading.Event()
        self._lock = threading.Lock()
        self._requests = 0
        self._retries = 0

    @abstractmethod
    def parse(self, job: Job, body: Any) -> Any:
        """Validate a decoded body in the worker thread; raise ValueError if it is unusable."""

    @abstractmethod
    def handle(self, job: Job, body: Any, parsed: Any) -> Iterable[Job]:
        """Store a fetched item (calling thread); return follow-up jobs."""

    @abstractmethod
    def handle_error(self, job: Job, error: FetchError) -> None:
        """Record an item that could not be fetched (calling thread)."""

    def redact(self, text: str) -> str:
        """``text`` with every secret (raw or URL-encoded) replaced by ``***``."""
        for secret in self._secrets:
            text = text.replace(secret, "***").replace(quote_plus(secret), "***")
        return text

    def run(self, jobs: Iterable[Job]) -> RunStats:
        """Fetch ``jobs`` and the follow-up jobs :meth:`handle` returns, until none are left.

        Logs progress every ``progress_every`` seconds and once at the end; the ETA counts the
        jobs known so far (follow-up jobs appear as their parents complete).

        Raises:
            AuthError: the server answered 401; queued jobs are cancelled.
        """
        self._stop.clear()
        self._requests = self._retries = 0
        outcomes: Counter[tuple[str, str]] = Counter()
        start = time.monotonic()
        next_report = start + self.progress_every
        with (
            requests.Session() as session,
            ThreadPoolExecutor(self.concurrency, thread_name_prefix="crawler") as pool,
            _redacted_log("urllib3.connectionpool", self.redact),
        ):
            adapter = HTTPAdapter(pool_connections=1, pool_maxsize=self.concurrency)
            session.mount("http://", adapter)
            session.mount("https://", adapter)
            pending: dict[Future[tuple[Any, Any]], Job] = {}
            # Futures report themselves here when done: O(1) per result, where
            # concurrent.futures.wait() would walk every pending future each time.
            finished: queue.SimpleQueue[Future[tuple[Any, Any]]] = queue.SimpleQueue()

            def submit(batch: Iterable[Job]) -> None:
                for job in batch:
                    future = pool.submit(self._fetch, session, job)
                    pending[future] = job
                    future.add_done_callback(finished.put)

            try:
                submit(jobs)
                while pending:
                    try:
                        future = finished.get(timeout=self.progress_every)
                    except queue.Empty:
                        pass
                    else:
                        job = pending.pop(future)
                        try:
                            body, parsed = future.result()
                        except FetchError as exc:
                            outcome = "not_found" if isinstance(exc, NotFoundError) else "failed"
                            outcomes[job.kind, outcome] += 1
                            self.handle_error(job, exc)
                        else:
                            outcomes[job.kind, "fetched"] += 1
                            submit(self.handle(job, body, parsed))
                    if time.monotonic() >= next_report:
                        next_report = time.monotonic() + self.progress_every
                        self._log_progress("progress", outcomes, len(pending), start)
            finally:
                self._stop.set()  # wakes workers waiting to retry
                pool.shutdown(cancel_futures=True)
        self._log_progress("finished", outcomes, 0, start)
        return RunStats(
            outcomes=dict(outcomes),
            requests=self._requests,
            retries=self._retries,
            elapsed_s=time.monotonic() - start,
        )

    def _fetch(self, session: requests.Session, job: Job) -> tuple[Any, Any]:
        """Worker: GET ``job`` with rate limit and retries; return ``(body, parse(body))``."""
        url = f"{self.base_url}{job.path}"
        params = {**job.params, **self._auth_params}
        attempt = 0
        while True:
            attempt += 1
            self.limiter.acquire()
            with self._lock:
                self._requests += 1
                if attempt > 1:
                    self._retries += 1
            try:
                response = session.get(
                    url, params=params, headers=self._auth_headers, timeout=self.timeout
                )
            except _TRANSIENT_ERRORS as exc:
                status, retry_after, error = None, None, FetchError
                problem = f"{type(exc).__name__}: {self.redact(str(exc))}"
            else:
                status, retry_after, error = response.status_code, None, FetchError
                if status < 300:
                    try:
                        body = response.json()
                    except requests.JSONDecodeError as exc:
                        # Cut short or a proxy's error page: the next answer may be whole.
                        error, problem = MalformedResponseError, f"malformed JSON: {exc}"
                    else:
                        return body, self._parse(job, body, status=status, attempts=attempt)
                elif status == 401:
                    url_text = job.url(self.base_url)
                    raise AuthError(f"HTTP 401 for {url_text}: {self._text(response)}")
                elif status == 404:
                    raise NotFoundError("HTTP 404", status=status, attempts=attempt)
                elif not _retryable_status(status):
                    reason = f"HTTP {status}: {self._text(response)}"
                    raise FetchError(reason, status=status, attempts=attempt)
                else:
                    retry_after = parse_retry_after(response.headers.get("Retry-After"))
                    problem = f"HTTP {status}"
            delay = self.retry.delay(attempt, retry_after=retry_after)
            if attempt >= self.retry.max_attempts or delay > self.retry.max_delay:
                reason = f"{problem} (gave up after {attempt} attempts)"
                raise error(reason, status=status, attempts=attempt)
            logger.debug("%s %s: %s; retrying in %.2f s", job.kind, job.key, problem, delay)
            if self._stop.wait(delay):
                raise FetchError("crawl stopped", status=status, attempts=attempt)

    def _parse(self, job: Job, body: Any, *, status: int, attempts: int) -> Any:
        try:
            return self.parse(job, body)
        except ValueError as exc:
            raise MalformedResponseError(str(exc), status=status, attempts=attempts) from exc

    def _text(self, response: requests.Response, *, limit: int = 200) -> str:
        return self.redact(response.text[:limit])

    def _log_progress(
        self, label: str, outcomes: Mapping[tuple[str, str], int], queued: int, start: float
    ) -> None:
        elapsed = time.monotonic() - start
        done = sum(outcomes.values())
        fetched = ", ".join(
            f"{kind} {n}" for (kind, outcome), n in sorted(outcomes.items()) if outcome == "fetched"
        )
        eta = queued * elapsed / done if done else math.inf
        logger.info(
            "%s after %.0f s: %d done (%s), %d not found, %d failed | %d requests, %d retries, "
            "%.1f req/s | %d queued, ETA %s",
            label,
            elapsed,
            done,
            fetched or "none fetched",
            sum(n for (_, outcome), n in outcomes.items() if outcome == "not_found"),
            sum(n for (_, outcome), n in outcomes.items() if outcome == "failed"),
            self._requests,
            self._retries,
            self._requests / elapsed if elapsed > 0 else 0.0,
            queued,
            "?" if math.isinf(eta) else f"{eta:.0f} s",
        )


class _RedactingFilter(logging.Filter):
    def __init__(self, redact: Callable[[str], str]) -> None:
        super().__init__()
        self._redact = redact

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        redacted = self._redact(message)
        if redacted != message:
            record.msg, record.args = redacted, None
        return True


@contextmanager
def _redacted_log(name: str, redact: Callable[[str], str]) -> Iterator[None]:
    """Redact the records of logger ``name`` while the block runs."""
    log = logging.getLogger(name)
    redacting = _RedactingFilter(redact)
    log.addFilter(redacting)
    try:
        yield
    finally:
        log.removeFilter(redacting)
