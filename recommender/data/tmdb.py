"""The TMDB crawler (genre list, movie lists, movie details) and readers of what it stored.

Everything goes under one directory (``Settings.tmdb_dir``, ``<data_dir>/raw/tmdb/``), one JSON
object per line, append-only (:class:`recommender.data.logs.AppendLog`)::

    genres.jsonl      {"key": "genres",    "path", "params", "fetched_at", "body"}
    list_pages.jsonl  {"key": "popular:3", "path", "params", "fetched_at", "body"}
    movies.jsonl      {"key": "603",       "path", "params", "fetched_at", "body"}
    not_found.jsonl   {"key": "603",       "path", "params", "fetched_at", "status", "reason"}
    failures.jsonl    {"key", "path", "params", "fetched_at", "status", "reason",
                       "kind", "attempts", "url"}

``body`` is TMDB's response as received. A record in one of the first three files marks its
item done: a restarted crawl skips it and takes the movie ids of done list pages from their
bodies. A movie in ``not_found.jsonl`` is done until its latest 404 is older than
``retry_not_found_after`` (TMDB adds and restores movies); failed items are retried by the next
crawl. So a movie's details are stored once. Credentials never reach these files: they are added
to a request only when it is sent (a v4 token as a Bearer header, preferred; else the v3 key as
the ``api_key`` parameter).
"""

from __future__ import annotations

import logging
import operator
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Annotated, Any

import polars as pl
from pydantic import BaseModel, ConfigDict, Field, SecretStr, ValidationError, field_validator

from recommender.data import contracts
from recommender.data.crawler import (
    AuthError,
    BaseCrawler,
    FetchError,
    Job,
    NotFoundError,
    RetryPolicy,
    read_jsonl,
)
from recommender.data.logs import AppendLog
from recommender.data.storage import utc_now

logger = logging.getLogger("recommender.data.tmdb")

LIST_PATHS = {
    "popular": "/movie/popular",
    "top_rated": "/movie/top_rated",
    "discover": "/discover/movie",
}
MAX_PAGE = 500
"""TMDB refuses list pages above 500."""

DETAILS_SCHEMA = contracts.TMDB_DETAILS

_FILES = {
    "genres": "genres.jsonl",
    "page": "list_pages.jsonl",
    "movie": "movies.jsonl",
    "not_found": "not_found.jsonl",
    "failure": "failures.jsonl",
}
_CREDENTIALS_HINT = "set TMDB_API_KEY to a v3 API key or TMDB_API_TOKEN to a v4 read access token"


class TMDBAuthError(AuthError):
    """TMDB rejected the credentials, or none were given; the message says what to set."""


class _Schema(BaseModel):
    """Strict: TMDB sends numbers as numbers, so "7" where an int belongs is a bad response."""

    model_config = ConfigDict(strict=True, frozen=True)


class _Genre(_Schema):
    id: int
    name: str


class _GenreList(_Schema):
    genres: list[_Genre]


class _ListEntry(_Schema):
    id: int


class _ListPage(_Schema):
    results: list[_ListEntry]


class _Movie(_Schema):
    id: int
    title: str
    poster_path: str | None = None
    overview: str | None = None
    popularity: float
    vote_average: float
    vote_count: int
    release_date: Annotated[str, Field(pattern=r"^\d{4}-\d{2}-\d{2}$")] | None = None
    genres: list[_Genre] = []

    @field_validator("poster_path", "overview", "release_date", mode="before")
    @classmethod
    def _empty_is_missing(cls, value: object) -> object:
        # TMDB sends "" for an unknown release date or overview.
        return None if value == "" else value


_SCHEMAS: dict[str, type[_Schema]] = {"genres": _GenreList, "page": _ListPage, "movie": _Movie}


def _validate(schema: type[_Schema], body: Any) -> _Schema:
    try:
        return schema.model_validate(body)
    except ValidationError as exc:
        problems = "; ".join(
            f"{'.'.join(map(str, error['loc'])) or 'body'}: {error['msg']}"
            for error in exc.errors(include_url=False)[:3]
        )
        raise ValueError(f"unexpected response shape ({problems})") from exc


@dataclass(frozen=True)
class CrawlReport:
    """What one TMDB crawl did. ``*_skipped`` were already done by an earlier crawl;
    ``failures`` were recorded in failures.jsonl and will be retried by the next crawl."""

    pages_fetched: int
    pages_skipped: int
    movies_fetched: int
    movies_skipped: int
    movies_not_found: int
    failures: int
    requests: int
    elapsed_s: float
    requests_per_s: float


class TMDBCrawler(BaseCrawler):
    """Crawls TMDB into ``out_dir`` (layout in the module docstring).

    Args:
        out_dir: Where the crawl's files go (``Settings.tmdb_dir``).
        api_key: TMDB v3 API key, sent as the ``api_key`` query parameter.
        api_token: TMDB v4 read access token, sent as a Bearer header; preferred over the key.
        base_url: TMDB API root, e.g. ``https://api.themoviedb.org/3``.
        language: ``language`` parameter of every request.
        region: ``region`` parameter of list requests, when set.
        rate_limit: Requests per second, shared by all workers.
        concurrency: Worker threads.
        retry: Retry policy for 429, 5xx, timeouts and connection errors.
        timeout: Seconds to wait for a connection or a response.
        progress_every: Seconds between progress log lines.
        retry_not_found_after: Age after which a movie's recorded 404 is asked for again.

    Raises:
        TMDBAuthError: neither ``api_key`` nor ``api_token`` is given.
    """

    def __init__(
        self,
        *,
        out_dir: Path,
        api_key: SecretStr | None = None,
        api_token: SecretStr | None = None,
        base_url: str = "https://api.themoviedb.org/3",
        language: str = "en-US",
        region: str | None = None,
        rate_limit: float = 40.0,
        concurrency: int = 8,
        retry: RetryPolicy | None = None,
        timeout: float = 10.0,
        progress_every: float = 10.0,
        retry_not_found_after: timedelta = timedelta(days=30),
    ) -> None:
        token = api_token.get_secret_value() if api_token is not None else ""
        key = api_key.get_secret_value() if api_key is not None else ""
        if not (token or key):
            raise TMDBAuthError(f"no TMDB credentials: {_CREDENTIALS_HINT}")
        super().__init__(
            base_url=base_url,
            auth_params={} if token else {"api_key": key},
            auth_headers={"Authorization": f"Bearer {token}"} if token else {},
            secrets=(token or key,),
            rate_limit=rate_limit,
            concurrency=concurrency,
            retry=retry,
            timeout=timeout,
            progress_every=progress_every,
        )
        self.out_dir = out_dir
        self.language = language
        self.region = region
        self.retry_not_found_after = retry_not_found_after
        self._stores: dict[str, AppendLog] = {}
        self._done_movies: set[int] = set()
        self._seen_movies: set[int] = set()

    def crawl(
        self,
        *,
        lists: Iterable[str] = ("popular", "top_rated"),
        pages: int | range = 5,
        movie_ids: Iterable[int] = (),
    ) -> CrawlReport:
        """Crawl the genre list, pages ``pages`` of each list in ``lists``, and the details of
        every movie on those pages plus ``movie_ids``; skip whatever an earlier crawl finished.

        Args:
            lists: Names from :data:`LIST_PATHS`.
            pages: ``n`` for pages 1..n, or a range of pages, all within 1..500.
            movie_ids: Extra TMDB movie ids (e.g. from MovieLens links.csv).

        Raises:
            ValueError: a bad ``lists``, ``pages`` or ``movie_ids``.
            TMDBAuthError: TMDB answered 401; the crawl stopped, what it stored stays valid.
        """
        names = _check_lists(lists)
        page_numbers = _check_pages(pages)
        extra_ids = _check_movie_ids(movie_ids)
        self._stores = {kind: AppendLog(self.out_dir / name) for kind, name in _FILES.items()}
        done_pages = {
            record["key"]: [entry.id for entry in _ListPage.model_validate(record["body"]).results]
            for record in read_jsonl(self._stores["page"].path)
        }
        self._done_movies = {int(key) for key in self._done_keys("movie")}
        self._done_movies |= self._recently_not_found()
        self._seen_movies = set()

        page_jobs = [self._page_job(name, page) for name in names for page in page_numbers]
        genres = self._job("genres", "genres", "/genre/movie/list")
        jobs = [] if self._done_keys("genres") else [genres]
        jobs += [job for job in page_jobs if job.key not in done_pages]
        listed = (id_ for job in page_jobs for id_ in done_pages.get(job.key, ()))
        jobs += self._movie_jobs([*extra_ids, *listed])
        try:
            stats = self.run(jobs)
        except AuthError as exc:
            raise TMDBAuthError(
                f"TMDB rejected the credentials ({exc}); {_CREDENTIALS_HINT}"
            ) from exc

        outcomes = stats.outcomes
        report = CrawlReport(
            pages_fetched=outcomes.get(("page", "fetched"), 0),
            pages_skipped=sum(job.key in done_pages for job in page_jobs),
            movies_fetched=outcomes.get(("movie", "fetched"), 0),
            movies_skipped=len(self._seen_movies & self._done_movies),
            movies_not_found=outcomes.get(("movie", "not_found"), 0),
            failures=sum(
                n
                for (kind, outcome), n in outcomes.items()
                if outcome == "failed" or (outcome == "not_found" and kind != "movie")
            ),
            requests=stats.requests,
            elapsed_s=stats.elapsed_s,
            requests_per_s=stats.requests_per_s,
        )
        logger.info("TMDB crawl into %s: %s", self.out_dir, report)
        return report

    def parse(self, job: Job, body: Any) -> _Schema:
        """Validate ``body`` against the fields the crawl and the readers need."""
        parsed = _validate(_SCHEMAS[job.kind], body)
        if isinstance(parsed, _Movie) and str(parsed.id) != job.key:
            raise ValueError(f"response is for movie {parsed.id}, not {job.key}")
        return parsed

    def handle(self, job: Job, body: Any, parsed: Any) -> list[Job]:
        """Store the response; a list page yields detail jobs for movies not seen yet."""
        self._stores[job.kind].append_records([self._record(job, body=body)])
        if job.kind == "page":
            return self._movie_jobs(entry.id for entry in parsed.results)
        return []

    def handle_error(self, job: Job, error: FetchError) -> None:
        """Record a 404 movie as not found (done), anything else as a failure (retried later)."""
        fields = self._record(job, status=error.status, reason=error.reason)
        if job.kind == "movie" and isinstance(error, NotFoundError):
            self._stores["not_found"].append_records([fields])
            return
        failure = {**fields, "kind": job.kind, "attempts": error.attempts}
        self._stores["failure"].append_records([{**failure, "url": job.url(self.base_url)}])
        logger.warning("TMDB %s %s failed: %s", job.kind, job.key, error.reason)

    def _done_keys(self, *kinds: str) -> set[str]:
        return {record["key"] for kind in kinds for record in read_jsonl(self._stores[kind].path)}

    def _recently_not_found(self) -> set[int]:
        """Movies whose latest 404 is younger than ``retry_not_found_after``."""
        latest: dict[int, datetime] = {}
        for record in read_jsonl(self._stores["not_found"].path):
            key, when = int(record["key"]), datetime.fromisoformat(record["fetched_at"])
            latest[key] = max(when, latest.get(key, when))
        since = datetime.now(UTC) - self.retry_not_found_after
        return {key for key, when in latest.items() if when > since}

    def _job(self, kind: str, key: str, path: str, **params: str) -> Job:
        return Job(kind, key, path, {"language": self.language, **params})

    def _page_job(self, name: str, page: int) -> Job:
        region = {"region": self.region} if self.region else {}
        return self._job("page", f"{name}:{page}", LIST_PATHS[name], page=str(page), **region)

    def _movie_jobs(self, ids: Iterable[int]) -> list[Job]:
        new = set(ids) - self._seen_movies
        self._seen_movies |= new
        return [
            self._job("movie", str(id_), f"/movie/{id_}") for id_ in sorted(new - self._done_movies)
        ]

    @staticmethod
    def _record(job: Job, **fields: Any) -> dict[str, Any]:
        return {
            "key": job.key,
            "path": job.path,
            "params": dict(job.params),
            "fetched_at": utc_now(),
            **fields,
        }


@dataclass(frozen=True)
class CrawlConfig:
    """How to reach TMDB and what to crawl (``Settings.tmdb_crawl_options()`` gives the values).

    See :class:`TMDBCrawler` and :meth:`TMDBCrawler.crawl` for the fields' meaning.
    """

    api_key: SecretStr | None = None
    api_token: SecretStr | None = None
    base_url: str = "https://api.themoviedb.org/3"
    language: str = "en-US"
    region: str | None = None
    rate_limit: float = 40.0
    concurrency: int = 8
    lists: tuple[str, ...] = ("popular", "top_rated")
    pages: int = 5
    retry_not_found_after_days: float = 30.0


def crawl_tmdb(
    out_dir: Path,
    config: CrawlConfig,
    *,
    pages: int | range | None = None,
    movie_ids: Iterable[int] = (),
    progress_every: float = 10.0,
    retry: RetryPolicy | None = None,
    timeout: float = 10.0,
) -> CrawlReport:
    """Crawl TMDB into ``out_dir`` (resuming whatever was crawled there) as ``config`` says;
    ``pages`` overrides ``config.pages``. See :meth:`TMDBCrawler.crawl` for the rest."""
    crawler = TMDBCrawler(
        out_dir=out_dir,
        api_key=config.api_key,
        api_token=config.api_token,
        base_url=config.base_url,
        language=config.language,
        region=config.region,
        rate_limit=config.rate_limit,
        concurrency=config.concurrency,
        retry=retry,
        timeout=timeout,
        progress_every=progress_every,
        retry_not_found_after=timedelta(days=config.retry_not_found_after_days),
    )
    return crawler.crawl(
        lists=config.lists, pages=config.pages if pages is None else pages, movie_ids=movie_ids
    )


def load_tmdb_details(out_dir: Path) -> pl.DataFrame:
    """One row per crawled movie (the last record wins), columns and dtypes as
    :data:`DETAILS_SCHEMA`, sorted by ``tmdb_id``; empty with that schema if nothing was crawled.

    Empty strings from TMDB (unknown poster, overview or release date) become null.
    """
    movies: dict[int, _Movie] = {}
    for record in read_jsonl(out_dir / _FILES["movie"]):
        movie = _Movie.model_validate(record["body"])
        movies[movie.id] = movie
    rows = [
        {
            "tmdb_id": movie.id,
            "tmdb_title": movie.title,
            "poster_path": movie.poster_path,
            "overview": movie.overview,
            "popularity": movie.popularity,
            "vote_average": movie.vote_average,
            "vote_count": movie.vote_count,
            "release_date": movie.release_date,
        }
        for _, movie in sorted(movies.items())
    ]
    return pl.DataFrame(rows, schema=DETAILS_SCHEMA)


def load_tmdb_genres(out_dir: Path) -> dict[int, str]:
    """TMDB genre id -> name from the last crawled genre list; empty if none was crawled."""
    genres: dict[int, str] = {}
    for record in read_jsonl(out_dir / _FILES["genres"]):
        genres = {
            genre.id: genre.name for genre in _GenreList.model_validate(record["body"]).genres
        }
    return genres


def _check_lists(lists: Iterable[str]) -> tuple[str, ...]:
    names = tuple(dict.fromkeys([lists] if isinstance(lists, str) else lists))
    unknown = [name for name in names if name not in LIST_PATHS]
    if unknown or not names:
        raise ValueError(
            f"lists must name TMDB lists among {', '.join(LIST_PATHS)}, got {list(names)!r}"
        )
    return names


def _check_pages(pages: int | range) -> range:
    numbers = range(1, pages + 1) if isinstance(pages, int) else pages
    if not numbers or min(numbers) < 1 or max(numbers) > MAX_PAGE:
        raise ValueError(f"pages must lie within 1..{MAX_PAGE} (TMDB's cap), got {pages!r}")
    return numbers


def _check_movie_ids(movie_ids: Iterable[int]) -> list[int]:
    try:
        ids = [operator.index(id_) for id_ in movie_ids]
    except TypeError as exc:
        raise ValueError(f"movie_ids must be integers: {exc}") from exc
    if any(id_ < 1 for id_ in ids):
        raise ValueError(f"movie_ids must be positive, got {min(ids)!r}")
    return ids
