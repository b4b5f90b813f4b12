"""The movie catalog: MovieLens movies with their links and, where crawled, TMDB details."""

from __future__ import annotations

import polars as pl

from recommender.data import contracts

CATALOG_COLUMNS = tuple(contracts.CATALOG.names())
TMDB_DETAIL_DTYPES = pl.Schema(
    {name: dtype for name, dtype in contracts.TMDB_DETAILS.items() if name != "tmdb_title"}
)


def build_catalog(
    movies: pl.DataFrame,
    links: pl.DataFrame,
    tmdb_details: pl.DataFrame | None = None,
) -> pl.DataFrame:
    """Join movies with their links and TMDB details; one row per movie, in ``movies`` order.

    Every movie stays, with null ids and TMDB columns when it has no link or no details. A
    repeated key in a side table (``links.movie_id``, ``tmdb_details.tmdb_id``) keeps its first
    row so that it cannot multiply catalog rows; several movies may share a TMDB id.

    Args:
        movies: Movies (contract columns; movie_id unique).
        links: Links (``movie_id``, ``imdb_id``, ``tmdb_id``); may be empty (ml-100k).
        tmdb_details: TMDB details keyed by ``tmdb_id`` (extra columns such as ``tmdb_title``
            are ignored), or None when nothing was crawled.

    Returns:
        The catalog with the columns of ``CATALOG_COLUMNS``, in that order.

    Raises:
        ValueError: ``movies`` repeats a movie_id, or an argument lacks a column.
    """
    movies = _select(movies, list(CATALOG_COLUMNS[:4]), argument="movies")
    duplicated = movies.filter(pl.col("movie_id").is_duplicated())["movie_id"].unique()
    if duplicated.len():
        raise ValueError(
            f"movies must have one row per movie_id; repeated: {duplicated.head(5).to_list()}"
        )
    details = (
        TMDB_DETAIL_DTYPES.to_frame()
        if tmdb_details is None
        else _select(tmdb_details, TMDB_DETAIL_DTYPES.names(), argument="tmdb_details")
    )
    return (
        movies.join(
            _select(links, ["movie_id", "imdb_id", "tmdb_id"], argument="links").unique(
                "movie_id", keep="first", maintain_order=True
            ),
            on="movie_id",
            how="left",
            maintain_order="left",
        )
        .join(
            details.unique("tmdb_id", keep="first", maintain_order=True),
            on="tmdb_id",
            how="left",
            maintain_order="left",
        )
        .select(CATALOG_COLUMNS)
    )


def _select(frame: pl.DataFrame, columns: list[str], *, argument: str) -> pl.DataFrame:
    missing = [column for column in columns if column not in frame.columns]
    if missing:
        raise ValueError(f"{argument} lacks the column(s) {', '.join(missing)}")
    return frame.select(columns)
