"""A read timeout for request heads, which uvicorn lacks.

uvicorn 0.54 (under BentoML's worker) times a connection only between requests (keep-alive, 5 s);
from the moment a connection opens, or the next request's first byte arrives, until the request
line and headers are complete, nothing is timed: 400 half-sent requests were still held after
70 s (a "slowloris" attack ties up connections and memory this way). BentoML's worker builds
uvicorn's ``Config`` itself, with the default protocol ``"auto"`` and no way to pass another, so
:func:`use_header_timeout` points uvicorn's ``"auto"`` entry at :class:`HeaderTimeoutH11Protocol`
(``"auto"`` resolves to h11 here anyway: ``httptools`` is not installed).
"""

from __future__ import annotations

import asyncio

import h11
import uvicorn.config
from uvicorn.protocols.http.h11_impl import H11Protocol


class HeaderTimeoutH11Protocol(H11Protocol):
    """uvicorn's h11 protocol, closing a connection whose request head takes longer than
    :attr:`header_timeout` seconds in all (a trickle of bytes does not extend it)."""

    header_timeout = 10.0
    _header_timer: asyncio.TimerHandle | None = None

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self._arm_header_timer()

    def data_received(self, data: bytes) -> None:
        super().data_received(data)
        if self.conn.their_state is h11.IDLE:  # a request head has begun, not yet complete
            self._arm_header_timer()
        else:
            self._cancel_header_timer()

    def connection_lost(self, exc: Exception | None) -> None:
        self._cancel_header_timer()
        super().connection_lost(exc)

    def _arm_header_timer(self) -> None:
        if self._header_timer is None:
            self._header_timer = self.loop.call_later(self.header_timeout, self._header_timed_out)

    def _cancel_header_timer(self) -> None:
        if self._header_timer is not None:
            self._header_timer.cancel()
            self._header_timer = None

    def _header_timed_out(self) -> None:
        self._header_timer = None
        if self.conn.their_state is h11.IDLE and not self.transport.is_closing():
            self.transport.close()


def use_header_timeout(seconds: float) -> None:
    """Make uvicorn's default HTTP protocol :class:`HeaderTimeoutH11Protocol` with a timeout of
    ``seconds``; effective for servers whose ``Config`` is loaded afterwards (BentoML's worker
    loads it after importing the service)."""
    HeaderTimeoutH11Protocol.header_timeout = seconds
    uvicorn.config.HTTP_PROTOCOLS["auto"] = f"{__name__}:{HeaderTimeoutH11Protocol.__name__}"
