"""The simulated audience: MovieLens users who ask the running service for recommendations over
HTTP and click the movies they were going to watch anyway.

Where the audience comes from. A MovieLens release is split per user at random
(:func:`~recommender.modeling.splits.split_interactions`, ``random-per-user``): every user keeps
at least one training rating and holds out about ``test_fraction`` of theirs. The models under
test are trained on the training part only (:func:`write_training_part` writes it as a MovieLens
directory for ``movierec data --ratings DIR``), so a user's held-out movies are movies the user
really watched (rated) that no model has seen them watch. A model trained on everything would
never show them: it filters a user's known movies out of the recommendations.

Who clicks what (:class:`ClickModel`). A movie shown at rank r is clicked with probability
``p_hit / r**position_bias`` when it is one of the user's held-out movies, else
``p_miss / r**position_bias``; a clicked held-out movie is liked with probability ``p_like``.
The held-out movies stand for the user's real taste: a list that surfaces more of them earns more
clicks, which is what an online experiment should reward. ``p_hit`` < 1 because a user does not
click everything they would enjoy (MovieLens ratings include the movies a user disliked, and a
list is skimmed); ``p_miss`` > 0 because people click out of curiosity, so the two arms never
differ by held-out movies alone. ``position_bias`` 0 (the default) makes rank irrelevant; 1 is
the steep examination decay of search result pages.

A session (:func:`simulate`): a user drawn uniformly, with replacement, asks ``POST /recommend``
for k movies, excluding the movies they already clicked in this simulation (the served model does
not learn from the clicks), then posts a ``click`` (and, when liked, a ``like``) to
``POST /feedback`` with the answer's impression id. Each simulated user sends
``X-Forwarded-For: 10.a.b.c`` (:func:`forwarded_for`), so a service run with
``MOVIEREC_TRUSTED_PROXY_HOPS=1`` rate-limits every simulated user on their own.

The simulation only talks to a service on the loopback interface (:func:`check_loopback`): it
posts thousands of made-up feedback events, which must never reach a shared service's training
data.
"""

from __future__ import annotations

import email.utils
import ipaddress
import math
import os
import tempfile
import threading
import time
import zipfile
from collections import Counter
from collections.abc import Callable, Sequence
from concurrent.futures import FIRST_EXCEPTION, Future, ThreadPoolExecutor, wait
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import httpx
import numpy as np
import polars as pl

from recommender.data.movielens import MovieLensData, SourceInfo, load_movielens
from recommender.data.schemas import valid_ratings
from recommender.modeling.splits import split_interactions
from recommender.settings import EMBEDDED_MOVIELENS

DEFAULT_TEST_FRACTION = 0.2
DEFAULT_SPLIT_SEED = 42
MAX_EXCLUDE = 500
"""The most clicked movies a request excludes (the latest ones): the service takes 500 ids."""
MAX_REQUESTS = 10_000_000
MAX_CONCURRENCY = 64
REQUEST_TIMEOUT_SECONDS = 10.0
MAX_RETRY_AFTER_SECONDS = 10.0
"""The longest the simulation waits on one ``Retry-After`` before asking again."""
MAX_ERROR_FRACTION = 0.05
MIN_ERRORS_TO_STOP = 10
"""The run stops once at least this many calls failed and they are more than
:data:`MAX_ERROR_FRACTION` of the calls made."""
MAX_ERROR_MESSAGES = 10
NO_ARM = "none"
"""The arm counted for answers that name none (a service without experiments)."""

_TRAINING_FILES = ("ratings.csv", "movies.csv", "links.csv")
_LICENCE_FILES = ("README.txt", "README")


class SimulationError(RuntimeError):
    """The simulation stopped early: the service cannot be reached, or too many calls failed.

    Attributes:
        result: What the simulation did until it stopped (set by :func:`simulate`).
    """

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.result: SimulationResult | None = None


# --- The audience ---------------------------------------------------------------------------
@dataclass(frozen=True)
class Audience:
    """The simulated users and each one's held-out movies, stored like a CSR matrix.

    Attributes:
        user_ids: The users with at least one held-out movie, ascending (int64).
        offsets: ``held_out_ids[offsets[i]:offsets[i + 1]]`` are ``user_ids[i]``'s movies.
        held_out_ids: The held-out movie ids, ascending within each user.
    """

    user_ids: np.ndarray
    offsets: np.ndarray
    held_out_ids: np.ndarray

    @classmethod
    def from_pairs(cls, pairs: pl.DataFrame) -> Audience:
        """The audience of held-out ``(user_id, movie_id)`` pairs (other columns are ignored)."""
        ordered = pairs.select("user_id", "movie_id").unique().sort("user_id", "movie_id")
        users = ordered.get_column("user_id").to_numpy().astype(np.int64)
        user_ids, starts = np.unique(users, return_index=True)
        return cls(
            user_ids=user_ids,
            offsets=np.append(starts, len(users)).astype(np.int64),
            held_out_ids=ordered.get_column("movie_id").to_numpy().astype(np.int64),
        )

    def __len__(self) -> int:
        return len(self.user_ids)

    @property
    def pairs(self) -> int:
        """How many (user, held-out movie) pairs there are."""
        return len(self.held_out_ids)

    def held_out(self, user_id: int) -> np.ndarray:
        """The user's held-out movie ids, ascending.

        Raises:
            ValueError: ``user_id`` is not in the audience.
        """
        i = int(np.searchsorted(self.user_ids, user_id))
        if i == len(self.user_ids) or self.user_ids[i] != user_id:
            raise ValueError(f"user_id {user_id} is not in the audience")
        return self.held_out_ids[self.offsets[i] : self.offsets[i + 1]]

    def is_held_out(self, user_id: int, movie_ids: Sequence[int]) -> np.ndarray:
        """For each of ``movie_ids``, whether it is one of the user's held-out movies."""
        held = self.held_out(user_id)
        movies = np.asarray(movie_ids, dtype=np.int64)
        # A binary search in the sorted held-out ids: np.isin sorts both sides on every call.
        at = np.minimum(np.searchsorted(held, movies), max(len(held) - 1, 0))
        return held[at] == movies if len(held) else np.zeros(len(movies), dtype=bool)


@dataclass(frozen=True)
class AudienceSplit:
    """A MovieLens ratings table cut into the part models train on and the audience.

    Attributes:
        train: The training ratings (the input's columns and row order).
        test: The held-out ``user_id``, ``movie_id``, ``rating``, ``timestamp`` rows.
        audience: The users of ``test`` and their held-out movies.
    """

    train: pl.DataFrame
    test: pl.DataFrame
    audience: Audience


def split_audience(
    ratings: pl.DataFrame,
    *,
    test_fraction: float = DEFAULT_TEST_FRACTION,
    seed: int = DEFAULT_SPLIT_SEED,
) -> AudienceSplit:
    """Split ratings per user at random; the users with held-out movies are the audience.

    The split is :func:`~recommender.modeling.splits.split_interactions` (``random-per-user``):
    no (user, movie) pair is on both sides, every user keeps a training rating, and a user with
    n ratings holds out round(n * ``test_fraction``) of them (users with too few hold out none
    and are not in the audience).

    Args:
        ratings: Valid ratings (``user_id``, ``movie_id``, ``rating``, ``timestamp``), one per
            (user, movie).
        test_fraction: The share of each user's ratings held out, in (0, 1).
        seed: The split's seed.

    Raises:
        ValueError: ``test_fraction`` is outside (0, 1), or no user holds out a movie.
    """
    parts = split_interactions(
        ratings, kind="random-per-user", test_fraction=test_fraction, seed=seed
    )
    test = parts.test.select("user_id", "movie_id", "rating", "timestamp")
    train = ratings.join(
        test.select("user_id", "movie_id"),
        on=["user_id", "movie_id"],
        how="anti",
        maintain_order="left",
    )
    audience = Audience.from_pairs(test)
    if not len(audience):
        raise ValueError(
            f"no user holds out a movie at test_fraction {test_fraction}: "
            "the ratings are too few per user for an audience"
        )
    return AudienceSplit(train=train, test=test, audience=audience)


def load_split(
    source: str | Path = EMBEDDED_MOVIELENS,
    *,
    test_fraction: float = DEFAULT_TEST_FRACTION,
    seed: int = DEFAULT_SPLIT_SEED,
    cache_dir: Path | None = None,
    max_rejected_fraction: float = 0.01,
) -> tuple[MovieLensData, AudienceSplit]:
    """Load a MovieLens release, drop its invalid ratings and split it (:func:`split_audience`).

    Args:
        source: A MovieLens directory, zip or URL
            (:func:`~recommender.data.movielens.load_movielens`).
        test_fraction: The share of each user's ratings held out.
        seed: The split's seed.
        cache_dir: Where URL downloads are kept.
        max_rejected_fraction: The largest share of invalid ratings accepted.

    Raises:
        TooManyRejectedError: More invalid ratings than ``max_rejected_fraction``.
        ValueError: No valid ratings, or no user holds out a movie.
    """
    data = load_movielens(source, cache_dir=cache_dir)
    ratings = valid_ratings(
        data.ratings, source=source, max_rejected_fraction=max_rejected_fraction
    )
    return data, split_audience(ratings, test_fraction=test_fraction, seed=seed)


def load_audience(
    source: str | Path = EMBEDDED_MOVIELENS,
    *,
    test_fraction: float = DEFAULT_TEST_FRACTION,
    seed: int = DEFAULT_SPLIT_SEED,
    cache_dir: Path | None = None,
    max_rejected_fraction: float = 0.01,
) -> Audience:
    """The audience of a MovieLens release (:func:`load_split`)."""
    return load_split(
        source,
        test_fraction=test_fraction,
        seed=seed,
        cache_dir=cache_dir,
        max_rejected_fraction=max_rejected_fraction,
    )[1].audience


def write_training_part(
    source: str | Path,
    out_dir: Path,
    *,
    test_fraction: float = DEFAULT_TEST_FRACTION,
    seed: int = DEFAULT_SPLIT_SEED,
    cache_dir: Path | None = None,
    max_rejected_fraction: float = 0.01,
) -> AudienceSplit:
    """Write the training part of ``source`` as a MovieLens "latest" directory.

    ``out_dir`` gets ``ratings.csv`` (the training ratings, in the source's order and format),
    ``movies.csv`` and ``links.csv`` (the source's, all movies: copied byte for byte from an
    ml-latest source, written in that layout from an ml-100k one) and the source's
    ``README.txt`` (its licence asks for it to travel with the data). ``movierec data --ratings
    OUT_DIR`` ingests it; models trained on it have never seen the audience's held-out movies.
    Files already in ``out_dir`` with those names are replaced.

    Returns:
        The split; :attr:`AudienceSplit.audience` is the audience that goes with the part.

    Raises:
        ValueError: ``out_dir`` is the source directory, or as :func:`load_split`.
        RuntimeError: The written part does not read back as exactly the training ratings.
    """
    if Path(source).is_dir() and Path(source).resolve() == out_dir.resolve():
        raise ValueError(f"out_dir {out_dir} is the source directory: pick another one")
    data, split = load_split(
        source,
        test_fraction=test_fraction,
        seed=seed,
        cache_dir=cache_dir,
        max_rejected_fraction=max_rejected_fraction,
    )
    out_dir.mkdir(parents=True, exist_ok=True)
    ratings = split.train.rename(
        {"user_id": "userId", "movie_id": "movieId", "rating": "rating", "timestamp": "timestamp"}
    )
    _write_file(out_dir / "ratings.csv", ratings.write_csv().encode())
    copied = data.source.layout == "ml-latest"
    movies = _source_file(data.source, "movies.csv") if copied else None
    links = _source_file(data.source, "links.csv") if copied else None
    _write_file(out_dir / "movies.csv", movies or _movies_csv(data.movies))
    _write_file(out_dir / "links.csv", links or _links_csv(data.links))
    for name in _LICENCE_FILES:
        licence = _source_file(data.source, name)
        if licence is not None:
            _write_file(out_dir / "README.txt", licence)
            break
    back = load_movielens(out_dir).ratings
    if not back.equals(split.train):
        raise RuntimeError(
            f"{out_dir}/ratings.csv reads back as {back.height} ratings that differ from the "
            f"{split.train.height} training ratings written"
        )
    return split


def _source_file(info: SourceInfo, name: str) -> bytes | None:
    """The bytes of file ``name`` of a MovieLens directory or zip, or None when it has none.

    In a zip, the file is looked for beside the layout's files (at the root or in the one
    folder that holds them).
    """
    if info.path.is_dir():
        path = info.path / name
        return path.read_bytes() if path.is_file() else None
    with zipfile.ZipFile(info.path) as archive:
        members = archive.namelist()
        marker = "ratings.csv" if info.layout == "ml-latest" else "u.data"  # as the loader does
        folders = {m.rpartition("/")[0] for m in members if m.rpartition("/")[2] == marker}
        for folder in sorted(folders):
            member = f"{folder}/{name}" if folder else name
            if member in members:
                return archive.read(member)
    return None


def _movies_csv(movies: pl.DataFrame) -> bytes:
    """``movies.csv`` in the ml-latest layout: the year back in the title, genres joined."""
    return (
        movies.select(
            pl.col("movie_id").alias("movieId"),
            pl.when(pl.col("year").is_not_null())
            .then(pl.format("{} ({})", "title", "year"))
            .otherwise(pl.col("title"))
            .alias("title"),
            pl.when(pl.col("genres").list.len() > 0)
            .then(pl.col("genres").list.join("|"))
            .otherwise(pl.lit("(no genres listed)"))
            .alias("genres"),
        )
        .write_csv()
        .encode()
    )


def _links_csv(links: pl.DataFrame) -> bytes:
    return (
        links.select(
            pl.col("movie_id").alias("movieId"),
            pl.col("imdb_id").alias("imdbId"),
            pl.col("tmdb_id").alias("tmdbId"),
        )
        .write_csv()
        .encode()
    )


def _write_file(path: Path, content: bytes) -> None:
    """Write ``content`` to ``path`` through a temporary file, so a reader never sees half."""
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".part")
    try:
        with os.fdopen(fd, "wb") as out:
            out.write(content)
        os.replace(tmp, path)
    finally:
        Path(tmp).unlink(missing_ok=True)


# --- Clicks ---------------------------------------------------------------------------------
def _probability(name: str, value: float) -> None:
    if not 0.0 <= value <= 1.0:  # NaN fails too
        raise ValueError(f"{name} must be a probability within 0..1, got {value}")


@dataclass(frozen=True)
class ClickModel:
    """How a simulated user reacts to a list (the module docstring says why).

    Attributes:
        p_hit: The probability of clicking a shown movie that is one of the user's held-out
            movies (they watched it later), at rank 1.
        p_miss: The probability of clicking any other shown movie, at rank 1.
        p_like: The probability that a clicked held-out movie is also liked (other clicked
            movies never are).
        position_bias: The exponent b of the position factor ``1 / r**b`` that multiplies both
            click probabilities at rank r (1-based); 0 means rank does not matter.

    Raises:
        ValueError: A probability outside 0..1, or a negative or infinite ``position_bias``.
    """

    p_hit: float = 0.35
    p_miss: float = 0.02
    p_like: float = 0.5
    position_bias: float = 0.0

    def __post_init__(self) -> None:
        for name in ("p_hit", "p_miss", "p_like"):
            _probability(name, getattr(self, name))
        if not 0.0 <= self.position_bias < math.inf:
            raise ValueError(f"position_bias must be >= 0 and finite, got {self.position_bias}")

    def click_probabilities(self, hits: np.ndarray) -> np.ndarray:
        """The click probability of each shown movie, in rank order; ``hits`` marks held-out ones.

        ``P(click at rank r) = (p_hit if held out else p_miss) / r**position_bias``.
        """
        hits = np.asarray(hits, dtype=bool)
        ranks = np.arange(1, len(hits) + 1, dtype=np.float64)
        return np.where(hits, self.p_hit, self.p_miss) / ranks**self.position_bias

    def decide(self, hits: np.ndarray, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
        """Which shown movies are clicked and which of those are liked.

        Draws exactly two uniforms per shown movie whatever the outcome, so the same generator
        state and the same list always give the same decisions.

        Returns:
            ``(clicked, liked)``, boolean arrays in rank order; ``liked`` implies ``clicked``
            and a held-out movie.
        """
        hits = np.asarray(hits, dtype=bool)
        draws = rng.random((2, len(hits)))
        clicked = draws[0] < self.click_probabilities(hits)
        liked = clicked & hits & (draws[1] < self.p_like)
        return clicked, liked


def session_rng(seed: int, user_id: int, session: int) -> np.random.Generator:
    """The generator of user ``user_id``'s ``session``-th request (0-based) in a run seeded
    ``seed``: independent of the other requests and of which thread runs it."""
    return np.random.default_rng([seed, 1, user_id, session])


def draw_users(audience: Audience, *, n: int, seed: int) -> np.ndarray:
    """``n`` positions in ``audience.user_ids``, drawn uniformly with replacement."""
    return np.random.default_rng([seed, 0]).integers(0, len(audience), size=n)


def forwarded_for(user_id: int) -> str:
    """The ``X-Forwarded-For`` address of a simulated user: ``10.a.b.c`` from the user id's low
    24 bits (distinct for ids below 16,777,216)."""
    low = user_id % (1 << 24)
    return f"10.{low >> 16}.{(low >> 8) & 0xFF}.{low & 0xFF}"


def check_loopback(base_url: str) -> str:
    """``base_url`` without a trailing slash, when its host is on the loopback interface.

    Raises:
        ValueError: It is not an http(s) URL whose host is ``localhost``, in 127.0.0.0/8 or
            ``::1``.
    """
    parts = urlsplit(base_url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ValueError(
            f"base_url must be an http(s) URL such as http://127.0.0.1:3000, got {base_url!r}"
        )
    host = parts.hostname
    loopback = host == "localhost"
    if not loopback:
        try:
            loopback = ipaddress.ip_address(host).is_loopback
        except ValueError:
            loopback = False
    if not loopback:
        raise ValueError(
            f"base_url {base_url!r}: host {host!r} is not loopback (localhost, 127.0.0.0/8, ::1); "
            "the simulated audience posts made-up feedback and only talks to a service on this "
            "machine"
        )
    return base_url.rstrip("/")


def retry_after_seconds(value: str | None, *, default: float = 1.0) -> float:
    """The wait a ``Retry-After`` header asks for (seconds or an HTTP date), capped at
    :data:`MAX_RETRY_AFTER_SECONDS`; ``default`` when absent or unreadable."""
    if value is None:
        return default
    try:
        seconds = float(value)
    except ValueError:
        try:
            seconds = email.utils.parsedate_to_datetime(value).timestamp() - time.time()
        except (TypeError, ValueError):
            return default
    if math.isnan(seconds):
        return default
    return min(max(seconds, 0.0), MAX_RETRY_AFTER_SECONDS)


# --- The result -----------------------------------------------------------------------------
def _rate(numerator: int, denominator: int) -> float | None:
    return numerator / denominator if denominator else None


@dataclass(frozen=True)
class SimulationResult:
    """What a simulation did.

    Attributes:
        requests: ``/recommend`` requests started (one per session, retries not counted).
        impressions: Recommendation answers received (each has an impression id).
        answers_per_arm: Answers per arm the service named (:data:`NO_ARM` when none).
        answers_per_model_version: Answers per model version.
        clicks_per_arm: Clicks per arm.
        fallbacks: Answers where popular movies stood in for the model.
        movies_shown: Movies in all answers.
        held_out_shown: Of those, the users' held-out movies.
        clicks: Movies clicked; ``held_out_clicks`` of them held out.
        held_out_clicks: Clicks on held-out movies.
        likes: Movies liked.
        feedback_accepted: Feedback events the service answered 200.
        feedback_rejected: Feedback events it refused with a 4xx other than 429.
        rate_limited: 429 answers (each one waited for and retried).
        unavailable: 503 answers (each one waited for and retried).
        abandoned: Calls given up because waiting to retry would pass the time bound.
        errors: Calls that failed (a 4xx other than 429, a 5xx other than 503, an answer that
            is not recommendations).
        error_messages: The first distinct error messages, with their counts.
        elapsed_seconds: Wall time of the run.
        stopped_by: ``"requests"`` (all made), ``"time"`` (the time bound) or ``"error"``
            (``"running"`` in the results passed to ``progress``).
        impression_ids: Every impression id received when the run was asked to keep them
            (``keep_impression_ids``), to check against the service's log; not in
            :meth:`to_dict`.
    """

    requests: int
    impressions: int
    answers_per_arm: dict[str, int]
    answers_per_model_version: dict[str, int]
    clicks_per_arm: dict[str, int]
    fallbacks: int
    movies_shown: int
    held_out_shown: int
    clicks: int
    held_out_clicks: int
    likes: int
    feedback_accepted: int
    feedback_rejected: int
    rate_limited: int
    unavailable: int
    abandoned: int
    errors: int
    error_messages: dict[str, int]
    elapsed_seconds: float
    stopped_by: str
    impression_ids: frozenset[str] = field(default=frozenset(), repr=False)

    @property
    def requests_per_second(self) -> float:
        """``requests / elapsed_seconds`` (0 before any time passed)."""
        return self.requests / self.elapsed_seconds if self.elapsed_seconds > 0 else 0.0

    @property
    def held_out_click_rate(self) -> float | None:
        """``held_out_clicks / held_out_shown``; None when no held-out movie was shown."""
        return _rate(self.held_out_clicks, self.held_out_shown)

    @property
    def other_click_rate(self) -> float | None:
        """``(clicks - held_out_clicks) / (movies_shown - held_out_shown)``; None when nothing
        else was shown."""
        return _rate(self.clicks - self.held_out_clicks, self.movies_shown - self.held_out_shown)

    def to_dict(self) -> dict[str, Any]:
        """Every attribute but ``impression_ids``, plus ``requests_per_second``,
        ``held_out_click_rate`` and ``other_click_rate``."""
        return {
            name: getattr(self, name)
            for name in (*self.__dataclass_fields__, "requests_per_second")
            if name != "impression_ids"
        } | {
            "held_out_click_rate": self.held_out_click_rate,
            "other_click_rate": self.other_click_rate,
        }

    def summary(self) -> str:
        """A few lines for people."""

        def counts(values: dict[str, int]) -> str:
            return ", ".join(f"{key} {value}" for key, value in sorted(values.items())) or "-"

        def percent(rate: float | None) -> str:
            return "-" if rate is None else f"{100 * rate:.1f} %"

        lines = [
            f"{self.requests} requests in {self.elapsed_seconds:.1f} s "
            f"({self.requests_per_second:.1f}/s), stopped by {self.stopped_by}",
            f"answers per arm: {counts(self.answers_per_arm)}; per model version: "
            f"{counts(self.answers_per_model_version)}; fallbacks {self.fallbacks}",
            f"shown {self.movies_shown} movies, {self.held_out_shown} held out; clicked "
            f"{percent(self.held_out_click_rate)} of held-out, {percent(self.other_click_rate)} "
            f"of others",
            f"clicks {self.clicks} (per arm: {counts(self.clicks_per_arm)}), likes {self.likes}",
            f"feedback accepted {self.feedback_accepted}, rejected {self.feedback_rejected}; "
            f"429s {self.rate_limited}, 503s {self.unavailable}, abandoned {self.abandoned}, "
            f"errors {self.errors}",
        ]
        lines += [f"  {count} x {message}" for message, count in self.error_messages.items()]
        return "\n".join(lines)


class _Tally:
    """The counters the threads share, under one lock."""

    def __init__(self, *, keep_impression_ids: bool) -> None:
        self.keep_impression_ids = keep_impression_ids
        self.lock = threading.Lock()
        self.counts: Counter[str] = Counter()
        self.arms: Counter[str] = Counter()
        self.versions: Counter[str] = Counter()
        self.arm_clicks: Counter[str] = Counter()
        self.messages: Counter[str] = Counter()
        self.impression_ids: set[str] = set()

    def add(self, **counts: int) -> None:
        with self.lock:
            self.counts.update(counts)

    def answer(
        self, answer: _Answer, *, held_out: int, clicks: int, held_out_clicks: int, likes: int
    ) -> None:
        with self.lock:
            self.counts.update(
                impressions=1,
                fallbacks=int(answer.fallback),
                movies_shown=len(answer.movie_ids),
                held_out_shown=held_out,
                clicks=clicks,
                held_out_clicks=held_out_clicks,
                likes=likes,
            )
            self.arms[answer.arm] += 1
            self.versions[answer.model_version] += 1
            self.arm_clicks[answer.arm] += clicks
            if self.keep_impression_ids:
                self.impression_ids.add(answer.impression_id)

    def error(self, message: str) -> None:
        """Count a failed call; raise :class:`SimulationError` when too many failed."""
        with self.lock:
            self.counts["errors"] += 1
            if message in self.messages or len(self.messages) < MAX_ERROR_MESSAGES:
                self.messages[message] += 1
            errors, calls = self.counts["errors"], self.counts["calls"]
            first = next(iter(self.messages))
        if errors >= MIN_ERRORS_TO_STOP and errors > MAX_ERROR_FRACTION * calls:
            raise SimulationError(
                f"{errors} of {calls} calls failed (more than {MAX_ERROR_FRACTION:.0%}); "
                f"stopping. First error: {first}"
            )

    def result(self, *, elapsed: float, stopped_by: str) -> SimulationResult:
        with self.lock:
            c = self.counts
            return SimulationResult(
                requests=c["requests"],
                impressions=c["impressions"],
                answers_per_arm=dict(self.arms),
                answers_per_model_version=dict(self.versions),
                clicks_per_arm=dict(self.arm_clicks),
                fallbacks=c["fallbacks"],
                movies_shown=c["movies_shown"],
                held_out_shown=c["held_out_shown"],
                clicks=c["clicks"],
                held_out_clicks=c["held_out_clicks"],
                likes=c["likes"],
                feedback_accepted=c["feedback_accepted"],
                feedback_rejected=c["feedback_rejected"],
                rate_limited=c["rate_limited"],
                unavailable=c["unavailable"],
                abandoned=c["abandoned"],
                errors=c["errors"],
                error_messages=dict(self.messages),
                elapsed_seconds=elapsed,
                stopped_by=stopped_by,
                impression_ids=frozenset(self.impression_ids),
            )


@dataclass(frozen=True)
class _Answer:
    impression_id: str
    movie_ids: list[int]
    arm: str
    model_version: str
    fallback: bool


def _read_answer(response: httpx.Response) -> _Answer | str:
    """The parts of a ``/recommend`` answer the simulation uses, or what is wrong with it."""
    try:
        body = response.json()
        answer = _Answer(
            impression_id=body["impression_id"],
            movie_ids=[int(movie["movie_id"]) for movie in body["movies"]],
            arm=str(body.get("arm") or NO_ARM),
            model_version=str(body.get("model_version")),
            fallback=bool(body.get("fallback")),
        )
    except (ValueError, KeyError, TypeError) as exc:  # not JSON, or not recommendations
        return f"/recommend answered 200 with no recommendations ({type(exc).__name__}: {exc})"
    if not isinstance(answer.impression_id, str):
        return "/recommend answered 200 without an impression_id"
    return answer


def _error_message(path: str, response: httpx.Response) -> str:
    try:
        detail = response.json().get("error", response.text)
    except (ValueError, AttributeError):
        detail = response.text
    return f"{path} answered {response.status_code}: {str(detail)[:200]}"


# --- The run --------------------------------------------------------------------------------
class _Run:
    """One simulation: the settings every lane (thread) reads, and the shared tally."""

    def __init__(
        self,
        base_url: str,
        audience: Audience,
        clicks: ClickModel,
        *,
        seed: int,
        k: int,
        deadline: float,
        keep_impression_ids: bool,
    ) -> None:
        self.base_url = base_url
        self.audience = audience
        self.clicks = clicks
        self.seed = seed
        self.k = k
        self.deadline = deadline
        self.stop = threading.Event()
        self.tally = _Tally(keep_impression_ids=keep_impression_ids)

    def lane(self, users: np.ndarray) -> bool:
        """Run the sessions of ``users`` in order; True when all ran (not stopped)."""
        sessions: Counter[int] = Counter()
        clicked: dict[int, list[int]] = {}
        with httpx.Client(
            base_url=self.base_url, timeout=REQUEST_TIMEOUT_SECONDS, trust_env=False
        ) as client:
            for user in users.tolist():
                if self.stop.is_set() or time.monotonic() >= self.deadline:
                    return False
                rng = session_rng(self.seed, user, sessions[user])
                sessions[user] += 1
                self.session(client, user, rng, clicked.setdefault(user, []))
        return True

    def session(
        self, client: httpx.Client, user: int, rng: np.random.Generator, clicked: list[int]
    ) -> None:
        """One request of ``user`` and the feedback on it; ``clicked`` gains the clicks."""
        headers = {"X-Forwarded-For": forwarded_for(user)}
        body = {"user_id": user, "k": self.k, "exclude_movie_ids": clicked[-MAX_EXCLUDE:]}
        self.tally.add(requests=1)
        response = self.call(client, "/recommend", body, headers)
        if response is None:
            return
        if response.status_code != 200:
            self.tally.error(_error_message("/recommend", response))
            return
        answer = _read_answer(response)
        if isinstance(answer, str):
            self.tally.error(answer)
            return
        hits = self.audience.is_held_out(user, answer.movie_ids)
        clicks, likes = self.clicks.decide(hits, rng)
        self.tally.answer(
            answer,
            held_out=int(hits.sum()),
            clicks=int(clicks.sum()),
            held_out_clicks=int((clicks & hits).sum()),
            likes=int(likes.sum()),
        )
        for rank in np.flatnonzero(clicks).tolist():
            movie_id = answer.movie_ids[rank]
            clicked.append(movie_id)
            events = ("click", "like") if likes[rank] else ("click",)
            for event in events:
                self.feedback(client, user, movie_id, event, answer.impression_id, headers)

    def feedback(
        self,
        client: httpx.Client,
        user: int,
        movie_id: int,
        event: str,
        impression_id: str,
        headers: dict[str, str],
    ) -> None:
        body = {"user_id": user, "movie_id": movie_id, "event": event}
        response = self.call(client, "/feedback", {**body, "impression_id": impression_id}, headers)
        if response is None:
            return
        if response.status_code == 200:
            self.tally.add(feedback_accepted=1)
            return
        if 400 <= response.status_code < 500:
            self.tally.add(feedback_rejected=1)
        self.tally.error(_error_message("/feedback", response))

    def call(
        self, client: httpx.Client, path: str, body: dict[str, Any], headers: dict[str, str]
    ) -> httpx.Response | None:
        """POST ``body``; wait and retry on 429 and 503 within the time bound.

        Returns:
            The answer, or None when the call was given up (time bound or stop).

        Raises:
            SimulationError: The service cannot be reached or does not answer in time.
        """
        self.tally.add(calls=1)
        while True:
            try:
                response = client.post(path, json=body, headers=headers)
            except httpx.TimeoutException as exc:
                raise SimulationError(
                    f"{self.base_url}{path} did not answer within {REQUEST_TIMEOUT_SECONDS:g} s "
                    f"({type(exc).__name__})"
                ) from exc
            except httpx.TransportError as exc:
                raise SimulationError(
                    f"cannot reach {self.base_url}{path} ({exc}): is `bentoml serve` running?"
                ) from exc
            if response.status_code not in (429, 503):
                return response
            self.tally.add(**{"rate_limited" if response.status_code == 429 else "unavailable": 1})
            # At least 0.1 s: a "Retry-After: 0" must not turn into a busy loop.
            pause = max(0.1, retry_after_seconds(response.headers.get("retry-after")))
            if time.monotonic() + pause >= self.deadline:
                self.tally.add(abandoned=1)
                return None
            if self.stop.wait(pause):
                return None


def simulate(
    base_url: str,
    audience: Audience,
    clicks: ClickModel | None = None,
    *,
    seed: int = 0,
    max_requests: int = 2000,
    max_seconds: float = 300.0,
    concurrency: int = 4,
    k: int = 10,
    progress: Callable[[SimulationResult], None] | None = None,
    progress_seconds: float = 5.0,
    keep_impression_ids: bool = False,
) -> SimulationResult:
    """Run simulated users against the service at ``base_url`` (the module docstring tells how).

    The run ends after ``max_requests`` sessions or ``max_seconds`` of wall time, whichever
    comes first (a session under way finishes its feedback; no retry waits past the bound).
    The users are drawn from ``seed``; each session's decisions come from
    :func:`session_rng` of (``seed``, user, the user's session number), and one user's sessions
    always run in order on one thread (users are dealt to ``concurrency`` threads by their
    position in the audience), so the same seed and the same answers give the same clicks
    whatever the threads' timing.

    429 and 503 answers are retried after their ``Retry-After`` (at most
    :data:`MAX_RETRY_AFTER_SECONDS`); other failed calls are counted as errors.

    Args:
        base_url: The service, on the loopback interface.
        audience: The simulated users (:func:`load_audience`).
        clicks: The click model (default :class:`ClickModel`'s defaults).
        seed: The run's seed (>= 0).
        max_requests: At most this many sessions (1..10,000,000).
        max_seconds: At most this much wall time (> 0).
        concurrency: Threads, each with its own HTTP connection (1..64).
        k: Movies asked for per request.
        progress: Called with the result so far about every ``progress_seconds``.
        progress_seconds: How often ``progress`` is called (> 0).
        keep_impression_ids: Return every impression id received in
            :attr:`SimulationResult.impression_ids` (about 100 bytes each).

    Raises:
        ValueError: A bad argument, including a ``base_url`` off the loopback interface.
        SimulationError: The service could not be reached, or more than
            :data:`MAX_ERROR_FRACTION` of the calls failed (after at least
            :data:`MIN_ERRORS_TO_STOP`); its ``result`` holds what was done.
    """
    base_url = check_loopback(base_url)
    clicks = clicks or ClickModel()
    if seed < 0:
        raise ValueError(f"seed must be >= 0, got {seed}")
    if not 1 <= max_requests <= MAX_REQUESTS:
        raise ValueError(f"max_requests must be within 1..{MAX_REQUESTS:,}, got {max_requests}")
    if not 0 < max_seconds < math.inf:
        raise ValueError(f"max_seconds must be > 0 and finite, got {max_seconds}")
    if not 1 <= concurrency <= MAX_CONCURRENCY:
        raise ValueError(f"concurrency must be within 1..{MAX_CONCURRENCY}, got {concurrency}")
    if k < 1:
        raise ValueError(f"k must be >= 1, got {k}")
    if not progress_seconds > 0:
        raise ValueError(f"progress_seconds must be > 0, got {progress_seconds}")
    if not len(audience):
        raise ValueError("audience has no users")

    positions = draw_users(audience, n=max_requests, seed=seed)
    lanes = [
        audience.user_ids[positions[positions % concurrency == lane]] for lane in range(concurrency)
    ]
    started = time.monotonic()
    run = _Run(
        base_url,
        audience,
        clicks,
        seed=seed,
        k=k,
        deadline=started + max_seconds,
        keep_impression_ids=keep_impression_ids,
    )
    futures: list[Future[bool]] = []
    with ThreadPoolExecutor(max_workers=concurrency, thread_name_prefix="audience") as pool:
        try:
            futures = [pool.submit(run.lane, users) for users in lanes if len(users)]
            pending: set[Future[bool]] = set(futures)
            while pending:
                done, pending = wait(pending, timeout=progress_seconds, return_when=FIRST_EXCEPTION)
                if any(future.exception() is not None for future in done):
                    break
                if pending and progress is not None:
                    elapsed = time.monotonic() - started
                    progress(run.tally.result(elapsed=elapsed, stopped_by="running"))
        finally:
            run.stop.set()  # the other lanes finish their current call and return
    elapsed = time.monotonic() - started
    failure = next((f.exception() for f in futures if f.exception() is not None), None)
    if failure is None:
        stopped_by = "requests" if all(f.result() for f in futures) else "time"
    else:
        stopped_by = "error"
    result = run.tally.result(elapsed=elapsed, stopped_by=stopped_by)
    if failure is not None:
        if isinstance(failure, SimulationError):
            failure.result = result
        raise failure
    return result
