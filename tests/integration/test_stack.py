"""The local production-like stack: PostgreSQL, MLflow and Prefect servers, the flows on them.

``deployments/local_stack.py`` runs as a user runs it (a subprocess) in a temporary folder on
free ports; the test reads the results back over the servers' own APIs and always tears the
stack down.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
import requests
from mlflow.tracking import MlflowClient

from tests.datasets import generous_copy

pytestmark = [pytest.mark.integration, pytest.mark.slow]

SCRIPT = Path(__file__).resolve().parents[2] / "deployments" / "local_stack.py"
FLOWS = {"data-pipeline", "training", "batch-prediction"}


@dataclass(frozen=True)
class StackUnderTest:
    root: Path
    ports: dict[str, int]
    env: dict[str, str]

    @property
    def mlflow_url(self) -> str:
        return f"http://127.0.0.1:{self.ports['mlflow']}"

    @property
    def prefect_api(self) -> str:
        return f"http://127.0.0.1:{self.ports['prefect']}/api"

    def run(self, *args: str, timeout: float = 300, **env: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, str(SCRIPT), *args, "--root", str(self.root)]
            + [f"--pg-port={self.ports['postgres']}", f"--mlflow-port={self.ports['mlflow']}"]
            + [f"--prefect-port={self.ports['prefect']}"],
            capture_output=True,
            text=True,
            timeout=timeout,
            env={**self.env, **env},
            check=False,
        )


def _free_ports(count: int) -> list[int]:
    sockets = [socket.socket() for _ in range(count)]
    try:
        for sock in sockets:
            sock.bind(("127.0.0.1", 0))
        return [sock.getsockname()[1] for sock in sockets]
    finally:
        for sock in sockets:
            sock.close()


def _wait(check: Callable[[], bool], timeout: float = 30) -> bool:
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.2)
    return True


def _listening(port: int) -> bool:
    with socket.socket() as sock:
        return sock.connect_ex(("127.0.0.1", port)) == 0


@pytest.fixture
def stack() -> Iterator[StackUnderTest]:
    if shutil.which("initdb") is None:
        message = "the PostgreSQL server binaries (initdb, pg_ctl, postgres) are not on PATH"
        if os.environ.get("CI") == "true":
            pytest.fail(f"{message}: CI must provide them")
        pytest.skip(message)
    # Not pytest's tmp_path: as root, PostgreSQL runs as an unprivileged user that must be able
    # to reach the folder, and pytest's base folder is private to root.
    root = Path(tempfile.mkdtemp(prefix="movierec-stack-"))
    root.chmod(0o755)
    env = {
        key: value
        for key, value in os.environ.items()
        if key not in {"TMDB_API_KEY", "TMDB_API_TOKEN", "PREFECT_API_URL", "MLFLOW_TRACKING_URI"}
        and not key.startswith("MOVIEREC_")
    }
    env.update(MOVIEREC_TUNING_TRIALS="2", MOVIEREC_TASK_RUNNER="dask")
    ports = dict(zip(("postgres", "mlflow", "prefect"), _free_ports(3), strict=True))
    under_test = StackUnderTest(root, ports, env)
    try:
        yield under_test
    finally:
        down = under_test.run("down", timeout=120)
        shutil.rmtree(root, ignore_errors=True)
        assert down.returncode == 0, down.stdout + down.stderr


def _completed_flow_runs(api: str) -> dict[str, list[dict]]:
    """Completed flow runs by flow name, read from the Prefect server's REST API."""
    flows = requests.post(f"{api}/flows/filter", json={}, timeout=10)
    flows.raise_for_status()
    names = {flow["id"]: flow["name"] for flow in flows.json()}
    runs = requests.post(
        f"{api}/flow_runs/filter",
        json={"flow_runs": {"state": {"type": {"any_": ["COMPLETED"]}}}},
        timeout=10,
    )
    runs.raise_for_status()
    by_flow: dict[str, list[dict]] = {}
    for run in runs.json():
        by_flow.setdefault(names[run["flow_id"]], []).append(run)
    return by_flow


def test_up_runs_the_flows_on_the_stack_and_down_stops_it(stack: StackUnderTest) -> None:
    up = stack.run("up", "--no-crawl", "--timeout=150", timeout=600)
    assert up.returncode == 0, up.stdout + up.stderr
    assert f"MLflow UI    {stack.mlflow_url}" in up.stdout
    assert f"Prefect UI   http://127.0.0.1:{stack.ports['prefect']}" in up.stdout

    # the flow runs, and the data flow's tasks (run on Dask workers), are in the Prefect server
    runs = _completed_flow_runs(stack.prefect_api)
    assert FLOWS <= set(runs), runs.keys()
    data_run = runs["data-pipeline"][0]
    tasks = requests.post(
        f"{stack.prefect_api}/task_runs/filter",
        json={"flow_runs": {"id": {"any_": [data_run["id"]]}}},
        timeout=10,
    ).json()
    validations = [t for t in tasks if t["task_key"].startswith("validate_table")]
    assert len(validations) == 4  # movies, links, ratings, tmdb_details
    assert all(t["state_type"] == "COMPLETED" for t in tasks)
    flow_log = (stack.root / "logs" / "flows.log").read_text()
    assert "Creating a new Dask cluster" in flow_log

    # the registered model and its champion alias are in the MLflow server
    client = MlflowClient(tracking_uri=stack.mlflow_url, registry_uri=stack.mlflow_url)
    champion = client.get_model_version_by_alias("movie-recommender", "champion")
    assert champion.version == "1"
    run = client.get_run(champion.run_id)
    assert run.info.status == "FINISHED"
    assert run.data.params["tuning_trials"] == "2"
    artifacts = {a.path for a in client.list_artifacts(champion.run_id, "evaluation")}
    assert "evaluation/report.json" in artifacts
    # ... stored by the server (proxied artifacts), tracked in PostgreSQL, not a SQLite fallback
    assert list((stack.root / "mlflow-artifacts").rglob("MLmodel"))
    assert not (stack.root / "data" / "mlflow").exists()
    assert (stack.root / "data" / "predictions" / "1" / "predictions.parquet").is_file()

    # new data drifts; monitoring says so with an event, on which the worker trains again
    flow_env = {
        **stack.env,
        "PREFECT_API_URL": stack.prefect_api,
        "PREFECT_HOME": str(stack.root / "prefect"),
        "MLFLOW_TRACKING_URI": stack.mlflow_url,
        "MOVIEREC_DATA_DIR": str(stack.root / "data"),
    }
    ratings = generous_copy(stack.root / "generous")
    for command in (["data", "--no-crawl", "--ratings", str(ratings)], ["monitor"]):
        result = subprocess.run(
            [sys.executable, "-m", "flows.cli", *command],
            capture_output=True,
            text=True,
            timeout=300,
            env=flow_env,
            cwd=SCRIPT.parents[1],
            check=False,
        )
        assert result.returncode == 0, result.stdout + result.stderr
    assert "event `movierec.drift.detected` emitted" in result.stdout + result.stderr
    assert _wait(lambda: len(_completed_flow_runs(stack.prefect_api)["training"]) == 2, 300)
    [retrained] = [
        run for run in _completed_flow_runs(stack.prefect_api)["training"] if run["deployment_id"]
    ]
    assert retrained["created_by"]["type"] == "AUTOMATION"
    assert "worker" in (stack.root / "logs" / "worker.log").read_text()

    # up again reuses the running stack
    again = stack.run("up", "--no-flows", timeout=60)
    assert again.returncode == 0, again.stdout + again.stderr
    assert f"PostgreSQL already running on port {stack.ports['postgres']}" in again.stdout
    assert "MLflow server already running" in again.stdout
    assert "Prefect server already running" in again.stdout
    assert "Prefect worker already running" in again.stdout
    assert stack.run("status", timeout=60).returncode == 0

    # a server that died is started again; one that cannot start fails with its log's tail
    # (SIGKILL: on SIGTERM the server drains the worker's open connections before it exits)
    os.killpg(json.loads((stack.root / "run" / "prefect.json").read_text())["pid"], signal.SIGKILL)
    assert _wait(lambda: not _listening(stack.ports["prefect"]))
    broken = stack.run("up", "--no-flows", timeout=120, PREFECT_SERVER_LOGGING_LEVEL="LOUD")
    assert broken.returncode == 1
    assert "Prefect server exited while starting; last lines of" in broken.stderr
    assert "PREFECT_SERVER_LOGGING_LEVEL" in broken.stderr or "LOUD" in broken.stderr
    fixed = stack.run("up", "--no-flows", timeout=120)
    assert fixed.returncode == 0, fixed.stdout + fixed.stderr
    assert f"Prefect server started on port {stack.ports['prefect']}" in fixed.stdout
    assert FLOWS <= set(_completed_flow_runs(stack.prefect_api))  # kept in PostgreSQL

    down = stack.run("down", timeout=120)
    assert down.returncode == 0, down.stdout + down.stderr
    assert "PostgreSQL stopped" in down.stdout
    assert not any(_listening(port) for port in stack.ports.values())
    assert not list((stack.root / "run").iterdir())
    assert stack.run("status", timeout=60).returncode == 1
