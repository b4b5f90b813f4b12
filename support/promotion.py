"""`movierec` subprocesses against one deployment on disk, and what they leave behind.

A :class:`Deployment` is a data directory (with its SQLite MLflow store) and a BentoML home;
it runs the real command line, can kill a run (``kill -9``) the moment a condition is seen,
and reads the two sides that must agree: the registry's ``champion`` and the BentoML store's
latest model and Bento (from their files, as ``bentoml serve`` resolves ``:latest``).
Used by the promotion tests and ``benchmarks/promotion_recovery.py``.
"""

from __future__ import annotations

import os
import signal
import sqlite3
import subprocess
import sys
import time
import zipfile
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import yaml
from mlflow.exceptions import MlflowException
from mlflow.tracking import MlflowClient

PROJECT_ROOT = Path(__file__).resolve().parents[1]
NAME = "movie-recommender"  # the registered model, the BentoML model and the Bento


@dataclass(frozen=True)
class Deployment:
    """One MOVIEREC_DATA_DIR and BENTOML_HOME under ``root``; flows use ``prefect_api_url``."""

    root: Path
    prefect_api_url: str | None = None
    settings: dict[str, str] = field(default_factory=dict)
    """More environment variables of its commands, e.g. ``MOVIEREC_PROMOTION``."""

    @property
    def data_dir(self) -> Path:
        return self.root / "data"

    @property
    def bentoml_home(self) -> Path:
        return self.root / "bentoml"

    @property
    def env(self) -> dict[str, str]:
        env = {
            "PATH": os.environ["PATH"],  # bentoml build runs uv
            "HOME": str(self.root),
            "MOVIEREC_DATA_DIR": str(self.data_dir),
            "BENTOML_HOME": str(self.bentoml_home),
            "BENTOML_DO_NOT_TRACK": "true",
            "PREFECT_HOME": str(self.root / "prefect"),
            "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
            "PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS": "120",
        }
        if self.prefect_api_url:  # a running server: no ephemeral one per command (~20 s each)
            env["PREFECT_API_URL"] = self.prefect_api_url
        return {**env, **self.settings}

    def start_step(self, step: str, *args: str) -> Started:
        """Start one step of the promotion sequence alone (``python -m support.promotion STEP``:
        ``reconcile``, or ``end-experiment promote|keep``), to kill it midway."""
        return self._start("-m", "support.promotion", step, *args)

    def start(self, *args: str) -> Started:
        """Start ``movierec ARGS``; its output goes to a log file under ``root``."""
        return self._start("-m", "flows.cli", *args)

    def _start(self, *args: str) -> Started:
        log = self.root / f"movierec-{time.monotonic_ns()}.log"
        with log.open("w") as sink:
            process = subprocess.Popen(
                [sys.executable, *args],
                stdout=sink,
                stderr=subprocess.STDOUT,
                text=True,
                cwd=PROJECT_ROOT,
                env=self.env,
            )
        return Started(process, log)

    def run(self, *args: str, timeout: float = 300) -> tuple[int, str]:
        """Run ``movierec ARGS`` to the end: its exit code and output."""
        return self._finish(self.start(*args), timeout)

    def run_step(self, step: str, *args: str, timeout: float = 300) -> tuple[int, str]:
        """Run one promotion step (:meth:`start_step`) to the end: its exit code and output."""
        return self._finish(self.start_step(step, *args), timeout)

    def _finish(self, started: Started, timeout: float) -> tuple[int, str]:
        try:
            code = started.process.wait(timeout)
        finally:
            started.process.kill()
        return code, started.output()

    @property
    def mlflow_db(self) -> Path:
        return self.data_dir / "mlflow" / "mlflow.db"

    def client(self) -> MlflowClient:
        return MlflowClient(f"sqlite:///{self.mlflow_db}")

    @contextmanager
    def mlflow_writes_held(self) -> Iterator[None]:
        """Hold SQLite's write lock on the MLflow store, as a competing writer would.

        Readers go on; a run's next MLflow write waits (up to MLflow's 20 s busy timeout), so
        the run stops right before it, e.g. between building a Bento and moving the alias.
        """
        connection = sqlite3.connect(self.mlflow_db, isolation_level=None)
        try:
            connection.execute("BEGIN IMMEDIATE")
            yield
        finally:
            connection.rollback()
            connection.close()

    def champion(self) -> str | None:
        """The registered version holding ``champion`` (None before there is one)."""
        try:
            return str(self.client().get_model_version_by_alias(NAME, "champion").version)
        except MlflowException:
            return None

    def versions(self) -> int:
        """How many versions are registered."""
        if not self.mlflow_db.exists():
            return 0
        return len(self.client().search_model_versions(f"name = '{NAME}'"))

    def runs(self, status: str) -> list[str]:
        """The ids of the runs in ``status`` (RUNNING, FINISHED, FAILED)."""
        experiment = self.client().get_experiment_by_name("movierec")
        if experiment is None:
            return []
        found = self.client().search_runs(
            [experiment.experiment_id], filter_string=f"attributes.status = '{status}'"
        )
        return [run.info.run_id for run in found]

    def served(self, store: str, name: str = NAME) -> dict[str, str]:
        """The labels of the latest item ``name`` of ``store`` (``models`` or ``bentos``); {}
        when none."""
        directory = self.bentoml_home / store / name
        try:
            version = (directory / "latest").read_text().strip()
            item = yaml.safe_load((directory / version / f"{store[:-1]}.yaml").read_text())
        except (FileNotFoundError, yaml.YAMLError):  # none yet, or being written right now
            return {}
        return dict(item.get("labels") or {})

    def served_version(self, store: str) -> str | None:
        return self.served(store).get("model_version")

    def challenger(self) -> tuple[str | None, str | None]:
        """The challenger the store holds and the one the latest Bento carries (None: none)."""
        return (
            self.served("models", f"{NAME}-challenger").get("model_version"),
            self.served("bentos").get("challenger_version"),
        )


@dataclass(frozen=True)
class Started:
    """A ``movierec`` process and the file its output goes to."""

    process: subprocess.Popen[str]
    log: Path

    def output(self) -> str:
        return self.log.read_text()


def wait_for(
    started: Started,
    condition: Callable[[], bool],
    *,
    timeout: float = 300,
    interval: float = 0.002,
) -> None:
    """Return as soon as ``condition()`` holds (polled every ``interval`` seconds).

    Raises:
        AssertionError: The process ended, or ``timeout`` passed, before the condition held.
    """
    process = started.process
    deadline = time.monotonic() + timeout
    while not condition():
        if process.poll() is not None:
            raise AssertionError(
                f"movierec exited ({process.returncode}) before the condition:\n"
                + started.output()[-3000:]
            )
        if time.monotonic() > deadline:
            process.kill()
            raise AssertionError(f"condition not seen within {timeout} s")
        time.sleep(interval)


def kill_when(started: Started, condition: Callable[[], bool], **wait: float) -> None:
    """``kill -9`` the process the moment ``condition()`` holds (see :func:`wait_for`)."""
    wait_for(started, condition, **wait)
    os.kill(started.process.pid, signal.SIGKILL)
    started.process.wait(30)


def taste_groups_zip(path: Path, *, without: int | None = None) -> Path:
    """An ml-100k layout zip: 60 users in two taste groups over 40 movies (odd users like even
    movies and vice versa), optionally ``without`` one movie. ALS trains on it in a second."""
    rng = np.random.default_rng(0)
    movies = [movie for movie in range(1, 41) if movie != without]
    lines = []
    for user in range(1, 61):
        liked = [movie for movie in movies if movie % 2 != user % 2]
        for movie in rng.choice(liked, size=12, replace=False):
            lines.append(f"{user}\t{movie}\t{rng.integers(1, 6)}\t{880000000 + len(lines)}\n")
    flags = "|".join(["0"] * 18 + ["1"])
    items = "".join(f"{m}|Movie {m} (1995)|01-Jan-1995||http://x|{flags}\n" for m in movies)
    with zipfile.ZipFile(path, "w") as archive:
        archive.writestr("ml-100k/u.data", "".join(lines))
        archive.writestr("ml-100k/u.item", items)
    return path


def _step(step: str, args: list[str]) -> None:
    """One step of the promotion sequence against the deployment the environment names."""
    from bentos import store
    from recommender.settings import get_settings
    from recommender.tracking import registry, runs

    settings = get_settings()
    client = runs.client(settings.mlflow_uri)
    tag, catalog = settings.bento_model_tag, settings.catalog_table
    if step == "reconcile":
        store.reconcile_serving(client, NAME, catalog=catalog, model_tag=tag)
    elif step == "end-experiment":
        challenger = registry.running_challenger(client, NAME)
        if challenger is None:
            raise SystemExit("no experiment runs")
        store.end_experiment(client, NAME, challenger, promote=args == ["promote"], model_tag=tag)
    else:
        raise SystemExit(f"unknown step {step!r}: reconcile or end-experiment promote|keep")


if __name__ == "__main__":
    _step(sys.argv[1], sys.argv[2:])
