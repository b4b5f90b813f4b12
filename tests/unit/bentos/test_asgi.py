"""The service's ASGI pieces in front of a small Starlette app behind uvicorn on loopback: the
body guard (with the context isolation in the stack) and the page's static files."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx
import pytest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route
from starlette.types import ASGIApp

from bentos.asgi import IsolateResponseContext, RequestGuard, frontend_app
from support.servers import serving_in_thread


@contextmanager
def _serving(app: ASGIApp) -> Iterator[httpx.Client]:
    with serving_in_thread(app) as url, httpx.Client(base_url=url, timeout=10) as client:
        yield client


async def _echo(request: Request) -> JSONResponse:
    return JSONResponse({"size": len(await request.body())})


@pytest.fixture(scope="module")
def guarded() -> Iterator[httpx.Client]:
    app = Starlette(routes=[Route("/echo", _echo, methods=["POST", "GET"])])
    with _serving(RequestGuard(IsolateResponseContext(app), max_bytes=100)) as client:
        yield client


def test_guard_passes_json_bodies_within_the_limit(guarded: httpx.Client) -> None:
    response = guarded.post(
        "/echo", content=b"x" * 100, headers={"content-type": "application/json"}
    )
    assert (response.status_code, response.json()) == (200, {"size": 100})


def test_guard_refuses_a_declared_body_past_the_limit_with_413(guarded: httpx.Client) -> None:
    response = guarded.post(
        "/echo", content=b"x" * 101, headers={"content-type": "application/json"}
    )
    assert response.status_code == 413
    assert "larger than 100 bytes" in response.json()["error"]


def test_guard_refuses_a_chunked_body_past_the_limit_without_reading_it_all(
    guarded: httpx.Client,
) -> None:
    def chunks():  # no Content-Length: sent chunked
        for _ in range(10):
            yield b"x" * 50

    response = guarded.post("/echo", content=chunks(), headers={"content-type": "application/json"})
    assert response.status_code == 413


def test_guard_replays_a_chunked_body_within_the_limit(guarded: httpx.Client) -> None:
    def chunks():
        yield b"x" * 40
        yield b"y" * 40

    response = guarded.post("/echo", content=chunks(), headers={"content-type": "application/json"})
    assert (response.status_code, response.json()) == (200, {"size": 80})


@pytest.mark.parametrize("media_type", ["multipart/form-data; boundary=x", "text/plain"])
def test_guard_refuses_bodies_that_are_not_json_with_415(
    media_type: str, guarded: httpx.Client
) -> None:
    response = guarded.post("/echo", content=b"a=1", headers={"content-type": media_type})
    assert response.status_code == 415
    assert "application/json" in response.json()["error"]


def test_guard_leaves_other_methods_alone(guarded: httpx.Client) -> None:
    assert guarded.get("/echo", headers={"content-type": "text/plain"}).status_code == 200


def test_frontend_app_serves_index_files_and_folders_and_nothing_else(tmp_path: Path) -> None:
    (tmp_path / "assets").mkdir()
    (tmp_path / "index.html").write_text("<!doctype html><title>page</title>")
    (tmp_path / "favicon.svg").write_text("<svg/>")
    (tmp_path / "assets" / "app.js").write_text("console.log(1)")
    with _serving(frontend_app(tmp_path)) as client:
        assert "<title>page</title>" in client.get("/").text
        assert client.get("/favicon.svg").text == "<svg/>"
        assert client.get("/assets/app.js").text == "console.log(1)"
        assert client.get("/recommend").status_code == 404
        assert client.get("/assets/missing.js").status_code == 404
        assert client.get("/assets/%2e%2e/index.html").status_code == 404
