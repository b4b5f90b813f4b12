"""The rollback flow: give ``champion`` back to the version it replaced, packaged first."""

from __future__ import annotations

from prefect import flow

from recommender.settings import get_settings
from tasks import training


@flow(name="rollback", log_prints=True)
def rollback_flow() -> dict[str, str]:
    """Move ``champion`` back to the version the current champion replaced and rebuild the Bento
    with it; an experiment that runs is ended. A second rollback goes one more step back.

    Returns:
        ``from_version``, ``to_version`` and the ``bento_tag`` built.
    """
    settings = get_settings()
    training.connect_tracking(
        settings.mlflow_uri, settings.mlflow_experiment, settings.mlflow_artifacts_dir
    )
    result = training.rollback(
        settings.mlflow_uri,
        settings.registered_model_name,
        settings.catalog_table,
        bento_model_tag=settings.bento_model_tag,
    )
    print(
        f"Rolled back: champion v{result['from_version']} -> v{result['to_version']}; "
        f"Bento {result['bento_tag']} (restart or redeploy the service to serve it)."
    )
    return result
