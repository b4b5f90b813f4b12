"""What the HTTP API does, without BentoML: request and response models, validation and
response shaping.

:class:`RecommenderAPI` holds a loaded :class:`~recommender.modeling.als.ALSRecommender` and the
:class:`~recommender.serving.catalog.Catalog` and has one method per endpoint, each taking its
request model and returning its response model. A request the service understood but cannot
serve raises :class:`RequestError` with the HTTP status to answer (404 for ids it does not know,
422 for a value it cannot use, such as an unknown genre); malformed requests never get this far,
their pydantic models refuse them. What a served model directory holds is
:mod:`recommender.serving.bundle`.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Annotated, Any, TypeVar

import numpy as np
from pydantic import BaseModel, ConfigDict, Field, StringConstraints, field_validator

from recommender.data.feedback import FEEDBACK_LOG_MAX_BYTES, FeedbackEvent, append_event
from recommender.modeling.als import (
    ALSRecommender,
    Recommendations,
    UnknownMovieError,
    UnknownUserError,
)
from recommender.serving.bundle import check_catalog_covers, read_bundle
from recommender.serving.catalog import Catalog, Movie, MoviesPage
from recommender.serving.impressions import impression_record, new_impression_id, user_key

_Event = TypeVar("_Event", bound=FeedbackEvent)

MAX_K = 100
MAX_IDS = 500
MAX_PAGE_SIZE = 100

# Ids are int64 everywhere (tables, model). Strict: JSON ``true`` or ``"5"`` is refused instead of
# being read as an id. ``ge=1`` rather than ``gt=0``: the service publishes OpenAPI 3.0, where
# exclusiveMinimum is not a number.
PositiveId = Annotated[int, Field(ge=1, le=2**63 - 1, strict=True)]
K = Annotated[int, Field(ge=1, le=MAX_K, strict=True)]
Genre = Annotated[str, StringConstraints(min_length=1, max_length=64)]
MovieIds = Annotated[list[PositiveId], Field(max_length=MAX_IDS)]


class RequestError(ValueError):
    """A well-formed request the service cannot serve; answer ``status_code`` with :attr:`body`.

    Args:
        message: What is wrong and what to send instead.
        status_code: The HTTP status (4xx).
        details: More JSON fields for the body, e.g. ``unknown_movie_ids``.
    """

    def __init__(self, message: str, *, status_code: int, **details: Any) -> None:
        super().__init__(message)
        self.status_code = status_code
        self.body: dict[str, Any] = {"error": message, **details}


# --- Requests -------------------------------------------------------------------------------
class _Request(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class RecommendRequest(_Request):
    """Top-k for a user; an unknown user gets popular movies (``fallback``)."""

    user_id: PositiveId
    k: K = 10
    exclude_movie_ids: MovieIds = Field(default_factory=list)
    genres: list[Genre] | None = Field(default=None, min_length=1, max_length=MAX_IDS)


SessionId = Annotated[str, StringConstraints(pattern=r"^[A-Za-z0-9_-]{1,64}$")]
"""An anonymous visitor's session, for the impression log: 1-64 letters, digits, ``-``, ``_``."""


class _AnonymousRequest(_Request):
    session_id: SessionId | None = None


class RecommendForLikedRequest(_AnonymousRequest):
    """Top-k for a visitor without history, from movies they like."""

    liked_movie_ids: list[PositiveId] = Field(min_length=1, max_length=MAX_IDS)
    k: K = 10
    exclude_movie_ids: MovieIds = Field(default_factory=list)
    genres: list[Genre] | None = Field(default=None, min_length=1, max_length=MAX_IDS)


class SimilarRequest(_AnonymousRequest):
    """The k movies closest to ``movie_id``."""

    movie_id: PositiveId
    k: K = 10


class PopularRequest(_AnonymousRequest):
    """The k most popular movies, optionally of one genre."""

    k: K = 10
    genre: Genre | None = None


class MoviesRequest(_Request):
    """One page of the catalog, optionally only titles containing ``query`` (any case)."""

    query: Annotated[str, StringConstraints(max_length=200)] | None = None
    page: Annotated[int, Field(ge=1, le=1_000_000, strict=True)] = 1
    page_size: Annotated[int, Field(ge=1, le=MAX_PAGE_SIZE, strict=True)] = 20


class ExplainRequest(_Request):
    """Why ``movie_id`` scores as it does for ``user_id``: up to ``n`` contributing movies."""

    user_id: PositiveId
    movie_id: PositiveId
    n: Annotated[int, Field(ge=1, le=MAX_K, strict=True)] = 10


MAX_CLOCK_SKEW_S = 300.0
"""How far in the future a client's event time may be (clocks disagree by seconds, not more)."""
MAX_EVENT_AGE_S = 7 * 86_400.0
"""How old an event a client may still report (a client that was offline for a while)."""


class Feedback(FeedbackEvent):
    """A feedback event as the API takes and returns it.

    The server stamps ``timestamp`` with the time it received the event; a client that sends
    its own (an event it queued while offline) must send one within the last
    :data:`MAX_EVENT_AGE_S` and at most :data:`MAX_CLOCK_SKEW_S` ahead of the server's clock.
    """

    user_id: PositiveId
    movie_id: PositiveId

    @field_validator("timestamp")
    @classmethod
    def _near_the_server_clock(cls, value: float) -> float:
        now = time.time()
        if not now - MAX_EVENT_AGE_S <= value <= now + MAX_CLOCK_SKEW_S:
            raise ValueError(
                f"timestamp must be unix seconds between {now - MAX_EVENT_AGE_S:.0f} (7 days ago) "
                f"and {now + MAX_CLOCK_SKEW_S:.0f} (5 minutes ahead); leave it out to use the "
                "time the server receives the event"
            )
        return value


# --- Responses ------------------------------------------------------------------------------
class ScoredMovie(Movie):
    """A recommended movie with the score it was ranked by."""

    score: float


class RecommendationsResponse(BaseModel):
    """A ranked list; ``fallback`` is true when popularity stood in for the model.

    ``impression_id`` names this answer in the impression log; feedback on one of its movies
    sends it back.
    """

    model_version: str
    impression_id: str
    fallback: bool
    movies: list[ScoredMovie]


class Contribution(Movie):
    """One of the user's movies and its part of the score; ``share`` is in -1..1."""

    score: float
    share: float


class ExplainResponse(BaseModel):
    """The explained ``movie``, its ``score`` and the largest contributions first."""

    model_version: str
    user_id: int
    movie: Movie
    score: float
    contributions: list[Contribution]


# --- The API --------------------------------------------------------------------------------
class RecommenderAPI:
    """One method per endpoint over a loaded model and its catalog.

    Args:
        model: The recommender.
        catalog: The catalog; it must hold every movie the model can recommend.
        model_version: What responses name as their model version.
        feedback_log: The JSON-lines event log feedback is appended to.
        impressions: Where each recommendation answer's impression record goes (the service's
            :class:`~recommender.serving.impressions.ImpressionWriter`); None logs nothing.
        feedback_log_max_bytes: The size past which that log rotates to a new segment.

    Raises:
        ValueError: The model knows movies that the catalog lacks.
    """

    def __init__(
        self,
        model: ALSRecommender,
        catalog: Catalog,
        *,
        model_version: str,
        feedback_log: Path,
        feedback_log_max_bytes: int = FEEDBACK_LOG_MAX_BYTES,
        impressions: Callable[[dict[str, Any]], None] | None = None,
    ) -> None:
        check_catalog_covers(model, catalog.movie_ids)
        self.model = model
        self.catalog = catalog
        self.model_version = model_version
        self.feedback_log = feedback_log
        self.feedback_log_max_bytes = feedback_log_max_bytes
        self.impressions = impressions

    @classmethod
    def load(
        cls,
        directory: Path,
        *,
        model_version: str,
        image_base_url: str,
        feedback_log: Path,
        feedback_log_max_bytes: int = FEEDBACK_LOG_MAX_BYTES,
        impressions: Callable[[dict[str, Any]], None] | None = None,
    ) -> RecommenderAPI:
        """Load a served model directory (:mod:`recommender.serving.bundle`)."""
        model, frame = read_bundle(directory)
        ranking = model.popular(k=len(model.movie_ids)).movie_ids
        return cls(
            model,
            Catalog(frame, image_base_url=image_base_url, ranking=ranking),
            model_version=model_version,
            feedback_log=feedback_log,
            feedback_log_max_bytes=feedback_log_max_bytes,
            impressions=impressions,
        )

    def recommend(self, request: RecommendRequest) -> RecommendationsResponse:
        """Top-k for ``user_id``; ids in ``exclude_movie_ids`` the model lacks are ignored."""
        with _model_errors():
            result = self.model.recommend(
                request.user_id,
                k=request.k,
                exclude=request.exclude_movie_ids,
                genres=request.genres,
            )
        return self._ranked(result, "recommend", user_key(request.user_id, None))

    def recommend_for_liked(self, request: RecommendForLikedRequest) -> RecommendationsResponse:
        """Top-k for a visitor from their liked movies (fold-in).

        Liked movies the model has no ratings for cannot be folded in and are skipped; when
        none is left the answer is the popular movies with ``fallback`` true.

        Raises:
            RequestError: 404 when a liked movie is not in the catalog.
        """
        self._require_in_catalog(request.liked_movie_ids)
        known = np.isin(request.liked_movie_ids, self.model.movie_ids)
        with _model_errors():
            result = self.model.recommend_for_liked(
                np.asarray(request.liked_movie_ids)[known],
                k=request.k,
                exclude=request.exclude_movie_ids,
                genres=request.genres,
            )
        return self._ranked(result, "recommend_for_liked", user_key(None, request.session_id))

    def similar(self, request: SimilarRequest) -> RecommendationsResponse:
        """The k movies closest to ``movie_id``.

        Raises:
            RequestError: 404 when the movie is not in the catalog or has no ratings.
        """
        self._require_in_catalog([request.movie_id])
        with _model_errors():
            result = self.model.similar(request.movie_id, k=request.k)
        return self._ranked(result, "similar", user_key(None, request.session_id))

    def popular(self, request: PopularRequest) -> RecommendationsResponse:
        """The k movies most users interacted with in training, optionally of one genre."""
        with _model_errors():
            result = self.model.popular(k=request.k, genre=request.genre)
        return self._ranked(result, "popular", user_key(None, request.session_id))

    def movies(self, request: MoviesRequest) -> MoviesPage:
        """A page of the catalog, most popular first, filtered by title when asked."""
        return self.catalog.search(request.query, page=request.page, page_size=request.page_size)

    def explain(self, request: ExplainRequest) -> ExplainResponse:
        """The user's movies that contribute most to ``movie_id``'s score, with their share.

        Raises:
            RequestError: 404 when the user has no history or the movie is unknown.
        """
        self._require_in_catalog([request.movie_id])
        with _model_errors():
            explanation = self.model.explain(request.user_id, request.movie_id, n=request.n)
        return ExplainResponse(
            model_version=self.model_version,
            user_id=explanation.user_id,
            movie=self.catalog[explanation.movie_id],
            score=explanation.score,
            contributions=[
                Contribution.model_construct(
                    **dict(self.catalog[part.movie_id]), score=part.score, share=part.share
                )
                for part in explanation.contributions
            ],
        )

    def feedback(self, event: _Event) -> _Event:
        """Append ``event`` to the feedback log (durably) and return it as stored.

        Raises:
            RequestError: 404 when the movie is not in the catalog.
        """
        self._require_in_catalog([event.movie_id])
        append_event(self.feedback_log, event, max_bytes=self.feedback_log_max_bytes)
        return event

    def _require_in_catalog(self, movie_ids: Iterable[int]) -> None:
        unknown = self.catalog.unknown(movie_ids)
        if unknown:
            raise RequestError(
                f"unknown movie id(s) {', '.join(map(str, unknown[:20]))}: use ids from /movies",
                status_code=404,
                unknown_movie_ids=unknown,
            )

    def _ranked(self, result: Recommendations, endpoint: str, user: str) -> RecommendationsResponse:
        """The answer, with a new impression id; its impression record goes to the log."""
        impression_id = new_impression_id()
        items = result.items
        if self.impressions is not None:
            self.impressions(
                impression_record(
                    impression_id=impression_id,
                    endpoint=endpoint,
                    user=user,
                    model_version=self.model_version,
                    movie_ids=[movie_id for movie_id, _ in items],
                    fallback=result.fallback,
                )
            )
        return RecommendationsResponse(
            model_version=self.model_version,
            impression_id=impression_id,
            fallback=result.fallback,
            movies=[
                ScoredMovie.model_construct(**dict(self.catalog[movie_id]), score=score)
                for movie_id, score in items
            ],
        )


@contextmanager
def _model_errors() -> Iterator[None]:
    """Turn the model's documented argument errors into request errors."""
    try:
        yield
    except UnknownMovieError as exc:
        raise RequestError(
            f"movie id(s) {', '.join(map(str, exc.movie_ids[:20]))} have no ratings in the model; "
            "pick movies from /popular or /movies",
            status_code=404,
            unknown_movie_ids=list(exc.movie_ids),
        ) from exc
    except UnknownUserError as exc:
        raise RequestError(str(exc), status_code=404) from exc
    except ValueError as exc:  # the model names the bad argument, e.g. an unknown genre
        raise RequestError(str(exc), status_code=422) from exc
