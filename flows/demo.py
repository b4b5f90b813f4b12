"""The demo: the whole lifecycle on the embedded data, as one parent flow."""

from __future__ import annotations

from typing import Any

from prefect import flow

from flows.data_pipeline import data_pipeline
from flows.training import training_flow


@flow(name="demo", log_prints=True)
def demo_flow(
    ratings: str | None = None, pages: int | None = None, crawl: bool = True
) -> dict[str, Any]:
    """Run the data flow, then the training flow; each prints where its outputs are."""
    return {
        "data": data_pipeline(ratings=ratings, pages=pages, crawl=crawl),
        "training": training_flow(),
    }
