"""What the HTTP API does, without BentoML: request and response models, validation and
response shaping.

:class:`RecommenderAPI` holds the champion (a :class:`ServedModel`: the loaded
:class:`~recommender.modeling.als.ALSRecommender` and its
:class:`~recommender.serving.catalog.Catalog`), and during an experiment a challenger with the
:class:`Routing` between them, and has one method per endpoint, each taking its request model
and returning its response model. A request the service understood but cannot
serve raises :class:`RequestError` with the HTTP status to answer (404 for ids it does not know,
422 for a value it cannot use, such as an unknown genre); malformed requests never get this far,
their pydantic models refuse them. What a served model directory holds is
:mod:`recommender.serving.bundle`.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any, Literal, TypeVar

import numpy as np
from pydantic import BaseModel, ConfigDict, Field, StringConstraints, field_validator

from recommender.data.feedback import FEEDBACK_LOG_MAX_BYTES, FeedbackEvent, append_event
from recommender.experiments.assignment import CHALLENGER, CHAMPION, Arm, assign, experiment_id
from recommender.modeling.als import (
    ALSRecommender,
    Recommendations,
    UnknownMovieError,
    UnknownUserError,
)
from recommender.serving.bundle import check_catalog_covers, read_bundle
from recommender.serving.catalog import Catalog, Movie, MoviesPage
from recommender.serving.impressions import (
    ANONYMOUS,
    impression_record,
    new_impression_id,
    user_key,
)

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
    sends it back. ``arm`` is the experiment arm whose model answered (``champion`` when no
    experiment runs, ``experiment`` then being null).
    """

    model_version: str
    arm: Arm
    experiment: str | None
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
@dataclass(frozen=True)
class ServedModel:
    """A model, the catalog it ships with and the version responses name.

    Raises:
        ValueError: The model knows movies that the catalog lacks.
    """

    model: ALSRecommender
    catalog: Catalog
    version: str

    def __post_init__(self) -> None:
        check_catalog_covers(self.model, self.catalog.movie_ids)

    @classmethod
    def load(cls, directory: Path, *, version: str, image_base_url: str) -> ServedModel:
        """Load a served model directory (:mod:`recommender.serving.bundle`)."""
        model, frame = read_bundle(directory)
        ranking = model.popular(k=len(model.movie_ids)).movie_ids
        return cls(model, Catalog(frame, image_base_url=image_base_url, ranking=ranking), version)

    def require_in_catalog(self, movie_ids: Iterable[int]) -> None:
        """Raise a 404 :class:`RequestError` naming the ids the catalog does not hold."""
        unknown = self.catalog.unknown(movie_ids)
        if unknown:
            raise RequestError(
                f"unknown movie id(s) {', '.join(map(str, unknown[:20]))}: use ids from /movies",
                status_code=404,
                unknown_movie_ids=unknown,
            )


ExperimentMode = Literal["off", "shadow", "ab"]


@dataclass(frozen=True)
class Routing:
    """How requests are split between the champion and a challenger (docs/experiments.md).

    ``off``: the champion answers everyone. ``shadow``: the champion answers everyone and the
    challenger ranks every request too; its list goes to the impression log only. ``ab``:
    ``share`` percent of users (by :func:`~recommender.experiments.assignment.assign`) get the
    challenger's answers. ``salt`` extends the experiment id, reshuffling users.
    """

    mode: ExperimentMode = "off"
    share: int = 10
    salt: str = ""


_Rank = Callable[[ServedModel], Recommendations]


class RecommenderAPI:
    """One method per endpoint over the champion (and a challenger under experiment).

    Args:
        champion: The model that answers when no experiment says otherwise.
        challenger: The model under experiment; ignored when ``routing.mode`` is ``off`` (or
            when it is the champion's version).
        routing: How requests are split between the two.
        feedback_log: The JSON-lines event log feedback is appended to.
        impressions: Where each recommendation answer's impression record goes (the service's
            :class:`~recommender.serving.impressions.ImpressionWriter`); None logs nothing.
        feedback_log_max_bytes: The size past which that log rotates to a new segment.
    """

    def __init__(
        self,
        champion: ServedModel,
        *,
        feedback_log: Path,
        challenger: ServedModel | None = None,
        routing: Routing = Routing(),
        feedback_log_max_bytes: int = FEEDBACK_LOG_MAX_BYTES,
        impressions: Callable[[dict[str, Any]], None] | None = None,
    ) -> None:
        self.champion = champion
        active = (
            challenger is not None
            and routing.mode != "off"
            and challenger.version != champion.version
        )
        self.challenger = challenger if active else None
        self.routing = routing
        self.experiment = (
            experiment_id(champion.version, challenger.version, salt=routing.salt)
            if active and challenger is not None
            else None
        )
        self.feedback_log = feedback_log
        self.feedback_log_max_bytes = feedback_log_max_bytes
        self.impressions = impressions

    @property
    def model_version(self) -> str:
        """The champion's version."""
        return self.champion.version

    def arm(self, user: str) -> Arm:
        """The arm that answers ``user`` (a :func:`~recommender.serving.impressions.user_key`):
        the challenger only in ``ab`` mode, for the users the assignment gives it. A visitor
        without a user or session id cannot be assigned stickily and gets the champion."""
        if self.experiment is None or self.routing.mode != "ab" or user == ANONYMOUS:
            return CHAMPION
        return assign(self.experiment, user, share=self.routing.share)

    def served(self, arm: Arm) -> ServedModel:
        """The model of ``arm``."""
        return self.challenger if arm == CHALLENGER and self.challenger else self.champion

    def recommend(self, request: RecommendRequest) -> RecommendationsResponse:
        """Top-k for ``user_id``; ids in ``exclude_movie_ids`` the model lacks are ignored."""

        def rank(served: ServedModel) -> Recommendations:
            return served.model.recommend(
                request.user_id,
                k=request.k,
                exclude=request.exclude_movie_ids,
                genres=request.genres,
            )

        return self._answer("recommend", user_key(request.user_id, None), rank)

    def recommend_for_liked(self, request: RecommendForLikedRequest) -> RecommendationsResponse:
        """Top-k for a visitor from their liked movies (fold-in).

        Liked movies the model has no ratings for cannot be folded in and are skipped; when
        none is left the answer is the popular movies with ``fallback`` true.

        Raises:
            RequestError: 404 when a liked movie is not in the catalog.
        """

        def rank(served: ServedModel) -> Recommendations:
            served.require_in_catalog(request.liked_movie_ids)
            known = np.isin(request.liked_movie_ids, served.model.movie_ids)
            return served.model.recommend_for_liked(
                np.asarray(request.liked_movie_ids)[known],
                k=request.k,
                exclude=request.exclude_movie_ids,
                genres=request.genres,
            )

        return self._answer("recommend_for_liked", user_key(None, request.session_id), rank)

    def similar(self, request: SimilarRequest) -> RecommendationsResponse:
        """The k movies closest to ``movie_id``.

        Raises:
            RequestError: 404 when the movie is not in the catalog or has no ratings.
        """

        def rank(served: ServedModel) -> Recommendations:
            served.require_in_catalog([request.movie_id])
            return served.model.similar(request.movie_id, k=request.k)

        return self._answer("similar", user_key(None, request.session_id), rank)

    def popular(self, request: PopularRequest) -> RecommendationsResponse:
        """The k movies most users interacted with in training, optionally of one genre."""

        def rank(served: ServedModel) -> Recommendations:
            return served.model.popular(k=request.k, genre=request.genre)

        return self._answer("popular", user_key(None, request.session_id), rank)

    def movies(self, request: MoviesRequest) -> MoviesPage:
        """A page of the catalog, most popular first, filtered by title when asked."""
        return self.champion.catalog.search(
            request.query, page=request.page, page_size=request.page_size
        )

    def explain(self, request: ExplainRequest) -> ExplainResponse:
        """The user's movies that contribute most to ``movie_id``'s score (by the model of the
        user's arm), with their share.

        Raises:
            RequestError: 404 when the user has no history or the movie is unknown.
        """
        served = self.served(self.arm(user_key(request.user_id, None)))
        served.require_in_catalog([request.movie_id])
        with _model_errors():
            explanation = served.model.explain(request.user_id, request.movie_id, n=request.n)
        return ExplainResponse(
            model_version=served.version,
            user_id=explanation.user_id,
            movie=served.catalog[explanation.movie_id],
            score=explanation.score,
            contributions=[
                Contribution.model_construct(
                    **dict(served.catalog[part.movie_id]), score=part.score, share=part.share
                )
                for part in explanation.contributions
            ],
        )

    def feedback(self, event: _Event) -> _Event:
        """Append ``event`` to the feedback log (durably) and return it as stored.

        Raises:
            RequestError: 404 when the movie is in no served model's catalog.
        """
        if self.challenger is None or self.challenger.catalog.unknown([event.movie_id]):
            self.champion.require_in_catalog([event.movie_id])
        append_event(self.feedback_log, event, max_bytes=self.feedback_log_max_bytes)
        return event

    def _answer(self, endpoint: str, user: str, rank: _Rank) -> RecommendationsResponse:
        """Rank with the model of the user's arm (and, in shadow mode, with the challenger
        too); log the impression; answer with a new impression id."""
        arm = self.arm(user)
        served = self.served(arm)
        with _model_errors():
            result = rank(served)
        impression_id = new_impression_id()
        items = result.items
        experiment = self.experiment if self._in_experiment(user) else None
        if self.impressions is not None:
            shadow = self._shadow(rank)
            self.impressions(
                impression_record(
                    impression_id=impression_id,
                    endpoint=endpoint,
                    user=user,
                    model_version=served.version,
                    movie_ids=[movie_id for movie_id, _ in items],
                    fallback=result.fallback,
                    experiment=experiment,
                    arm=arm,
                    shadow=shadow,
                )
            )
        return RecommendationsResponse(
            model_version=served.version,
            arm=arm,
            experiment=experiment,
            impression_id=impression_id,
            fallback=result.fallback,
            movies=[
                ScoredMovie.model_construct(**dict(served.catalog[movie_id]), score=score)
                for movie_id, score in items
            ],
        )

    def _in_experiment(self, user: str) -> bool:
        return self.experiment is not None and (self.routing.mode == "shadow" or user != ANONYMOUS)

    def _shadow(self, rank: _Rank) -> tuple[str, list[int]] | None:
        """The challenger's version and list for the same request, in shadow mode."""
        if self.routing.mode != "shadow" or self.challenger is None:
            return None
        try:
            with _model_errors():
                result = rank(self.challenger)
        except RequestError:  # e.g. a movie only the champion knows: nothing to compare
            return None
        return self.challenger.version, result.movie_ids


@contextmanager
def _model_errors() -> Iterator[None]:
    """Turn the model's documented argument errors into request errors."""
    try:
        yield
    except RequestError:
        raise  # already an answer (a catalog check inside the ranking)
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
