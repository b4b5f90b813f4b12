"""A small served model: ALS trained on the embedded MovieLens sample and imported into BentoML.

Used by the integration and browser tests and by the serving benchmark. BentoML fixes its home
(``BENTOML_HOME``) when it is first imported, so a process that wants another store runs this as
a script: ``python -m support.sample_model OUT_DIR VERSION`` prints the model's tag on its last
line.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

from recommender.data.catalog import build_catalog
from recommender.data.movielens import load_movielens
from recommender.modeling.als import ALSRecommender, train_als
from recommender.serving.bundle import CATALOG_FILE, MODEL_DIR, lineage_labels
from recommender.settings import EMBEDDED_MOVIELENS, REGISTERED_MODEL_NAME


def train_sample(out_dir: Path, *, source: Path = EMBEDDED_MOVIELENS) -> ALSRecommender:
    """Train ALS (default configuration) on the embedded sample (or another MovieLens
    ``source``); save the model and its catalog under ``out_dir`` in the served layout
    (``model/``, ``catalog.parquet``)."""
    data = load_movielens(source)
    model = train_als(data.ratings, movies=data.movies)
    model.save(out_dir / MODEL_DIR)
    build_catalog(data.movies, data.links).write_parquet(out_dir / CATALOG_FILE)
    return model


def import_sample(
    out_dir: Path,
    *,
    model_version: str,
    run_id: str = "sample",
    feature_version: str = "sample",
    metadata: dict[str, Any] | None = None,
    name: str = REGISTERED_MODEL_NAME,
    source: Path = EMBEDDED_MOVIELENS,
) -> tuple[str, ALSRecommender]:
    """:func:`train_sample`, then import it into the BentoML store of ``$BENTOML_HOME`` as model
    ``name`` (the challenger's name, ``recommender.serving.bundle.challenger_tag``, puts it
    beside the champion for an experiment).

    Returns:
        The BentoML model's tag and the trained model.
    """
    from bentos.store import import_model  # imports bentoml: only when importing

    model = train_sample(out_dir, source=source)
    tag = import_model(
        out_dir / MODEL_DIR,
        out_dir / CATALOG_FILE,
        name=name,
        labels=lineage_labels(
            model_version=model_version, run_id=run_id, feature_version=feature_version
        ),
        metadata=metadata or {},
    )
    return tag, model


if __name__ == "__main__":
    print(import_sample(Path(sys.argv[1]), model_version=sys.argv[2])[0])
