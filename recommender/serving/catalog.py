"""The served catalog: movies by id, their poster URLs and a title search in a fixed ranking."""

from __future__ import annotations

from collections.abc import Iterable

import numpy as np
import polars as pl
from pydantic import BaseModel, ConfigDict


class Movie(BaseModel):
    """A catalog movie; ``poster_url`` is null when TMDB has no poster for it."""

    model_config = ConfigDict(frozen=True)

    movie_id: int
    title: str
    year: int | None
    genres: list[str]
    poster_url: str | None
    overview: str | None


class MoviesPage(BaseModel):
    """One page of catalog movies; ``total`` counts all the matches."""

    items: list[Movie]
    total: int
    page: int
    page_size: int


_CATALOG_FIELDS = ["movie_id", "title", "year", "genres", "poster_path", "overview"]


class Catalog:
    """The served catalog: movies by id and a title search in a fixed ranking.

    Args:
        frame: Catalog rows (``movie_id``, ``title``, ``year``, ``genres``, ``poster_path``,
            ``overview``; the other catalog columns are ignored).
        image_base_url: Prefix of TMDB poster paths (``Settings.tmdb_image_base_url``).
        ranking: Movie ids in the order listings and search results use; catalog movies
            missing from it follow in ascending id order.
    """

    def __init__(
        self, frame: pl.DataFrame, *, image_base_url: str, ranking: Iterable[int] = ()
    ) -> None:
        missing = [column for column in _CATALOG_FIELDS if column not in frame.columns]
        if missing:
            raise ValueError(f"frame lacks the catalog column(s) {', '.join(missing)}")
        base = image_base_url.rstrip("/")
        self._movies: dict[int, Movie] = {
            row["movie_id"]: Movie(
                movie_id=row["movie_id"],
                title=row["title"],
                year=row["year"],
                genres=row["genres"] or [],
                poster_url=poster_url(base, row["poster_path"]),
                overview=row["overview"],
            )
            for row in frame.select(_CATALOG_FIELDS).iter_rows(named=True)
        }
        ranked = [movie_id for movie_id in dict.fromkeys(ranking) if movie_id in self._movies]
        unranked = sorted(set(self._movies) - set(ranked))
        self._order: list[int] = ranked + unranked
        self._titles: list[str] = [self._movies[m].title.casefold() for m in self._order]

    def __len__(self) -> int:
        return len(self._movies)

    def __contains__(self, movie_id: object) -> bool:
        return movie_id in self._movies

    def __getitem__(self, movie_id: int) -> Movie:
        return self._movies[movie_id]

    @property
    def movie_ids(self) -> np.ndarray:
        """The catalog's movie ids, in listing order."""
        return np.asarray(self._order, dtype=np.int64)

    def unknown(self, movie_ids: Iterable[int]) -> list[int]:
        """The ids (sorted, distinct) that are not in the catalog."""
        return sorted({movie_id for movie_id in movie_ids if movie_id not in self._movies})

    def search(self, query: str | None, *, page: int, page_size: int) -> MoviesPage:
        """Page ``page`` (1-based) of the movies whose title contains ``query``, ignoring case.

        A blank or missing query matches every movie; a page past the end is empty.
        """
        needle = (query or "").strip().casefold()
        ids = (
            [m for m, title in zip(self._order, self._titles, strict=True) if needle in title]
            if needle
            else self._order
        )
        start = (page - 1) * page_size
        return MoviesPage(
            items=[self._movies[m] for m in ids[start : start + page_size]],
            total=len(ids),
            page=page,
            page_size=page_size,
        )


def poster_url(image_base_url: str, poster_path: str | None) -> str | None:
    """``image_base_url`` joined with TMDB's ``poster_path`` (``"/abc.jpg"``), or None."""
    if not poster_path:
        return None
    return f"{image_base_url.rstrip('/')}/{poster_path.lstrip('/')}"
