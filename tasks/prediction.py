"""Tasks of the batch prediction flow."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import polars as pl
from prefect import task
from prefect.cache_policies import NO_CACHE

from recommender.data import storage
from recommender.tracking import registry, runs


@task(retries=2, retry_delay_seconds=[5, 15], cache_policy=NO_CACHE)
def load_champion(tracking_uri: str, experiment: str, name: str) -> registry.Champion:
    """The registry's champion model."""
    return registry.load_champion(runs.connect(tracking_uri, experiment=experiment), name)


@task(cache_policy=NO_CACHE)
def predict_all(champion: registry.Champion, k: int) -> pl.DataFrame:
    """Top-k for every user the model knows, with implicit's batched recommend."""
    model = champion.model
    return model.recommend_batch(model.user_ids, k=k).to_frame()


@task(cache_policy=NO_CACHE)
def write_predictions(
    predictions: pl.DataFrame, directory: Path, champion: registry.Champion, k: int
) -> dict[str, Any]:
    """``predictions.parquet`` and its manifest, which names the model that produced them."""
    return storage.write_tables(
        {"predictions": predictions},
        directory,
        sources=[
            {
                "kind": "mlflow-model",
                "registered_model": champion.registered_model,
                "version": champion.version,
                "run_id": champion.run_id,
            }
        ],
        extra={"k": k, "users": predictions.get_column("user_id").n_unique()},
    )
