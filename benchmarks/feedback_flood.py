"""How many feedback events one client gets accepted when it floods ``/feedback``.

Starts ``bentoml serve`` (two workers) on a model trained on the embedded MovieLens sample, once
with the rate limit off (``MOVIEREC_FEEDBACK_RATE_PER_MINUTE=0``, the service before the limit)
and once with the configured limit (the defaults unless the environment sets them), and floods
``POST /feedback`` from one address over several keep-alive connections (so that both workers
see it) for a fixed time. Prints accepted and refused events a second, the log's growth a
second and a day at that rate, and checks that every accepted event is in the log.

    uv run python benchmarks/feedback_flood.py                  # 10 s per run, 4 connections
    uv run python benchmarks/feedback_flood.py --duration 5 --connections 8
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import threading
import time
from pathlib import Path

from recommender.settings import PROJECT_ROOT, configure_process, get_settings
from support.servers import HOST, free_port, running_server


def flood(url: str, *, connections: int, seconds: float) -> tuple[list[int], list[int]]:
    """Post distinct events for ``seconds`` over ``connections``; the accepted users, refusals."""
    import httpx

    accepted: list[int] = []
    refused: list[int] = []
    end = time.monotonic() + seconds

    def send(connection: int) -> None:
        with httpx.Client(base_url=url, timeout=30) as client:
            n = 0
            while time.monotonic() < end:
                user_id = 1_000_000_000 + connection * 10_000_000 + n
                n += 1
                event = {"user_id": user_id, "movie_id": 1, "event": "view"}
                status = client.post("/feedback", json=event).status_code
                (accepted if status == 200 else refused).append(
                    user_id if status == 200 else status
                )

    threads = [threading.Thread(target=send, args=(c,)) for c in range(connections)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return accepted, refused


def main() -> int:
    """Run both floods and print the figures; return 1 when an accepted event is missing."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--duration", type=float, default=10.0, help="seconds per flood")
    parser.add_argument("--connections", type=int, default=4)
    args = parser.parse_args()

    from recommender.data.feedback import read_events
    from support.sample_model import import_sample

    missing = 0
    with tempfile.TemporaryDirectory(prefix="feedback-flood-") as tmp:
        home = Path(tmp)
        env = {**os.environ, "BENTOML_HOME": str(home / "bentoml"), "BENTOML_DO_NOT_TRACK": "true"}
        os.environ.update(env)  # for the import into the temporary store
        configure_process()
        import_sample(home / "trained", model_version="benchmark")
        settings = get_settings()
        runs = {
            "limit off": {"MOVIEREC_FEEDBACK_RATE_PER_MINUTE": "0"},
            f"{settings.feedback_rate_per_minute:g}/min, burst {settings.feedback_burst}": {},
        }
        print(
            f"{os.cpu_count()} CPUs, load average {os.getloadavg()[0]:.2f}; one client, "
            f"{args.connections} connections, {args.duration:g} s per run"
        )
        print(
            f"{'limit':<22} {'accepted/s':>10} {'refused/s':>10} {'log KB/s':>9} {'log GB/day':>10}"
        )
        for name, overrides in runs.items():
            data_dir = home / name.replace("/", "-").replace(" ", "")
            port = free_port()
            command = [sys.executable, "-m", "bentoml", "serve", "bentos.service:MovieRecommender"]
            command += ["--host", HOST, "--port", str(port)]
            run_env = {**env, "MOVIEREC_DATA_DIR": str(data_dir), **overrides}
            log = home / f"serve-{port}.log"
            with running_server(command, port=port, env=run_env, cwd=PROJECT_ROOT, log=log) as url:
                accepted, refused = flood(url, connections=args.connections, seconds=args.duration)
            events = get_settings(data_dir=data_dir).feedback_log
            logged = (
                set(read_events(events).events["user_id"].to_list()) if events.exists() else set()
            )
            missing += len(set(accepted) - logged)
            size = events.stat().st_size if events.exists() else 0
            print(
                f"{name:<22} {len(accepted) / args.duration:>10.1f} "
                f"{len(refused) / args.duration:>10.1f} {size / 1024 / args.duration:>9.1f} "
                f"{size / args.duration * 86_400 / 1e9:>10.3f}"
            )
    print(
        "every accepted event is in the log" if not missing else f"{missing} accepted events lost"
    )
    return 1 if missing else 0


if __name__ == "__main__":
    sys.exit(main())
