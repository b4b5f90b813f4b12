"""Variants of the embedded MovieLens sample that tests feed to the data flow."""

from __future__ import annotations

import shutil
from pathlib import Path

import polars as pl

from recommender.settings import EMBEDDED_MOVIELENS


def generous_copy(target: Path) -> Path:
    """The embedded dataset with every rating 5 stars: the rating distribution drifts."""
    target.mkdir(parents=True)
    for name in ("movies.csv", "links.csv"):
        shutil.copy(EMBEDDED_MOVIELENS / name, target / name)
    pl.read_csv(EMBEDDED_MOVIELENS / "ratings.csv").with_columns(rating=pl.lit(5.0)).write_csv(
        target / "ratings.csv"
    )
    return target
