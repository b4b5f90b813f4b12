"""Feedback log throughput with and without size-based rotation: one event per append, as the
service writes them (lock, one write, fsync each), then the time to read the whole log back.

    uv run python benchmarks/feedback_log.py                     # 5,000 appends, 256 KiB segments
    uv run python benchmarks/feedback_log.py --appends 20000 --max-bytes 1048576

Rotation at a small ``--max-bytes`` rotates many times (about 2,900 events to a 256 KiB
segment), so its cost shows; the default 64 MiB rotates once per ~750,000 events. Target:
rotation keeps >= 90 % of the append rate without it (exit 1 otherwise).
"""

from __future__ import annotations

import argparse
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
    parser.add_argument("--appends", type=int, default=5_000)
    parser.add_argument("--max-bytes", type=int, default=256 * 1024)
    args = parser.parse_args(argv)
    rates = []
    for name, max_bytes in (("no rotation", NO_ROTATION), ("rotation", args.max_bytes)):
        rate, read_seconds, files = measure(args.appends, max_bytes)
        rates.append(rate)
        print(
            f"{name:>12}: {rate:,.0f} appends/s, {files} file(s), "
            f"read back in {read_seconds * 1000:.0f} ms"
        )
    ratio = rates[1] / rates[0]
    print(f"{'PASS' if ratio >= 0.9 else 'FAIL'}: rotation keeps {ratio:.0%} of the append rate")
    return 0 if ratio >= 0.9 else 1


if __name__ == "__main__":
    sys.exit(main())
