"""The BentoML service: the champion model and its catalog behind a JSON API and the web page.

Every endpoint is a ``POST`` with a JSON body (a pydantic model of :mod:`recommender.serving.api`,
where the logic lives); the methods here only hand the request over, count what they served and
turn :class:`~recommender.serving.api.RequestError` into a 4xx JSON answer ``{"error": ...}``.
``frontend/dist`` (the React page), when built, is served at ``/``.

The service configuration and the ASGI middlewares it attaches (``bentos/asgi.py``) come from
measurements on this service; docs/serving-performance.md explains each of them. BentoML settings
can still be overridden at deploy time, e.g.
``BENTOML_CONFIG_OPTIONS="services.MovieRecommender.workers=4"``.
"""

from __future__ import annotations

import gc
import logging
import os
import threading
from pathlib import Path

import anyio.to_thread
import bentoml
from bentoml.exceptions import NotFound
from prometheus_client import Counter

from bentos.asgi import (
    DropClientErrors,
    IsolateResponseContext,
    NotReady,
    RateLimit,
    RequestGuard,
    ValidationErrorMessages,
    frontend_app,
    json_errors,
)
from bentos.metrics import HTTPMetrics, metrics_app
from bentos.protocol import use_header_timeout
from recommender.data.logs import AppendLog
from recommender.serving.api import (
    ExplainRequest,
    ExplainResponse,
    Feedback,
    MoviesPage,
    MoviesRequest,
    PopularRequest,
    RecommendationsResponse,
    RecommenderAPI,
    RecommendForLikedRequest,
    RecommendRequest,
    Routing,
    ServedModel,
    SimilarRequest,
)
from recommender.serving.bundle import challenger_tag, model_version
from recommender.serving.impressions import ImpressionWriter, user_key
from recommender.settings import get_settings

_SETTINGS = get_settings()
_LOG = logging.getLogger(__name__)

# Labels from fixed sets only: the served models' versions (two at most), the endpoints, the
# five event types.
_IMPRESSIONS = Counter(
    "movierec_impressions",
    "Recommendation answers served (each one an impression), by model version and endpoint",
    ["model_version", "endpoint"],
)
_FALLBACKS = Counter(
    "movierec_recommendation_fallbacks",
    "Recommendation answers where popular movies stood in for the model, by model version and "
    "endpoint",
    ["model_version", "endpoint"],
)
_FEEDBACK = Counter(
    "movierec_feedback_events",
    "Feedback events appended to the log, by the version serving the user's arm and event",
    ["model_version", "event"],
)
_ENDPOINTS = ("recommend", "recommend_for_liked", "similar", "popular")


def _count(endpoint: str, response: RecommendationsResponse) -> RecommendationsResponse:
    _IMPRESSIONS.labels(response.model_version, endpoint).inc()
    if response.fallback:
        _FALLBACKS.labels(response.model_version, endpoint).inc()
    return response


def _stored(tag: str) -> bentoml.Model | None:
    """Model ``tag`` when the store holds it (inside a Bento: the Bento's own store), else None."""
    try:
        return bentoml.models.get(tag)
    except NotFound:
        return None


# The challenger under experiment, when there is one: the promotion sequence imports it and
# builds the Bento with it (bentos/store.py), and removes it when the experiment ends. Not a
# BentoModel attribute: a Bento built after the experiment must not ask for it.
_CHALLENGER = _stored(challenger_tag(_SETTINGS.bento_model_tag))


@bentoml.service(
    workers=2,
    traffic={"timeout": 10},
    # No trace exporter is configured by default, yet the OpenTelemetry middleware builds spans
    # for every request (~0.3 ms each); tracing an endpoint means overriding this.
    tracing={"excluded_urls": [".*"]},
    logging={"access": {"enabled": False}},
    # BentoML's HTTP metrics label requests by raw URL path; bentos/metrics.py replaces them.
    metrics={"enabled": False},
    envs=[{"name": "OPENBLAS_NUM_THREADS", "value": "1"}],
)
class MovieRecommender:
    """Movie recommendations from the champion ALS model, with a popularity fallback; with an
    experiment configured (``MOVIEREC_EXPERIMENT_MODE``), from a challenger too."""

    bento_model = bentoml.models.BentoModel(_SETTINGS.bento_model_tag)

    def __init__(self) -> None:
        logging.getLogger("bentoml._internal.server.http_app").addFilter(DropClientErrors())
        self._api: RecommenderAPI | None = None
        self._impressions = (
            ImpressionWriter(
                AppendLog(_SETTINGS.impression_log, max_bytes=_SETTINGS.feedback_log_max_bytes),
                flush_seconds=_SETTINGS.impression_flush_seconds,
            )
            if _SETTINGS.log_impressions
            else None
        )
        # uvicorn answers nothing, not even the probes, until __init__ returns, and loading a
        # model takes seconds (minutes for a large one): load it meanwhile, /readyz says when.
        threading.Thread(target=self._load, name="load-model", daemon=True).start()

    def _load(self) -> None:
        try:
            challenger = None
            if _SETTINGS.experiment_mode != "off":
                if _CHALLENGER is None:
                    _LOG.warning(
                        "experiment mode %s but no challenger model (%s): serving the champion "
                        "to everyone",
                        _SETTINGS.experiment_mode,
                        challenger_tag(_SETTINGS.bento_model_tag),
                    )
                else:
                    challenger = _served(_CHALLENGER)
            api = RecommenderAPI(
                _served(self.bento_model),
                challenger=challenger,
                routing=Routing(
                    mode=_SETTINGS.experiment_mode,
                    share=_SETTINGS.experiment_share,
                    salt=_SETTINGS.experiment_salt,
                ),
                feedback_log=_SETTINGS.feedback_log,
                feedback_log_max_bytes=_SETTINGS.feedback_log_max_bytes,
                impressions=self._impressions.record if self._impressions else None,
            )
        except Exception:
            # As when __init__ fails: the worker exits (uvicorn's start-up failure status) and
            # BentoML's arbiter reports it, rather than a worker that is never ready.
            _LOG.exception("could not load %s; stopping this worker", _SETTINGS.bento_model_tag)
            os._exit(3)
        # Everything loaded so far lives as long as the process: keep it out of the
        # collector's full passes (they took ~70 ms with ~130k tracked objects).
        gc.collect()
        gc.freeze()
        versions = {api.champion.version, api.served("challenger").version}
        for version in versions:  # export zeros, so that rates exist from the start
            for endpoint in _ENDPOINTS:
                _IMPRESSIONS.labels(version, endpoint)
                _FALLBACKS.labels(version, endpoint)
        if api.experiment:
            _LOG.info("experiment %s in %s mode", api.experiment, _SETTINGS.experiment_mode)
        self._api = api

    @bentoml.on_shutdown
    def _flush_impressions(self) -> None:
        """Write the impressions still queued before the worker exits."""
        if self._impressions is not None:
            self._impressions.close()

    async def __is_ready__(self) -> bool:
        """Whether the model is loaded (BentoML's ``/readyz`` answers 503 until then)."""
        return self._api is not None

    @property
    def api(self) -> RecommenderAPI:
        """The loaded model's API; :class:`NotReady` while it loads."""
        if self._api is None:
            raise NotReady("the model is still loading; retry in a few seconds", retry_after=5)
        return self._api

    @bentoml.api
    @json_errors
    async def recommend(self, request: RecommendRequest, /) -> RecommendationsResponse:
        """Top-k movies for a user; an unknown user gets popular movies (fallback true)."""
        return _count("recommend", self.api.recommend(request))

    @bentoml.api
    @json_errors
    async def recommend_for_liked(
        self, request: RecommendForLikedRequest, /
    ) -> RecommendationsResponse:
        """Top-k movies for a visitor without history, from the movies they like."""
        response = await anyio.to_thread.run_sync(self.api.recommend_for_liked, request)
        return _count("recommend_for_liked", response)

    @bentoml.api
    @json_errors
    async def similar(self, request: SimilarRequest, /) -> RecommendationsResponse:
        """The k movies most similar to a movie."""
        return _count("similar", self.api.similar(request))

    @bentoml.api
    @json_errors
    async def popular(self, request: PopularRequest, /) -> RecommendationsResponse:
        """The k most popular movies, optionally of one genre."""
        return _count("popular", self.api.popular(request))

    @bentoml.api
    @json_errors
    async def movies(self, request: MoviesRequest, /) -> MoviesPage:
        """The catalog, most popular first, filtered by a case-insensitive title substring."""
        return self.api.movies(request)

    @bentoml.api
    @json_errors
    async def explain(self, request: ExplainRequest, /) -> ExplainResponse:
        """The user's movies that contribute most to a movie's score, with their share."""
        return await anyio.to_thread.run_sync(self.api.explain, request)

    @bentoml.api
    @json_errors
    async def feedback(self, request: Feedback, /) -> Feedback:
        """Record a user's view, click, like, dislike or rating (0.5-5) of a movie."""
        api = self.api
        event = await anyio.to_thread.run_sync(api.feedback, request)
        arm = api.arm(user_key(event.user_id, None))
        _FEEDBACK.labels(api.served(arm).version, event.event).inc()
        return event


def _served(stored: bentoml.Model) -> ServedModel:
    return ServedModel.load(
        Path(stored.path),
        version=model_version(stored.info.labels, str(stored.tag)),
        image_base_url=_SETTINGS.tmdb_image_base_url,
    )


use_header_timeout(_SETTINGS.serve_header_timeout_seconds)
_FRONTEND = frontend_app(_SETTINGS.frontend_dist) if _SETTINGS.frontend_dist.is_dir() else None
MovieRecommender.add_asgi_middleware(
    HTTPMetrics,
    routes=[api.route for api in MovieRecommender.apis.values()],
    static_routes=_FRONTEND.routes if _FRONTEND else (),
)
if _SETTINGS.feedback_rate_per_minute > 0:
    # Outside RequestGuard: a client over its rate is refused before its body is read.
    MovieRecommender.add_asgi_middleware(
        RateLimit,
        paths=["/feedback"],
        rate_per_minute=_SETTINGS.feedback_rate_per_minute,
        burst=_SETTINGS.feedback_burst,
        max_clients=_SETTINGS.rate_limit_max_clients,
        trusted_hops=_SETTINGS.trusted_proxy_hops,
    )
MovieRecommender.add_asgi_middleware(RequestGuard, max_bytes=_SETTINGS.serve_max_body_bytes)
MovieRecommender.add_asgi_middleware(ValidationErrorMessages)
MovieRecommender.add_asgi_middleware(IsolateResponseContext)
MovieRecommender.mount_asgi_app(metrics_app(), name="metrics")
if _FRONTEND:
    MovieRecommender.mount_asgi_app(_FRONTEND, name="frontend")
