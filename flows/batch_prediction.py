"""The batch prediction flow: the champion's top-N for every known user, as Parquet."""

from __future__ import annotations

from typing import Any

from prefect import flow

from recommender.settings import get_settings
from tasks import prediction


@flow(name="batch-prediction", log_prints=True)
def batch_prediction_flow(k: int | None = None) -> dict[str, Any]:
    """Write ``<data_dir>/predictions/<model version>/predictions.parquet`` and a manifest.

    Args:
        k: Recommendations per user (default: ``settings.k``).
    """
    settings = get_settings()
    k = k or settings.k
    champion = prediction.load_champion(
        settings.mlflow_uri, settings.mlflow_experiment, settings.registered_model_name
    )
    predictions = prediction.predict_all(champion, k)
    directory = settings.predictions_dir / champion.version
    manifest = prediction.write_predictions(predictions, directory, champion, k)
    print(
        f"Top {k} for {manifest['users']:,} users from {champion.registered_model} "
        f"v{champion.version} in {directory / 'predictions.parquet'}"
    )
    return manifest
