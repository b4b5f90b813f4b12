"""Feedback log throughput with and without size-based rotation: one event per append, as the
service writes them (lock, one write, fsync each), then the time to read the whole log back.

    uv run python benchmarks/feedback_log.py          # 5 rounds of 2,000 appends, 64 KiB segments
    uv run python benchmarks/feedback_log.py --appends 20000 --max-bytes 1048576

Rotation at a small ``--max-bytes`` rotates often (about 750 events to a 64 KiB segment), so
its cost shows; the default 64 MiB rotates once per ~750,000 events. The two configurations
alternate round by round and the medians are compared, since fsync times on a shared disk
drift. Target: rotation keeps >= 90 % of the append rate without it (exit 1 otherwise).
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

from recommender.data.feedback import FeedbackEvent, append_event, read_events
from recommender.data.logs import log_files

NO_ROTATION = 1 << 62


def measure(appends: int, max_bytes: int) -> tuple[float, float, int]:
    """Appends per second, seconds to read the log back, and the number of files."""
    with tempfile.TemporaryDirectory(prefix="movierec-log-") as tmp:
        path = Path(tmp) / "events.jsonl"
        events = [
            FeedbackEvent(user_id=1 + n % 97, movie_id=1 + n % 1009, event="view")
            for n in range(appends)
        ]
        start = time.perf_counter()
        for event in events:
            append_event(path, event, max_bytes=max_bytes)
        rate = appends / (time.perf_counter() - start)
        start = time.perf_counter()
        log = read_events(path)
        read_seconds = time.perf_counter() - start
        assert log.events.height == appends
        return rate, read_seconds, len(log_files(path))


def main(argv: list[str] | None = None) -> int:
    """Run both configurations and print their figures."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--appends", type=int, default=2_000)
    parser.add_argument("--max-bytes", type=int, default=64 * 1024)
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args(argv)
    configurations = {"no rotation": NO_ROTATION, "rotation": args.max_bytes}
    figures: dict[str, list[tuple[float, float, int]]] = {name: [] for name in configurations}
    for _ in range(args.rounds):
        for name, max_bytes in configurations.items():
            figures[name].append(measure(args.appends, max_bytes))
    rates = []
    for name, runs in figures.items():
        rate = statistics.median(run[0] for run in runs)
        read_seconds = statistics.median(run[1] for run in runs)
        rates.append(rate)
        print(
            f"{name:>12}: {rate:,.0f} appends/s (median of {args.rounds}), {runs[0][2]} file(s), "
            f"read back in {read_seconds * 1000:.0f} ms"
        )
    ratio = rates[1] / rates[0]
    print(f"{'PASS' if ratio >= 0.9 else 'FAIL'}: rotation keeps {ratio:.0%} of the append rate")
    return 0 if ratio >= 0.9 else 1


if __name__ == "__main__":
    sys.exit(main())
