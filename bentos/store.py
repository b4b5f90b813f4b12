"""Put trained models into the BentoML model store and build the Bento, both offline.

The training flow calls :func:`import_model` when the promotion gate makes a model champion, so
the store's ``movie-recommender:latest`` is always the latest champion, which the service loads
by default (``Settings.bento_model_tag``). :func:`build_bento` packages the service with that
model as ``bentofile.yaml`` describes; ``$BENTOML_HOME`` (default ``~/bentoml``) holds both
stores. The served-model format is :mod:`recommender.serving.bundle`.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import bentoml

from recommender.serving.bundle import check_labels, read_bundle, write_bundle
from recommender.settings import PROJECT_ROOT, REGISTERED_MODEL_NAME


def import_model(
    model_dir: Path,
    catalog: Path,
    *,
    name: str = REGISTERED_MODEL_NAME,
    labels: dict[str, str],
    metadata: dict[str, Any],
) -> str:
    """Store a saved recommender and its catalog as a new version of BentoML model ``name``.

    The copy is read back the way the service reads it before it is saved, so the store never
    holds a model the service cannot serve.

    Args:
        model_dir: A directory written by ``ALSRecommender.save``.
        catalog: The catalog parquet the model was trained with; it must hold every movie the
            model knows.
        name: The BentoML model name.
        labels: Lineage (``recommender.serving.bundle.lineage_labels``).
        metadata: Anything JSON-like worth keeping with the model, e.g. its metrics.

    Returns:
        The new model's tag, ``name:version``.

    Raises:
        ValueError: A required label is missing, or the catalog lacks a model movie.
        FileNotFoundError: ``model_dir`` or ``catalog`` is missing a file.
    """
    check_labels(labels)
    with bentoml.models.create(name, labels=labels, metadata=metadata) as bento_model:
        target = Path(bento_model.path)
        write_bundle(target, model_dir=model_dir, catalog=catalog)
        read_bundle(target)
    return str(bento_model.tag)


def build_bento(
    *,
    model_tag: str,
    bentofile: Path = PROJECT_ROOT / "bentofile.yaml",
    version: str | None = None,
    labels: dict[str, str] | None = None,
) -> str:
    """Build the Bento ``bentofile`` describes (offline: packages are not locked).

    The Bento carries the model ``model_tag`` (``Settings.bento_model_tag``, which the service
    loads) and, as its own labels, that model's labels updated with ``labels``.

    Returns:
        The Bento's tag, ``name:version``.
    """
    model = bentoml.models.get(model_tag)
    bento = bentoml.bentos.build_bentofile(
        str(bentofile),
        build_ctx=str(bentofile.parent),
        version=version,
        labels={**model.info.labels, **(labels or {})},
    )
    return str(bento.tag)
