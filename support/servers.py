"""Running the service in tests and benchmarks: its environment and a server subprocess."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

HOST = "127.0.0.1"


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
) -> Iterator[str]:
    """Start ``command`` in its own process group and yield its base URL once ``/readyz`` is 200.

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
        while True:
            if process.poll() is not None:
                raise RuntimeError(f"{command[:4]} exited with {process.returncode}; see {log}")
            try:
                if httpx.get(f"{url}/readyz", timeout=5).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            if time.monotonic() > deadline:
                raise RuntimeError(f"{url}/readyz not ready in {timeout} s; see {log}")
            time.sleep(0.2)
        yield url
    finally:
        os.killpg(process.pid, signal.SIGTERM)
        try:
            process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait()
