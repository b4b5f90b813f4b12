"""Failing runs a killed process left RUNNING, against a real (SQLite) MLflow store."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from pathlib import Path

from mlflow.tracking import MlflowClient

from recommender.tracking.runs import HOST_TAG, PID_TAG, fail_stale_runs


def _dead_pid() -> int:
    process = subprocess.Popen([sys.executable, "-c", "pass"])
    process.wait()
    return process.pid


def test_only_runs_no_live_process_can_own_are_failed(tmp_path: Path) -> None:
    client = MlflowClient(f"sqlite:///{tmp_path / 'mlflow.db'}")
    experiment = client.create_experiment("movierec", artifact_location=tmp_path.as_uri())
    here, now_ms = socket.gethostname(), int(time.time() * 1000)
    day_ago_ms = now_ms - 25 * 3600 * 1000

    def run(*, host: str | None, pid: int | None, start_time: int = now_ms) -> str:
        tags = {HOST_TAG: host, PID_TAG: str(pid)} if host else {}
        return client.create_run(experiment, start_time=start_time, tags=tags).info.run_id

    killed_here = run(host=here, pid=_dead_pid())
    alive_here = run(host=here, pid=os.getpid())  # a concurrent training run
    recent_elsewhere = run(host="another-pod", pid=1)
    old_elsewhere = run(host="another-pod", pid=1, start_time=day_ago_ms)
    old_untagged = run(host=None, pid=None, start_time=day_ago_ms)
    finished = run(host=here, pid=_dead_pid())
    client.set_terminated(finished, status="FINISHED")

    failed = fail_stale_runs(client, "movierec", max_age_hours=24)

    assert sorted(failed) == sorted([killed_here, old_elsewhere, old_untagged])
    status = {run_id: client.get_run(run_id).info.status for run_id in failed}
    assert set(status.values()) == {"FAILED"}
    for run_id in (alive_here, recent_elsewhere):
        assert client.get_run(run_id).info.status == "RUNNING"
    assert client.get_run(finished).info.status == "FINISHED"


def test_an_experiment_that_does_not_exist_has_no_stale_runs(tmp_path: Path) -> None:
    client = MlflowClient(f"sqlite:///{tmp_path / 'mlflow.db'}")
    assert fail_stale_runs(client, "movierec", max_age_hours=24) == []
