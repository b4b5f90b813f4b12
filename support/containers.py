"""Containers in tests and benchmarks: the Docker engine, the images `make image` builds, and a
container's HTTP service on loopback.

Locally the container tests skip when no Docker engine answers; with ``CI=true`` or
``MOVIEREC_REQUIRE_CONTAINERS=1`` (set by ``.ci/run``) they fail instead. ``BASE_IMAGE`` (read
by the Makefile) picks the base of both images: ``.ci/run`` sets the local Debian one.
"""

from __future__ import annotations

import os
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

from support.servers import READY_IN_A_ROW, readiness_streak

PROJECT_ROOT = Path(__file__).resolve().parent.parent
REQUIRE_CONTAINERS = "MOVIEREC_REQUIRE_CONTAINERS"


def containers_required() -> bool:
    """True when a missing Docker engine must fail the container tests instead of skipping."""
    return os.environ.get("CI") == "true" or os.environ.get(REQUIRE_CONTAINERS) == "1"


def docker(*args: str, timeout: float = 120) -> str:
    """Run ``docker args`` and return its standard output.

    Raises:
        RuntimeError: The command failed; the message holds the end of its output.
    """
    run = subprocess.run(
        ["docker", *args], capture_output=True, text=True, timeout=timeout, check=False
    )
    if run.returncode != 0:
        output = (run.stdout + run.stderr)[-6000:]
        raise RuntimeError(
            f"docker {' '.join(args[:3])} ... exited with {run.returncode}:\n{output}"
        )
    return run.stdout.strip()


def remove_container(name: str) -> None:
    """``docker rm --force name``; a container that does not exist is not an error."""
    try:
        docker("rm", "--force", name)
    except RuntimeError as exc:
        if "No such container" not in str(exc):
            raise


def engine_available() -> bool:
    """True when ``docker`` is on PATH and its engine answers."""
    try:
        docker("info", "--format", "{{.ServerVersion}}", timeout=30)
    except (OSError, subprocess.SubprocessError, RuntimeError):
        return False
    return True


@dataclass(frozen=True)
class Images:
    """The two images of one ``make image`` run."""

    bento: str
    project: str


def build_images(*, tag: str, env: dict[str, str], log: Path) -> Images:
    """``make image IMAGE_TAG=tag`` (the Bento and the project image), output to ``log``.

    ``env`` is the whole environment of ``make``: ``BENTOML_HOME`` and
    ``MOVIEREC_BENTO_MODEL_TAG`` say which model the Bento packages, ``BASE_IMAGE`` the base.

    Raises:
        RuntimeError: The build failed; the message ends with the log's last lines.
    """
    with log.open("wb") as out:
        run = subprocess.run(
            ["make", "image", f"IMAGE_TAG={tag}"],
            cwd=PROJECT_ROOT,
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
            timeout=1800,
            check=False,
        )
    if run.returncode != 0:
        tail = "\n".join(log.read_text(errors="replace").splitlines()[-40:])
        raise RuntimeError(f"make image failed ({run.returncode}); {log}:\n{tail}")
    return Images(bento=f"movie-recommender:{tag}", project=f"movierec:{tag}")


def image_size_mb(image: str) -> float:
    """The image's size in MB (10^6 bytes, as ``docker image ls`` counts)."""
    return int(docker("image", "inspect", "--format", "{{.Size}}", image)) / 1e6


def wait_ready(container: str, url: str, *, timeout: float) -> None:
    """Poll ``url`` (a health endpoint the container serves) until it answers 200
    :data:`~support.servers.READY_IN_A_ROW` times in a row (every worker has loaded).

    Raises:
        RuntimeError: The container stopped, or did not answer within ``timeout`` seconds (the
            message holds its log).
    """
    start, ready = time.monotonic(), 0
    while True:
        ready = readiness_streak(url, ready, timeout=2)
        if ready >= READY_IN_A_ROW:
            return
        running = docker("inspect", "--format", "{{.State.Running}}", container) == "true"
        if not running or time.monotonic() - start > timeout:
            logs = subprocess.run(
                ["docker", "logs", "--tail", "60", container],
                capture_output=True,
                text=True,
                timeout=30,
                check=False,
            )
            state = "stopped" if not running else f"not ready in {timeout} s"
            raise RuntimeError(f"container {container} {state}:\n{logs.stdout}{logs.stderr}")
        time.sleep(0.05 if ready else 0.2)
