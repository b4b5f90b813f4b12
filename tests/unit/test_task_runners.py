"""The task runner setting selects the Prefect task runner the data flow runs with."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from prefect.settings import PREFECT_API_URL, temporary_settings
from prefect.task_runners import ThreadPoolTaskRunner
from prefect_dask import DaskTaskRunner

from flows.task_runners import configured_task_runner
from recommender.settings import SettingsError, get_settings


@pytest.fixture(autouse=True)
def no_yaml(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("MOVIEREC_ENV", "MOVIEREC_TASK_RUNNER", "MOVIEREC_DASK_SCHEDULER_ADDRESS"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("MOVIEREC_DEPLOYMENTS_DIR", str(tmp_path))


@pytest.fixture
def prefect_server() -> Iterator[None]:
    """A configured Prefect API URL (nothing listens: building a runner does not connect)."""
    with temporary_settings({PREFECT_API_URL: "http://127.0.0.1:9/api"}):
        yield


def test_threads_by_default() -> None:
    settings = get_settings()
    assert (settings.task_runner, settings.dask_scheduler_address) == ("thread", None)
    assert type(configured_task_runner(settings)) is ThreadPoolTaskRunner


def test_dask_with_a_scheduler_address_connects_to_it(
    prefect_server: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("MOVIEREC_TASK_RUNNER", "dask")
    monkeypatch.setenv("MOVIEREC_DASK_SCHEDULER_ADDRESS", "tcp://dask-scheduler:8786")
    runner = configured_task_runner(get_settings())
    assert isinstance(runner, DaskTaskRunner)
    assert runner.address == "tcp://dask-scheduler:8786"
    assert runner.cluster_class is None


def test_dask_without_an_address_starts_a_local_cluster(prefect_server: None) -> None:
    runner = configured_task_runner(get_settings(task_runner="dask"))
    assert isinstance(runner, DaskTaskRunner)
    assert runner.address is None  # a temporary LocalCluster is made when the flow run starts


def test_dask_needs_a_prefect_server() -> None:
    with temporary_settings({PREFECT_API_URL: None}):
        with pytest.raises(SettingsError, match="dask needs a Prefect server: set PREFECT_API_URL"):
            configured_task_runner(get_settings(task_runner="dask"))


def test_an_unknown_runner_names_the_setting(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MOVIEREC_TASK_RUNNER", "ray")
    with pytest.raises(SettingsError, match="task_runner: Input should be 'thread' or 'dask'"):
        get_settings()


def test_the_flow_runs_with_the_configured_runner(prefect_server: None) -> None:
    from flows.data_pipeline import data_pipeline

    runner = configured_task_runner(get_settings(task_runner="dask"))
    configured = data_pipeline.with_options(task_runner=runner)
    assert configured.task_runner is runner
    assert configured.name == "data-pipeline"
    assert type(data_pipeline.task_runner) is ThreadPoolTaskRunner  # the original is untouched
