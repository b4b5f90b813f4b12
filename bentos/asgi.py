"""The ASGI pieces the service attaches: error answers, request guards, a rate limit, a context
fix and the web page's static files. Each exists because of a measurement or a BentoML 1.4
behaviour (docs/serving-performance.md explains them) or an abuse (docs/threat-model.md).
"""

from __future__ import annotations

import asyncio
import contextvars
import functools
import json
import logging
from collections.abc import Awaitable, Callable, Collection
from pathlib import Path
from typing import Any, TypeVar

from prometheus_client import Counter
from pydantic import ValidationError
from starlette.applications import Starlette
from starlette.datastructures import Headers
from starlette.requests import Request
from starlette.responses import FileResponse, JSONResponse, Response
from starlette.routing import BaseRoute, Mount, Route
from starlette.staticfiles import StaticFiles
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from recommender.serving.api import MAX_IDS, RequestError
from recommender.serving.ratelimit import RateLimiter, client_key, retry_after_header

_Req = TypeVar("_Req")
_Resp = TypeVar("_Resp")


def json_errors(
    method: Callable[[Any, _Req], Awaitable[_Resp]],
) -> Callable[[Any, _Req], Awaitable[_Resp | Response]]:
    """Answer a :class:`RequestError` with its status and ``{"error": ...}`` body, and
    :class:`NotReady` with a 503.

    BentoML 1.4 turns its own 4xx exceptions into a JSON *array* (bentoml/BentoML#5709), so the
    API answers its errors itself.
    """

    @functools.wraps(method)
    async def wrapper(self: Any, request: _Req, /) -> _Resp | Response:
        try:
            return await method(self, request)
        except RequestError as exc:
            return JSONResponse(exc.body, status_code=exc.status_code)
        except NotReady as exc:
            headers = {"Retry-After": str(exc.retry_after)}
            return JSONResponse({"error": str(exc)}, status_code=503, headers=headers)

    return wrapper


class NotReady(Exception):
    """The service cannot answer yet (its model is loading): a 503 with ``Retry-After``."""

    def __init__(self, message: str, *, retry_after: int) -> None:
        super().__init__(message)
        self.retry_after = retry_after


class DropClientErrors(logging.Filter):
    """Drop BentoML's ERROR traceback for a request its pydantic model refused (a 400)."""

    def filter(self, record: logging.LogRecord) -> bool:
        return not (record.exc_info and isinstance(record.exc_info[1], ValidationError))


class RequestGuard:
    """Refuse a request body that is not JSON (415) or larger than ``max_bytes`` (413).

    Both are answered before anything parses the body: BentoML would try to read a
    ``multipart/form-data`` body as a form (a 500 when it is not one) and reads any body whole.
    Only ``POST`` bodies are checked, the API's method. A declared ``Content-Length`` is checked
    at once; a chunked body is read up to the limit and handed on in one piece.
    """

    def __init__(self, app: ASGIApp, max_bytes: int) -> None:
        self.app = app
        self.max_bytes = max_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["method"] != "POST":
            await self.app(scope, receive, send)
            return
        headers = Headers(scope=scope)
        media_type = headers.get("content-type", "application/json").split(";")[0].strip()
        if media_type.lower() != "application/json":
            await _refuse(
                415,
                f"send the body as JSON (Content-Type: application/json), not {media_type!r}",
                scope,
                receive,
                send,
            )
            return
        declared = headers.get("content-length")
        if declared is not None:  # the server already checked that it is a number
            if int(declared) > self.max_bytes:
                await self._too_large(scope, receive, send)
            else:
                await self.app(scope, receive, send)
            return
        chunks: list[bytes] = []
        size = 0
        more_body = True
        while more_body:
            message = await receive()
            if message["type"] != "http.request":  # the client went away
                return
            chunks.append(message.get("body", b""))
            size += len(chunks[-1])
            if size > self.max_bytes:
                await self._too_large(scope, receive, send)
                return
            more_body = message.get("more_body", False)
        await self.app(scope, _replay(b"".join(chunks), receive), send)

    async def _too_large(self, scope: Scope, receive: Receive, send: Send) -> None:
        message = f"request body is larger than {self.max_bytes} bytes; send at most {MAX_IDS} ids"
        await _refuse(413, message, scope, receive, send)


_RATE_LIMITED = Counter(
    "movierec_requests_rate_limited",
    "Requests refused with a 429 because their client exceeded its rate, by path",
    ["path"],
)


class RateLimit:
    """Answer ``POST`` requests to ``paths`` with 429 and ``Retry-After`` past a client's rate.

    Each client (:func:`~recommender.serving.ratelimit.client_key`, behind ``trusted_hops``
    proxies) has a token bucket of ``burst`` requests refilled at ``rate_per_minute``
    (:class:`~recommender.serving.ratelimit.RateLimiter`, at most ``max_clients`` tracked). The
    check runs before the body is read. The limiter lives in the worker process, so a client
    spread over several workers (or replicas) gets the rate once per worker; docs/threat-model.md.
    """

    def __init__(
        self,
        app: ASGIApp,
        *,
        paths: Collection[str],
        rate_per_minute: float,
        burst: int,
        max_clients: int,
        trusted_hops: int,
    ) -> None:
        self.app = app
        self.paths = frozenset(paths)
        self.trusted_hops = trusted_hops
        self.limiter = RateLimiter(rate_per_minute, burst=burst, max_clients=max_clients)
        for path in self.paths:
            _RATE_LIMITED.labels(path)  # export zeros, so that rates exist from the start

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["method"] != "POST" or scope["path"] not in self.paths:
            await self.app(scope, receive, send)
            return
        peer = scope.get("client")
        forwarded = Headers(scope=scope).getlist("x-forwarded-for")
        key = client_key(peer[0] if peer else None, forwarded, trusted_hops=self.trusted_hops)
        wait = self.limiter.acquire(key)
        if not wait:
            await self.app(scope, receive, send)
            return
        _RATE_LIMITED.labels(scope["path"]).inc()
        retry_after = retry_after_header(wait)
        message = (
            f"too many requests to {scope['path']} from your address: at most "
            f"{self.limiter.rate_per_minute:g} a minute after a burst of {self.limiter.burst}; "
            f"retry after {retry_after} s"
        )
        answer = JSONResponse(
            {"error": message}, status_code=429, headers={"Retry-After": retry_after}
        )
        await answer(scope, receive, send)


async def _refuse(status: int, message: str, scope: Scope, receive: Receive, send: Send) -> None:
    await JSONResponse({"error": message}, status_code=status)(scope, receive, send)


def _replay(body: bytes, receive: Receive) -> Receive:
    sent = False

    async def replay() -> Message:
        nonlocal sent
        if sent:
            return await receive()
        sent = True
        return {"type": "http.request", "body": body, "more_body": False}

    return replay


class ValidationErrorMessages:
    """Answer a request body its pydantic model refused with ``{"error": "<field>: <problem>"}``.

    BentoML 1.4 validates the body before the API method runs and answers a failure itself,
    ``{"error": "1 validation error for RecommendRequestIODescriptor", "detail": [...]}``: it
    names the class BentoML generates, not what to fix, and its shape differs from the API's
    other errors (:func:`json_errors`). No BentoML hook changes that answer, so this middleware
    rewrites it: each problem becomes ``"k: Input should be less than or equal to 100"`` (the
    field's path, then pydantic's message), joined by ``"; "``. Only 400 answers to ``POST``
    requests are read; every other answer passes through untouched.
    """

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["method"] != "POST":
            await self.app(scope, receive, send)
            return
        start: Message | None = None
        body: list[bytes] = []

        async def rewrite(message: Message) -> None:
            nonlocal start
            if message["type"] == "http.response.start" and message["status"] == 400:
                start = message
                return
            if start is None or message["type"] != "http.response.body":
                await send(message)
                return
            body.append(message.get("body", b""))
            if message.get("more_body", False):
                return
            content = _readable_validation_error(b"".join(body))
            headers = [(k, v) for k, v in start["headers"] if k.lower() != b"content-length"]
            headers.append((b"content-length", str(len(content)).encode()))
            await send({**start, "headers": headers})
            await send({"type": "http.response.body", "body": content})

        await self.app(scope, receive, rewrite)


def _readable_validation_error(content: bytes) -> bytes:
    """BentoML's validation answer as ``{"error": ...}``; any other body unchanged."""
    try:
        answer = json.loads(content)
    except ValueError:
        return content
    detail = answer.get("detail") if isinstance(answer, dict) else None
    if not (isinstance(detail, list) and detail and all("msg" in d for d in detail)):
        return content
    problems = []
    for error in detail:
        field = ".".join(str(part) for part in error.get("loc", ()))
        message = error["msg"].removeprefix("Value error, ")
        problems.append(f"{field or 'request body'}: {message}")
    return json.dumps({"error": "; ".join(problems)}).encode()


class IsolateResponseContext:
    """Send a response's last message from an empty ``contextvars`` context.

    uvicorn arms the keep-alive timer and resumes reading the connection inside that call, and
    asyncio copies the current context into both callbacks. Inside the API that context holds the
    request (BentoML's ``ContextMiddleware``), so a request outlived its response and the next
    request on the connection started in a context that still held it; with BentoML's per-request
    timeout timers, requests stayed alive for up to the traffic timeout and full collections
    took 100-300 ms under load. (uvicorn's ``reset_contextvars`` option addresses this, but
    BentoML's worker does not set it.)
    """

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return

        async def isolated_send(message: Message) -> None:
            if message["type"] == "http.response.body" and not message.get("more_body", False):
                await asyncio.get_running_loop().create_task(
                    send(message), context=contextvars.Context()
                )
            else:
                await send(message)

        await self.app(scope, receive, isolated_send)


def frontend_app(dist: Path) -> Starlette:
    """The built web page: ``index.html`` at ``/``, the other files and folders at their paths.

    Only these paths are routed, so BentoML's passive mount leaves every other path (the API,
    ``/metrics``, ``/docs.json``) to the service.
    """
    routes: list[BaseRoute] = []
    for entry in sorted(dist.iterdir()):
        if entry.is_dir():
            routes.append(Mount(f"/{entry.name}", app=StaticFiles(directory=entry)))
        else:
            path = "/" if entry.name == "index.html" else f"/{entry.name}"
            routes.append(Route(path, functools.partial(_send_file, entry)))
    return Starlette(routes=routes)


async def _send_file(path: Path, request: Request) -> Response:
    return FileResponse(path)
