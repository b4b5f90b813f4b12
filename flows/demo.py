"""The demo: the whole lifecycle on the embedded data, as one parent flow."""

from __future__ import annotations

from typing import Any

from prefect import flow

from flows.data_pipeline import data_pipeline
from flows.task_runners import configured_task_runner
from flows.training import training_flow
from recommender.settings import get_settings


@flow(name="demo", log_prints=True)
def demo_flow(
    ratings: str | None = None, pages: int | None = None, crawl: bool = True
) -> dict[str, Any]:
    """Run the data flow, then the training flow; each prints where its outputs are."""
    runner = configured_task_runner(get_settings())  # MOVIEREC_TASK_RUNNER: thread or dask
    return {
        "data": data_pipeline.with_options(task_runner=runner)(
            ratings=ratings, pages=pages, crawl=crawl
        ),
        "training": training_flow(),
    }
