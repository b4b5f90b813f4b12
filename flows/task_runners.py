"""The Prefect task runner the settings ask for (``MOVIEREC_TASK_RUNNER``).

Flows keep the thread pool of their decorator; the command line swaps in the configured runner
when it calls a flow: ``data_pipeline.with_options(task_runner=configured_task_runner(settings))``.
"""

from __future__ import annotations

from typing import Any

from prefect.settings import get_current_settings
from prefect.task_runners import TaskRunner, ThreadPoolTaskRunner

from recommender.settings import Settings, SettingsError


def configured_task_runner(settings: Settings) -> TaskRunner[Any]:
    """A new task runner as ``settings.task_runner`` says.

    ``"thread"`` gives Prefect's :class:`~prefect.task_runners.ThreadPoolTaskRunner`;
    ``"dask"`` a ``prefect_dask.DaskTaskRunner`` connected to ``dask_scheduler_address``, or,
    when that is unset, one that starts a temporary local cluster for the flow run.

    Raises:
        SettingsError: Dask without a Prefect server (``PREFECT_API_URL``): in ephemeral mode
            every Dask worker would start a temporary server of its own and record its task
            runs there.
    """
    if settings.task_runner == "thread":
        return ThreadPoolTaskRunner()
    if not get_current_settings().api.url:
        raise SettingsError(
            "MOVIEREC_TASK_RUNNER=dask needs a Prefect server: set PREFECT_API_URL (`make stack` "
            "starts one), or use MOVIEREC_TASK_RUNNER=thread"
        )
    from prefect_dask import DaskTaskRunner  # imports dask: only when asked for

    if settings.dask_scheduler_address:
        return DaskTaskRunner(address=settings.dask_scheduler_address)
    return DaskTaskRunner()
