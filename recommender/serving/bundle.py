"""The served-model format: what a served model directory holds and how it is labelled.

The training flow writes it (through ``bentos/store.py``, into a BentoML model) and the service
reads it; both go through this module::

    model/            the ALSRecommender (ALSRecommender.save)
    catalog.parquet   the catalog (recommender.data.contracts.CATALOG) the model was trained with

Labels (string values) carry the lineage: :data:`MODEL_VERSION_LABEL` (the MLflow
registered-model version, which every response names), :data:`RUN_ID_LABEL` and
:data:`FEATURE_VERSION_LABEL`.
"""

from __future__ import annotations

import shutil
from collections.abc import Mapping
from pathlib import Path

import numpy as np
import polars as pl

from recommender.data.contracts import CATALOG
from recommender.modeling.als import ALSRecommender

MODEL_DIR = "model"
CATALOG_FILE = "catalog.parquet"
MODEL_VERSION_LABEL = "model_version"
RUN_ID_LABEL = "run_id"
FEATURE_VERSION_LABEL = "feature_version"
REQUIRED_LABELS = (MODEL_VERSION_LABEL, RUN_ID_LABEL, FEATURE_VERSION_LABEL)


def lineage_labels(*, model_version: str, run_id: str, feature_version: str) -> dict[str, str]:
    """The labels a served model carries."""
    return {
        MODEL_VERSION_LABEL: str(model_version),
        RUN_ID_LABEL: str(run_id),
        FEATURE_VERSION_LABEL: str(feature_version),
    }


def check_labels(labels: Mapping[str, str]) -> None:
    """Raise ValueError when a label of :data:`REQUIRED_LABELS` is missing or empty."""
    missing = [label for label in REQUIRED_LABELS if not labels.get(label)]
    if missing:
        raise ValueError(
            f"labels lacks {', '.join(missing)}; the service needs {', '.join(REQUIRED_LABELS)}"
        )


def write_bundle(target: Path, *, model_dir: Path, catalog: Path) -> None:
    """Copy a saved recommender and its catalog parquet into ``target`` in the served layout."""
    shutil.copytree(model_dir, target / MODEL_DIR)
    shutil.copy2(catalog, target / CATALOG_FILE)


def read_bundle(directory: Path) -> tuple[ALSRecommender, pl.DataFrame]:
    """The recommender and the catalog rows of a served model directory.

    Raises:
        ValueError: The catalog lacks movies the model can recommend.
        FileNotFoundError: A file of the bundle is missing.
    """
    model = ALSRecommender.load(directory / MODEL_DIR)
    catalog = pl.read_parquet(directory / CATALOG_FILE, columns=CATALOG.names())
    check_catalog_covers(model, catalog.get_column("movie_id").to_numpy())
    return model, catalog


def check_catalog_covers(model: ALSRecommender, catalog_movie_ids: np.ndarray) -> None:
    """Raise ValueError when the catalog lacks movies the model can recommend (a response
    could not describe them)."""
    absent = np.setdiff1d(model.movie_ids, catalog_movie_ids)
    if len(absent):
        raise ValueError(
            f"catalog lacks {len(absent)} movie(s) the model recommends, e.g. {absent[:5].tolist()}"
        )


def challenger_tag(model_tag: str) -> str:
    """The BentoML model of the challenger under experiment beside the champion ``model_tag``:
    the latest of ``<name>-challenger`` (absent while no experiment runs)."""
    name = model_tag.split(":", 1)[0]
    return f"{name}-challenger:latest"


def model_version(labels: Mapping[str, str], fallback: str) -> str:
    """The version a response names: the :data:`MODEL_VERSION_LABEL` label, else ``fallback``."""
    return labels.get(MODEL_VERSION_LABEL) or fallback
