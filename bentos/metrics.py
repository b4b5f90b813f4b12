"""HTTP traffic metrics whose labels come from a fixed set, and the ``/metrics`` endpoint.

BentoML 1.4's own HTTP metrics label each request with its raw URL path, so every path a client
makes up (``GET /x123``, ``/assets/anything.js``) became a new series: 2,000 random paths grew
``/metrics`` from 2.9 MB to 90 MB. The service turns those off (``metrics.enabled: false``, which
also drops BentoML's ``/metrics`` route) and exports these instead, labelled by the route the
request was for (``other`` for any path the service does not serve), a method from a fixed set
and the status the service answered with:

* ``movierec_http_requests_total{route, method, status}``: request rate and error rate per route;
* ``movierec_http_request_duration_seconds{route}``: latency quantiles per route.

Under ``bentoml serve`` the worker processes share ``PROMETHEUS_MULTIPROC_DIR`` (BentoML sets it
for every worker), and ``/metrics`` sums what every worker recorded.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterable

import anyio.to_thread
from prometheus_client import (
    CONTENT_TYPE_LATEST,
    REGISTRY,
    CollectorRegistry,
    Counter,
    Histogram,
    generate_latest,
)
from prometheus_client.multiprocess import MultiProcessCollector
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import BaseRoute, Match, Route
from starlette.types import ASGIApp, Message, Receive, Scope, Send

OTHER = "other"
STATIC = "static"
#: The routes every service answers besides its API: BentoML's index page and OpenAPI
#: documents, its health probes (``/healthz`` is ``/livez``) and the metrics.
SYSTEM_ROUTES = frozenset(
    {"/", "/livez", "/healthz", "/readyz", "/metrics", "/docs.json", "/schema.json"}
)
METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"})
#: From 1 ms (an API answer takes 1-6 ms) to the 10 s traffic timeout.
DURATION_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)

REQUESTS = Counter(
    "movierec_http_requests",
    "HTTP requests answered, by route (other: a path the service does not serve), method "
    "(other: not a standard method) and status",
    ["route", "method", "status"],
)
DURATION = Histogram(
    "movierec_http_request_duration_seconds",
    "Time from a request's arrival to the end of its answer, by route",
    ["route"],
    buckets=DURATION_BUCKETS,
)


class HTTPMetrics:
    """Count and time every HTTP request, labelled from a fixed set whatever the client sends.

    The route label is the request's path when it is one of ``routes`` or
    :data:`SYSTEM_ROUTES`, ``static`` when one of ``static_routes`` (the web page's files)
    matches it, else ``other``. A request cancelled before its answer started is counted as a
    504: BentoML's traffic timeout cancels it and answers 504 outside this middleware.
    """

    def __init__(
        self, app: ASGIApp, *, routes: Iterable[str], static_routes: Iterable[BaseRoute] = ()
    ) -> None:
        self.app = app
        self.routes = SYSTEM_ROUTES | frozenset(routes)
        self.static_routes = tuple(static_routes)
        for route in self.routes:  # export zeros, so that rates and quantiles exist from the start
            DURATION.labels(route)

    def route(self, scope: Scope) -> str:
        """The route label of a request."""
        path = scope["path"]
        if path in self.routes:
            return path
        if any(route.matches(scope)[0] is Match.FULL for route in self.static_routes):
            return STATIC
        return OTHER

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        route = self.route(scope)
        method = scope["method"] if scope["method"] in METHODS else OTHER
        status: int | None = None

        async def send_status(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, send_status)
        except asyncio.CancelledError:
            status = status or 504
            raise
        finally:
            # Without a status the app raised: Starlette's error middleware answers 500.
            REQUESTS.labels(route, method, str(status or 500)).inc()
            DURATION.labels(route).observe(time.perf_counter() - started)


def metrics_app() -> Starlette:
    """``GET /metrics``: every worker's metrics in the Prometheus text format."""
    return Starlette(routes=[Route("/metrics", _metrics)])


async def _metrics(request: Request) -> Response:
    return Response(await anyio.to_thread.run_sync(exposition), media_type=CONTENT_TYPE_LATEST)


def exposition() -> bytes:
    """The metrics text: of all processes under ``PROMETHEUS_MULTIPROC_DIR``, else this one's."""
    registry = CollectorRegistry()
    try:
        MultiProcessCollector(registry)  # reads PROMETHEUS_MULTIPROC_DIR
    except ValueError:  # not set: the service runs in one process (the in-process tests)
        return generate_latest(REGISTRY)
    return generate_latest(registry)
