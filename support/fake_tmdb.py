"""A fake TMDB API on 127.0.0.1 for tests and benchmarks: a real HTTP server, deterministic data.

Serves ``/3/genre/movie/list``, ``/3/movie/popular``, ``/3/movie/top_rated``,
``/3/discover/movie`` and ``/3/movie/{id}`` for ``movies`` fake movies, 20 per list page,
``total_pages`` capped at 500 like TMDB. Every request needs the v3 key (``api_key`` parameter)
or the v4 token (Bearer header), else 401 with TMDB's error body. Faults are injected per path
(and page) or at random; every request is recorded with its arrival time::

    with FakeTMDB(movies=100) as tmdb:
        tmdb.inject("/movie/popular", RATE_LIMITED, page=2)
        ...crawl tmdb.base_url...
        assert max_in_window(tmdb.request_times()) <= 40
"""

from __future__ import annotations

import json
import math
import random
import sys
import threading
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from types import TracebackType
from typing import Any
from urllib.parse import parse_qsl, urlsplit

PER_PAGE = 20
MAX_PAGE = 500
GENRES = {
    28: "Action",
    12: "Adventure",
    16: "Animation",
    35: "Comedy",
    80: "Crime",
    99: "Documentary",
    18: "Drama",
    10751: "Family",
    14: "Fantasy",
    36: "History",
    27: "Horror",
    10402: "Music",
    9648: "Mystery",
    10749: "Romance",
    878: "Science Fiction",
    10770: "TV Movie",
    53: "Thriller",
    10752: "War",
    37: "Western",
}


@dataclass(frozen=True)
class Fault:
    """What to answer instead of the real response: a status (with TMDB-like error body unless
    ``body`` is given), a ``Retry-After`` header, a delay before answering, a raw body, or
    (``cut``) the real answer's headers and only half of its body before the connection drops."""

    status: int = 200
    retry_after: int | None = None
    delay: float = 0.0
    body: bytes | None = None
    cut: bool = False


RATE_LIMITED = Fault(status=429, retry_after=1)
SERVER_ERROR = Fault(status=500)
BAD_GATEWAY = Fault(status=502)
UNAVAILABLE = Fault(status=503)
NOT_FOUND = Fault(status=404)
MALFORMED_JSON = Fault(body=b'{"id": 1, "title": "Trunc')
"""A 200 whose body was cut short and framed as complete (a buffering proxy)."""
NOT_JSON = Fault(body=b"<html><body><h1>502 Bad Gateway</h1></body></html>\n")
"""A 200 carrying a proxy's HTML error page."""
DROPPED = Fault(cut=True)
"""A 200 whose connection drops halfway through the promised body."""
WRONG_SHAPE = Fault(body=b'{"id": "one", "title": null, "results": {}, "genres": 7}')


def slow(seconds: float) -> Fault:
    """A correct response sent after ``seconds`` (longer than a client timeout: a timeout)."""
    return Fault(delay=seconds)


_ERRORS = {
    401: (7, "Invalid API key: You must be granted a valid key."),
    404: (34, "The resource you requested could not be found."),
    400: (22, "Invalid page: Pages start at 1 and max at 500. They are expected to be an integer."),
    429: (25, "Your request count (41) is over the allowed limit of 40."),
}


@dataclass(frozen=True)
class RecordedRequest:
    """One request as the server saw it; ``path`` without the ``/3`` prefix."""

    time: float  # time.monotonic() on arrival
    path: str
    params: Mapping[str, str]
    headers: Mapping[str, str]
    status: int
    faulted: bool  # answered with an injected fault (or 401)


@dataclass
class _Rule:
    path: str
    page: int | None
    fault: Fault
    remaining: float  # math.inf: every time


@dataclass
class _Random:
    faults: Sequence[Fault]
    rate: float
    rng: random.Random


class FakeTMDB:
    """The fake server; a context manager that starts it on an ephemeral port and stops it."""

    def __init__(
        self,
        *,
        movies: int = 100,
        api_key: str = "fake-v3-key-0123456789abcdef",
        api_token: str = "fake-v4-token.eyJhdWQiOiJmYWtlIn0.c2lnbmF0dXJl",
        seed: int = 0,
    ) -> None:
        self.api_key = api_key
        self.api_token = api_token
        rng = random.Random(seed)
        self.movies = {
            id_: _movie(id_, number, rng)
            for number, id_ in enumerate(range(11, 11 + 7 * movies, 7), start=1)
        }
        by_popularity = sorted(self.movies, key=lambda i: -self.movies[i]["popularity"])
        self.lists = {
            "/movie/popular": by_popularity,
            "/movie/top_rated": sorted(self.movies, key=lambda i: -self.movies[i]["vote_average"]),
            "/discover/movie": sorted(self.movies),
        }
        self._rules: list[_Rule] = []
        self._random: _Random | None = None
        self._requests: list[RecordedRequest] = []
        self._lock = threading.Lock()
        self._server: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None

    # -- lifecycle ---------------------------------------------------------------------------

    def start(self) -> FakeTMDB:
        """Start serving in a background thread."""
        self._server = _Server(("127.0.0.1", 0), _Handler, self)
        self._thread = threading.Thread(
            target=self._server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
        )
        self._thread.start()
        return self

    def stop(self) -> None:
        """Stop serving and close the listening socket."""
        if self._server is not None and self._thread is not None:
            self._server.shutdown()
            self._server.server_close()
            self._thread.join()
            self._server = self._thread = None

    def __enter__(self) -> FakeTMDB:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    @property
    def base_url(self) -> str:
        """The API root to give the crawler, e.g. ``http://127.0.0.1:41234/3``."""
        if self._server is None:
            raise RuntimeError("FakeTMDB is not running: use it as a context manager")
        return f"http://127.0.0.1:{self._server.server_address[1]}/3"

    # -- faults ------------------------------------------------------------------------------

    def inject(
        self, path: str, fault: Fault, *, page: int | None = None, times: int | None = 1
    ) -> None:
        """Answer the next ``times`` (None: every) requests for ``path`` (and ``page``) with
        ``fault``. Rules apply in the order they were added."""
        with self._lock:
            self._rules.append(_Rule(path, page, fault, math.inf if times is None else times))

    def random_faults(self, faults: Sequence[Fault], *, rate: float, seed: int = 0) -> None:
        """Answer a fraction ``rate`` of the requests with one of ``faults``, picked at random."""
        with self._lock:
            self._random = _Random(faults, rate, random.Random(seed))

    def clear_faults(self) -> None:
        """Remove every injected fault."""
        with self._lock:
            self._rules.clear()
            self._random = None

    # -- what happened -----------------------------------------------------------------------

    @property
    def requests(self) -> list[RecordedRequest]:
        """A copy of the request log, in arrival order."""
        with self._lock:
            return list(self._requests)

    def request_times(self) -> list[float]:
        """Arrival times (``time.monotonic()``) of every request so far."""
        return [request.time for request in self.requests]

    def list_ids(self, path: str, page: int) -> list[int]:
        """The movie ids on one list page."""
        return self.lists[path][(page - 1) * PER_PAGE : page * PER_PAGE]

    # -- serving -----------------------------------------------------------------------------

    def _serve(self, handler: BaseHTTPRequestHandler) -> None:
        arrived = time.monotonic()
        url = urlsplit(handler.path)
        path = url.path.removeprefix("/3")
        params = dict(parse_qsl(url.query))
        headers = dict(handler.headers.items())
        fault = self._fault(path, params) if self._authorized(params, headers) else Fault(401)
        status, body = self._answer(path, params, fault)
        with self._lock:
            recorded = RecordedRequest(arrived, path, params, headers, status, fault != Fault())
            self._requests.append(recorded)
        time.sleep(fault.delay)
        try:
            handler.send_response(status)
            handler.send_header("Content-Type", "application/json;charset=utf-8")
            handler.send_header("Content-Length", str(len(body)))
            if fault.retry_after is not None:
                handler.send_header("Retry-After", str(fault.retry_after))
            handler.end_headers()
            handler.wfile.write(body[: len(body) // 2] if fault.cut else body)
            handler.close_connection = fault.cut
        except ConnectionError:
            pass  # the client gave up (timeout) before the answer came

    def _authorized(self, params: Mapping[str, str], headers: Mapping[str, str]) -> bool:
        return (
            params.get("api_key") == self.api_key
            or headers.get("Authorization") == f"Bearer {self.api_token}"
        )

    def _fault(self, path: str, params: Mapping[str, str]) -> Fault:
        with self._lock:
            for rule in self._rules:
                page_matches = rule.page is None or params.get("page") == str(rule.page)
                if rule.remaining > 0 and rule.path == path and page_matches:
                    rule.remaining -= 1
                    return rule.fault
            chaos = self._random
            if chaos is not None and chaos.rng.random() < chaos.rate:
                return chaos.rng.choice(chaos.faults)
        return Fault()

    def _answer(self, path: str, params: Mapping[str, str], fault: Fault) -> tuple[int, bytes]:
        if fault.body is not None:
            return fault.status, fault.body
        if fault.status != 200:
            return fault.status, _error(fault.status)
        if path == "/genre/movie/list":
            return 200, _json({"genres": [{"id": i, "name": n} for i, n in GENRES.items()]})
        if path in self.lists:
            return self._list_page(self.lists[path], params.get("page", "1"))
        movie = self.movies.get(_movie_id(path)) if path.startswith("/movie/") else None
        return (200, _json(movie)) if movie is not None else (404, _error(404))

    def _list_page(self, ids: list[int], page_param: str) -> tuple[int, bytes]:
        page = int(page_param) if page_param.isdigit() else 0
        if not 1 <= page <= MAX_PAGE:
            return 400, _error(400)
        results = [
            {key: self.movies[id_][key] for key in ("id", "title", "popularity", "vote_average")}
            for id_ in ids[(page - 1) * PER_PAGE : page * PER_PAGE]
        ]
        body = {
            "page": page,
            "results": results,
            "total_pages": min(MAX_PAGE, math.ceil(len(ids) / PER_PAGE)),
            "total_results": len(ids),
        }
        return 200, _json(body)


class _Server(ThreadingHTTPServer):
    def __init__(self, address: tuple[str, int], handler: type[_Handler], fake: FakeTMDB) -> None:
        super().__init__(address, handler)
        self.fake = fake

    def handle_error(self, request: Any, client_address: Any) -> None:
        # Clients that time out or get killed reset their connections: not an error here.
        if not isinstance(sys.exc_info()[1], ConnectionError):
            super().handle_error(request, client_address)


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive, like TMDB
    disable_nagle_algorithm = True  # headers and body go in two writes: avoid delayed-ACK stalls
    server: _Server

    def do_GET(self) -> None:  # noqa: N802 (http.server's naming)
        self.server.fake._serve(self)

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002
        pass  # the request log replaces stderr lines


def max_in_window(times: Sequence[float], *, window: float = 1.0) -> int:
    """The largest number of ``times`` in any half-open interval ``[t, t + window)``."""
    ordered = sorted(times)
    best, first = 0, 0
    for last, t in enumerate(ordered):
        while ordered[first] <= t - window:
            first += 1
        best = max(best, last - first + 1)
    return best


def _movie(id_: int, number: int, rng: random.Random) -> dict[str, Any]:
    genre_ids = rng.sample(sorted(GENRES), k=1 + number % 3)
    return {
        "id": id_,
        "title": f"Fake Movie {number}",
        "poster_path": None if number % 10 == 0 else f"/poster{id_}.jpg",
        "overview": "" if number % 13 == 0 else f"The story of fake movie number {number}.",
        "popularity": round(rng.uniform(1, 500), 3),
        "vote_average": round(rng.uniform(1, 10), 1),
        "vote_count": rng.randint(0, 20_000),
        "release_date": ""
        if number % 17 == 0
        else f"{1950 + number % 75}-{1 + number % 12:02d}-15",
        "genres": [{"id": g, "name": GENRES[g]} for g in genre_ids],
    }


def _movie_id(path: str) -> int:
    tail = path.removeprefix("/movie/")
    return int(tail) if tail.isdigit() else -1


def _error(status: int) -> bytes:
    code, message = _ERRORS.get(status, (11, "Internal error: Something went wrong."))
    return _json({"success": False, "status_code": code, "status_message": message})


def _json(data: object) -> bytes:
    return json.dumps(data).encode()
