"""What a ``kill -9`` of the service loses from the impression log.

Serves a model trained on the embedded sample with ``bentoml serve`` (two workers, the impression
log batched every ``MOVIEREC_IMPRESSION_FLUSH_SECONDS``), sends ``/recommend`` requests from
8 threads for a few seconds, SIGKILLs the server and its workers while they run, then
counts the impression ids the client received against those in the log.

    uv run python benchmarks/impression_loss.py
    uv run python benchmarks/impression_loss.py --flush-seconds 1.0 --seconds 5

Prints answers received, impressions logged, answers without an impression, and the loss as
answers and as time (lost / received rate). Target: the loss is at most the flush interval's
worth of answers (plus what was in flight); never a torn or unreadable line.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import signal
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import httpx

from recommender.settings import PROJECT_ROOT
from support.servers import HOST, free_port, isolated_env, running_server


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=4.0, help="load before the kill")
    parser.add_argument("--flush-seconds", type=float, default=0.2)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="impression-loss-") as tmp:
        home = Path(tmp)
        env = {**isolated_env(home), "MOVIEREC_IMPRESSION_FLUSH_SECONDS": str(args.flush_seconds)}
        from support.sample_model import import_sample

        import_sample(home / "trained", model_version="benchmark")
        port = free_port()
        command = [sys.executable, "-m", "bentoml", "serve", "bentos.service:MovieRecommender"]
        command += ["--host", HOST, "--port", str(port)]
        received: list[str] = []
        stop = threading.Event()

        def client(user: int) -> None:
            with httpx.Client(base_url=f"http://{HOST}:{port}", timeout=5) as http:
                while not stop.is_set():
                    try:
                        answer = http.post("/recommend", json={"user_id": user, "k": 10})
                    except httpx.TransportError:
                        return  # the server is gone
                    received.append(answer.json()["impression_id"])

        log = home / "serve.log"
        with running_server(command, port=port, env=env, cwd=PROJECT_ROOT, log=log) as _:
            threads = [threading.Thread(target=client, args=(u,)) for u in range(1, 9)]
            for thread in threads:
                thread.start()
            time.sleep(args.seconds)
            for pid in _service_processes():  # the arbiter and both workers at once
                with contextlib.suppress(ProcessLookupError):  # e.g. the finished `ps`
                    os.kill(pid, signal.SIGKILL)
            stop.set()
            for thread in threads:
                thread.join()
        from recommender.data.logs import parse_json_object, read_log
        from recommender.settings import get_settings

        contents = read_log(get_settings().impression_log, parse_json_object)
        logged = {record["impression_id"] for record in contents.records}
        lost = [i for i in received if i not in logged]
        rate = len(received) / args.seconds
        print(f"answers received {len(received):,} in {args.seconds:.1f} s ({rate:,.0f}/s)")
        print(f"impressions logged {len(logged):,}; unreadable lines {contents.rejected.height}")
        print(
            f"answers without an impression: {len(lost):,} = {len(lost) / rate:.2f} s of answers "
            f"(flush interval {args.flush_seconds} s)"
        )
        ok = contents.rejected.height == 0 and len(lost) / rate <= args.flush_seconds + 0.5
        print("PASS" if ok else "FAIL")
        return 0 if ok else 1


def _service_processes() -> list[int]:
    """Every process descended from this one (the bentoml serve tree)."""
    out = subprocess.run(["ps", "-e", "-o", "pid=,ppid="], capture_output=True, text=True)
    children: dict[int, list[int]] = {}
    for line in out.stdout.splitlines():
        pid, ppid = map(int, line.split())
        children.setdefault(ppid, []).append(pid)
    found, todo = [], [os.getpid()]
    while todo:
        for child in children.get(todo.pop(), []):
            found.append(child)
            todo.append(child)
    return [pid for pid in found if pid != os.getpid()]


if __name__ == "__main__":
    sys.exit(main())
