"""The header timeout of bentos/protocol.py on uvicorn (h11) on loopback, including the request
after an answer on a kept-alive connection, which the integration test does not reach."""

from __future__ import annotations

import socket
import time
from collections.abc import Iterator

import pytest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import PlainTextResponse
from starlette.routing import Route

from bentos.protocol import HeaderTimeoutH11Protocol
from support.servers import HOST, serving_in_thread

TIMEOUT = 0.5


async def _hello(request: Request) -> PlainTextResponse:
    return PlainTextResponse("hello")


@pytest.fixture(scope="module")
def port() -> Iterator[int]:
    class Protocol(HeaderTimeoutH11Protocol):
        header_timeout = TIMEOUT

    app = Starlette(routes=[Route("/", _hello)])
    with serving_in_thread(app, http=Protocol) as url:
        yield int(url.rsplit(":", 1)[1])


def _answer(sock: socket.socket) -> bytes:
    """One whole answer of ``_hello`` (its head and body may come in separate reads)."""
    sock.settimeout(5)
    answer = b""
    while not answer.endswith(b"hello"):
        answer += sock.recv(1024)
    return answer


def _closed_after(sock: socket.socket) -> float:
    """Seconds until the server closes ``sock`` (at most 5), reading whatever it sends."""
    started = time.monotonic()
    sock.settimeout(5)
    while sock.recv(1024):
        pass
    return time.monotonic() - started


@pytest.mark.parametrize("sent", [b"", b"GET / HTTP/1.1\r\nHost: x\r\nX-A"])
def test_a_half_sent_request_is_closed_after_the_timeout(port: int, sent: bytes) -> None:
    with socket.create_connection((HOST, port)) as sock:
        sock.sendall(sent)
        assert TIMEOUT - 0.1 <= _closed_after(sock) < TIMEOUT + 2


def test_a_half_sent_request_after_an_answer_is_closed_after_the_timeout(port: int) -> None:
    with socket.create_connection((HOST, port)) as sock:
        sock.sendall(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
        assert _answer(sock).startswith(b"HTTP/1.1 200")
        sock.sendall(b"GET / HTTP/1.1\r\nHo")
        assert _closed_after(sock) < TIMEOUT + 2  # not the 5 s keep-alive timeout


def test_a_slow_but_complete_request_is_served(port: int) -> None:
    with socket.create_connection((HOST, port)) as sock:
        sock.sendall(b"GET / HTTP/1.1\r\n")
        time.sleep(TIMEOUT / 2)
        sock.sendall(b"Host: x\r\n\r\n")
        assert _answer(sock).startswith(b"HTTP/1.1 200")
        time.sleep(TIMEOUT * 2)  # the head was complete: the timer is off while idle
        sock.sendall(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
        assert _answer(sock).startswith(b"HTTP/1.1 200")
