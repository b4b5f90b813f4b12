"""Cold start of the Bento container: from `docker run` to `/readyz` answering 200, then the first
`/recommend`; and the sizes of both images `make image` builds.

    make image BASE_IMAGE=...                                  # first: build both images
    uv run python benchmarks/container_start.py                # movie-recommender:latest, 3 runs
    uv run python benchmarks/container_start.py --tag pytest --runs 5

Each run starts a new container from the image (its port published on 127.0.0.1 only) and
removes it afterwards, so every run loads the model from scratch; the first run after a build
also pays for the engine reading the image's layers.

Targets: ready within 30 s of `docker run` in every run; the Bento image <= 800 MB and the
project image <= 900 MB. Exits 1 when one is missed.
"""

from __future__ import annotations

import argparse
import time
import uuid
from collections.abc import Sequence

import httpx

from support.containers import (
    docker,
    engine_available,
    image_size_mb,
    remove_container,
    wait_ready,
)
from support.servers import HOST, free_port

READY_TARGET_S = 30.0
SIZE_TARGETS_MB = {"movie-recommender": 800, "movierec": 900}


def start_once(image: str) -> tuple[float, float]:
    """Seconds from ``docker run`` to ready, and the first ``/recommend``'s seconds."""
    port = free_port()
    name = f"movierec-bench-{uuid.uuid4().hex[:8]}"
    start = time.monotonic()
    try:
        docker("run", "--detach", "--name", name, "--publish", f"{HOST}:{port}:3000", image)
        wait_ready(name, f"http://{HOST}:{port}/readyz", timeout=120)
        ready = time.monotonic() - start
        before = time.monotonic()
        answer = httpx.post(
            f"http://{HOST}:{port}/recommend", json={"user_id": 1, "k": 10}, timeout=30
        )
        answer.raise_for_status()
        return ready, time.monotonic() - before
    finally:
        remove_container(name)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tag", default="latest", help="the IMAGE_TAG make image used")
    parser.add_argument("--runs", type=int, default=3)
    args = parser.parse_args(argv)
    if not engine_available():
        print("no Docker engine answers `docker info`")
        return 1
    ok = True
    for name, target in SIZE_TARGETS_MB.items():
        size = image_size_mb(f"{name}:{args.tag}")
        ok &= size <= target
        print(f"{name}:{args.tag}  {size:.0f} MB  (target <= {target} MB)")
    for run in range(1, args.runs + 1):
        ready, first = start_once(f"movie-recommender:{args.tag}")
        ok &= ready <= READY_TARGET_S
        print(
            f"run {run}: ready {ready:.1f} s after docker run, "
            f"first /recommend {first * 1000:.0f} ms"
        )
    print("PASS" if ok else "FAIL")
    return 0 if ok else 1


if __name__ == "__main__":
    raise SystemExit(main())
