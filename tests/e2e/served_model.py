"""Train ALS on the embedded MovieLens sample and import it into the BentoML model store.

Run as a script (``python tests/e2e/served_model.py OUT_DIR VERSION``) with ``BENTOML_HOME``
pointing at the store to fill: BentoML fixes its home when it is first imported, so the e2e
fixtures do this in a child process. Prints the model's tag on the last line.
"""

from __future__ import annotations

import sys
from pathlib import Path

from bentos.store import import_model
from recommender.catalog import build_catalog
from recommender.ingest import ratings_to_interactions
from recommender.model import train_als
from recommender.movielens import load_movielens
from recommender.settings import EMBEDDED_MOVIELENS


def main(out_dir: Path, version: str) -> str:
    """Train, save the model and its catalog under ``out_dir``, import them; return the tag."""
    data = load_movielens(EMBEDDED_MOVIELENS)
    model = train_als(ratings_to_interactions(data.ratings), movies=data.movies)
    model.save(out_dir / "model")
    build_catalog(data.movies, data.links).write_parquet(out_dir / "catalog.parquet")
    return import_model(
        out_dir / "model",
        out_dir / "catalog.parquet",
        labels={"model_version": version, "run_id": "e2e", "feature_version": "e2e"},
        metadata={},
    )


if __name__ == "__main__":
    print(main(Path(sys.argv[1]), sys.argv[2]))
