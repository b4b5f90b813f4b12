"""What requests for made-up paths cost the metrics: `bentoml serve` before and after N requests
for random paths (half `/x<random>`, half `/assets/<random>.js`).

    uv run python benchmarks/metrics_cardinality.py               # 2,000 random paths
    uv run python benchmarks/metrics_cardinality.py --paths 500

Prints, before and after: the size of `/metrics`, the time to scrape it (median of 5), the
resident memory of the worker processes and the size of the Prometheus multiprocess directory.
Target: `/metrics` answers 200, grows by less than 5 % and no label value comes from a random
path. Exits 1 when missed.
"""

from __future__ import annotations

import argparse
import secrets
import statistics
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import httpx
import psutil

from recommender.settings import PROJECT_ROOT
from support.servers import HOST, free_port, isolated_env, running_server

GROWTH_TARGET = 0.05


@dataclass(frozen=True)
class Snapshot:
    """The metrics' footprint at one moment."""

    metrics_bytes: int
    scrape_seconds: float
    workers_rss_bytes: int
    multiproc_dir_bytes: int
    status: int
    text: str


def snapshot(client: httpx.Client, multiproc_dir: Path) -> Snapshot:
    """Scrape ``/metrics`` five times (keeping the last answer); measure the workers and the
    multiprocess directory."""
    seconds = []
    for _ in range(5):
        started = time.perf_counter()
        answer = client.get("/metrics")
        seconds.append(time.perf_counter() - started)
    workers = [
        process
        for process in psutil.Process().children(recursive=True)
        if "_bentoml_impl.worker.service" in " ".join(process.cmdline())
    ]
    return Snapshot(
        metrics_bytes=len(answer.content),
        scrape_seconds=statistics.median(seconds),
        workers_rss_bytes=sum(process.memory_info().rss for process in workers),
        multiproc_dir_bytes=sum(f.stat().st_size for f in multiproc_dir.iterdir()),
        status=answer.status_code,
        text=answer.text,
    )


def main(argv: list[str] | None = None) -> int:
    """Run the benchmark; return the exit status."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--paths", type=int, default=2000, help="random paths to request")
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="metrics-cardinality-") as tmp:
        home = Path(tmp)
        env = isolated_env(home)
        from support.sample_model import import_sample

        import_sample(home / "trained", model_version="benchmark")
        port = free_port()
        command = [sys.executable, "-m", "bentoml", "serve", "bentos.service:MovieRecommender"]
        command += ["--host", HOST, "--port", str(port)]
        log = home / "serve.log"
        with (
            running_server(command, port=port, env=env, cwd=PROJECT_ROOT, log=log) as url,
            httpx.Client(base_url=url, timeout=60) as client,
        ):
            # One request of each kind first, so that "before" already holds their series.
            for path in ("/livez", "/readyz", "/", "/x", "/assets/x.js"):
                client.get(path)
            client.post("/recommend", json={"user_id": 1})
            multiproc_dir = home / "bentoml" / "prometheus_multiproc_dir"
            before = snapshot(client, multiproc_dir)
            tokens = [secrets.token_hex(6) for _ in range(args.paths)]
            started = time.perf_counter()
            for i, token in enumerate(tokens):
                client.get(f"/x{token}" if i % 2 else f"/assets/{token}.js")
            sent_seconds = time.perf_counter() - started
            after = snapshot(client, multiproc_dir)
    print(f"{args.paths} random paths sent in {sent_seconds:.1f} s")
    print(
        f"{'':<10} {'status':>6} {'/metrics MB':>12} {'scrape s':>9} {'workers RSS MB':>15} "
        f"{'dir MB':>8}"
    )
    for name, shot in (("before", before), ("after", after)):
        print(
            f"{name:<10} {shot.status:>6} {shot.metrics_bytes / 1e6:>12.3f} "
            f"{shot.scrape_seconds:>9.3f} {shot.workers_rss_bytes / 1e6:>15.1f} "
            f"{shot.multiproc_dir_bytes / 1e6:>8.2f}"
        )
    growth = after.metrics_bytes / before.metrics_bytes - 1
    leaked = sum(token in after.text for token in tokens)
    print(f"/metrics growth: {100 * growth:.1f} % (target < {100 * GROWTH_TARGET:.0f} %)")
    print(f"random paths named in /metrics: {leaked} (target 0)")
    passed = after.status == 200 and growth < GROWTH_TARGET and leaked == 0
    print("PASS" if passed else "FAIL")
    return 0 if passed else 1


if __name__ == "__main__":
    sys.exit(main())
