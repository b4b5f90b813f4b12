"""How fast the simulated audience (``movierec simulate``) drives ``bentoml serve``, and what CPU
it takes to do it.

    uv run python benchmarks/audience_rate.py              # 15 s at 1, 4 and 8 threads, limit off
    uv run python benchmarks/audience_rate.py --seconds 5 --concurrency 4 --rate-limit

Writes the training part of the embedded sample, trains ALS on it, serves it (two workers, the
feedback rate limit off) and runs :func:`~recommender.experiments.audience.simulate` for a fixed
time at each concurrency. Prints sessions (``/recommend`` requests) a second, HTTP calls
(requests and feedback) a second, the simulator's CPU (this process, all threads) as a share of
one core and per session, and the service's CPU (its process group) over the same interval.

With ``--rate-limit`` the service keeps its default feedback limit (60 a minute after a burst of
30, per client) with ``MOVIEREC_TRUSTED_PROXY_HOPS=1``, so that each simulated user is a client:
at full speed the heaviest users (hundreds of held-out movies, ~5 events a session) pass it
after some seconds, and a lane that waits out a 429's ``Retry-After`` stalls, which the 429s
column counts.

Target: none (the machine's 2 cores are shared by both sides); the figures tell whether a run of
a few thousand sessions fits in a CI job and whether the simulator or the service is the limit.
"""

from __future__ import annotations

import argparse
import os
import resource
import sys
import tempfile
from pathlib import Path

import psutil

from recommender.settings import EMBEDDED_MOVIELENS, PROJECT_ROOT
from support.servers import HOST, free_port, isolated_env, running_server


def _cpu_seconds() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def _group_cpu_seconds(pid: int) -> float:
    """CPU seconds of a process and its living descendants (the arbiter and its workers)."""
    total = 0.0
    root = psutil.Process(pid)
    for process in [root, *root.children(recursive=True)]:
        try:
            times = process.cpu_times()
        except psutil.NoSuchProcess:
            continue
        total += times.user + times.system
    return total


def main(argv: list[str] | None = None) -> int:
    """Run the benchmark; print the figures."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=15.0, help="per concurrency")
    parser.add_argument("--concurrency", type=int, nargs="+", default=[1, 4, 8])
    parser.add_argument(
        "--rate-limit", action="store_true", help="keep the service's feedback rate limit"
    )
    args = parser.parse_args(argv)

    with tempfile.TemporaryDirectory(prefix="audience-rate-") as tmp:
        home = Path(tmp)
        env = isolated_env(home)  # before bentoml is imported (import_sample imports it)

        from recommender.experiments.audience import simulate, write_training_part
        from support.sample_model import import_sample

        split = write_training_part(EMBEDDED_MOVIELENS, home / "part")
        tag, _ = import_sample(home / "trained", model_version="audience", source=home / "part")
        port = free_port()
        command = [sys.executable, "-m", "bentoml", "serve", "bentos.service:MovieRecommender"]
        command += ["--host", HOST, "--port", str(port)]
        run_env = {
            **env,
            "MOVIEREC_BENTO_MODEL_TAG": tag,
            "MOVIEREC_TRUSTED_PROXY_HOPS": "1",
            **({} if args.rate_limit else {"MOVIEREC_FEEDBACK_RATE_PER_MINUTE": "0"}),
            "MOVIEREC_FRONTEND_DIST": str(home / "no-page"),
        }
        print(
            f"{os.cpu_count()} CPUs, load average {os.getloadavg()[0]:.2f}; "
            f"{len(split.audience)} users, {args.seconds:g} s per run, k=10, feedback rate "
            f"limit {'on' if args.rate_limit else 'off'}"
        )
        print(
            f"{'threads':>7} {'sessions/s':>10} {'calls/s':>8} {'sim CPU':>8} "
            f"{'ms CPU/sess':>11} {'server CPU':>10} {'held-out CTR':>12} {'other CTR':>9} "
            f"{'429s':>5}"
        )
        with running_server(
            command, port=port, env=run_env, cwd=PROJECT_ROOT, log=home / "serve.log"
        ) as url:
            server_pid = _server_pid(port)
            simulate(url, split.audience, seed=99, max_requests=200)  # warm-up
            for concurrency in args.concurrency:
                cpu, server_cpu = _cpu_seconds(), _group_cpu_seconds(server_pid)
                result = simulate(
                    url,
                    split.audience,
                    seed=concurrency,
                    max_requests=10_000_000,
                    max_seconds=args.seconds,
                    concurrency=concurrency,
                )
                cpu, server_cpu = (
                    _cpu_seconds() - cpu,
                    _group_cpu_seconds(server_pid) - server_cpu,
                )
                seconds = result.elapsed_seconds
                calls = result.requests + result.feedback_accepted + result.feedback_rejected
                print(
                    f"{concurrency:>7} {result.requests_per_second:>10.1f} "
                    f"{calls / seconds:>8.1f} {100 * cpu / seconds:>7.0f}% "
                    f"{1000 * cpu / max(result.requests, 1):>11.2f} "
                    f"{100 * server_cpu / seconds:>9.0f}% "
                    f"{100 * (result.held_out_click_rate or 0):>11.1f}% "
                    f"{100 * (result.other_click_rate or 0):>8.1f}% {result.rate_limited:>5}",
                    flush=True,
                )
                if result.errors:
                    print(f"  {result.errors} errors: {result.error_messages}")
    return 0


def _server_pid(port: int) -> int:
    """The ``bentoml serve`` process this process started on ``port`` (its workers are its
    descendants)."""
    for child in psutil.Process().children():
        if "serve" in child.cmdline() and str(port) in child.cmdline():
            return child.pid
    raise RuntimeError(f"no bentoml serve child on port {port}")


if __name__ == "__main__":
    sys.exit(main())
