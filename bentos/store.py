"""Put trained models into the BentoML model store and build the Bento, both offline.

The training flow calls :func:`import_model` when the promotion gate makes a model champion, so
the store's ``movie-recommender:latest`` is always the latest champion, which the service loads
by default (``Settings.bento_model_tag``). :func:`build_bento` packages the service with that
model as ``bentofile.yaml`` describes; ``$BENTOML_HOME`` (default ``~/bentoml``) holds both
stores.
"""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

import bentoml

from recommender.serving import (
    CATALOG_FILE,
    FEATURE_VERSION_LABEL,
    MODEL_DIR,
    MODEL_VERSION_LABEL,
    RUN_ID_LABEL,
    RecommenderAPI,
)
from recommender.settings import PROJECT_ROOT, get_settings

MODEL_NAME = "movie-recommender"
REQUIRED_LABELS = (MODEL_VERSION_LABEL, RUN_ID_LABEL, FEATURE_VERSION_LABEL)


def import_model(
    model_dir: Path,
    catalog: Path,
    *,
    name: str = MODEL_NAME,
    labels: dict[str, str],
    metadata: dict[str, Any],
) -> str:
    """Store a saved recommender and its catalog as a new version of BentoML model ``name``.

    The copy is loaded the way the service loads it before it is saved, so the store never
    holds a model the service cannot serve.

    Args:
        model_dir: A directory written by ``ALSRecommender.save``.
        catalog: The catalog parquet (``recommender.catalog.CATALOG_COLUMNS``) the model was
            trained with; it must hold every movie the model knows.
        name: The BentoML model name.
        labels: Lineage, string values: at least ``model_version`` (the MLflow registered-model
            version, which responses name), ``run_id`` and ``feature_version``.
        metadata: Anything JSON-like worth keeping with the model, e.g. its metrics.

    Returns:
        The new model's tag, ``name:version``.

    Raises:
        ValueError: A required label is missing, or the catalog lacks a model movie.
        FileNotFoundError: ``model_dir`` or ``catalog`` is missing a file.
    """
    missing = [label for label in REQUIRED_LABELS if not labels.get(label)]
    if missing:
        raise ValueError(
            f"labels lacks {', '.join(missing)}; the service needs {', '.join(REQUIRED_LABELS)}"
        )
    settings = get_settings()
    with bentoml.models.create(name, labels=labels, metadata=metadata) as bento_model:
        target = Path(bento_model.path)
        shutil.copytree(model_dir, target / MODEL_DIR)
        shutil.copy2(catalog, target / CATALOG_FILE)
        RecommenderAPI.load(
            target,
            model_version=labels[MODEL_VERSION_LABEL],
            image_base_url=settings.tmdb_image_base_url,
            feedback_log=settings.feedback_log,
        )
    return str(bento_model.tag)


def build_bento(
    *,
    bentofile: Path = PROJECT_ROOT / "bentofile.yaml",
    version: str | None = None,
    labels: dict[str, str] | None = None,
) -> str:
    """Build the Bento ``bentofile`` describes (offline: packages are not locked).

    The Bento carries the model ``Settings.bento_model_tag`` names and, as its own labels, that
    model's labels updated with ``labels``.

    Returns:
        The Bento's tag, ``name:version``.
    """
    model = bentoml.models.get(get_settings().bento_model_tag)
    bento = bentoml.bentos.build_bentofile(
        str(bentofile),
        build_ctx=str(bentofile.parent),
        version=version,
        labels={**model.info.labels, **(labels or {})},
    )
    return str(bento.tag)
