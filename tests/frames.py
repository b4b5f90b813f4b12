"""Small frames in the project's column contracts, for tests."""

from __future__ import annotations

from collections.abc import Iterable

import polars as pl

from recommender.data.contracts import RATINGS


def interactions_frame(
    rows: Iterable[tuple[int, int, float, int]], *, source: str | None = "movielens"
) -> pl.DataFrame:
    """Interactions from ``(user_id, movie_id, rating, timestamp)`` rows; ``source=None``
    leaves out the ``source`` column."""
    frame = pl.DataFrame(list(rows), schema=RATINGS, orient="row")
    return frame if source is None else frame.with_columns(source=pl.lit(source))
