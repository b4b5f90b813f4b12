"""Running the service in tests and benchmarks: its environment and a server subprocess."""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
import uvicorn
from starlette.types import ASGIApp

from recommender.settings import configure_process

HOST = "127.0.0.1"
READY_IN_A_ROW = 20
"""Consecutive 200s from ``/readyz``, each on a new connection, that count as every worker ready
(a worker still loading would have had to be passed over by all of them)."""


@dataclass(frozen=True)
class ServingEnv:
    """Where the service's files are, and the environment variables that point at them."""

    env: dict[str, str]
    data_dir: Path
    frontend_dist: Path
    model_tag: str

    @property
    def feedback_log(self) -> Path:
        return self.data_dir / "raw" / "feedback" / "events.jsonl"


@contextmanager
def environment(variables: dict[str, str]) -> Iterator[None]:
    """Set environment ``variables`` for the duration of the block."""
    with pytest.MonkeyPatch.context() as patch:
        for name, value in variables.items():
            patch.setenv(name, value)
        yield


def isolated_env(home: Path) -> dict[str, str]:
    """Point this process at a BentoML home and a data directory under ``home`` (so that models
    are imported into that store) and return its environment, for a server subprocess."""
    os.environ.update(
        {
            "BENTOML_HOME": str(home / "bentoml"),
            "BENTOML_DO_NOT_TRACK": "true",
            "MOVIEREC_DATA_DIR": str(home / "data"),
        }
    )
    configure_process()
    return dict(os.environ)


def readiness_streak(url: str, streak: int, *, timeout: float = 5) -> int:
    """``streak + 1`` when the health endpoint ``url`` answers 200 on a new connection, else 0:
    ready means :data:`READY_IN_A_ROW` in a row."""
    try:
        return streak + 1 if httpx.get(url, timeout=timeout).status_code == 200 else 0
    except httpx.TransportError:
        return 0


def free_port() -> int:
    """A port that was free on the loopback interface a moment ago."""
    with socket.socket() as sock:
        sock.bind((HOST, 0))
        return sock.getsockname()[1]


@contextmanager
def running_server(
    command: list[str],
    *,
    port: int,
    env: dict[str, str],
    cwd: Path,
    log: Path,
    timeout: float = 120.0,
    wait_ready: bool = True,
) -> Iterator[str]:
    """Start ``command`` in its own process group and yield its base URL once ``/readyz`` is 200
    (at once with ``wait_ready=False``) on :data:`READY_IN_A_ROW` new connections in a row:
    each worker of ``bentoml serve`` loads its model on its own and answers its own probes, so
    one 200 can come from one ready worker while another still answers 503.

    The group is terminated (then killed after 30 s) on exit; its output goes to ``log``.

    Raises:
        RuntimeError: The process exits or is not ready within ``timeout`` seconds.
    """
    url = f"http://{HOST}:{port}"
    with log.open("wb") as out:
        process = subprocess.Popen(
            command, env=env, cwd=cwd, stdout=out, stderr=out, start_new_session=True
        )
    try:
        deadline = time.monotonic() + timeout
        ready = 0
        while wait_ready:
            if process.poll() is not None:
                raise RuntimeError(f"{command[:4]} exited with {process.returncode}; see {log}")
            ready = readiness_streak(f"{url}/readyz", ready)
            if ready >= READY_IN_A_ROW:
                break
            if time.monotonic() > deadline:
                raise RuntimeError(f"{url}/readyz not ready in {timeout} s; see {log}")
            time.sleep(0.05 if ready else 0.2)
        yield url
    finally:
        with contextlib.suppress(ProcessLookupError):  # the group is gone (a kill -9 test)
            os.killpg(process.pid, signal.SIGTERM)
        try:
            process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait()


@contextmanager
def serving_in_thread(app: ASGIApp, **config: Any) -> Iterator[str]:
    """Serve ``app`` with uvicorn (more ``config`` options allowed) in a thread of this process
    on a free loopback port; yield its base URL once it has started."""
    port = free_port()
    server = uvicorn.Server(
        uvicorn.Config(app, host=HOST, port=port, log_level="warning", **config)
    )
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    try:
        while not server.started:
            if not thread.is_alive():
                raise RuntimeError("uvicorn did not start")
            thread.join(0.02)
        yield f"http://{HOST}:{port}"
    finally:
        server.should_exit = True
        thread.join()
