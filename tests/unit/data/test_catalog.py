from __future__ import annotations

import polars as pl
import pytest
from polars.testing import assert_frame_equal

from recommender.data.catalog import CATALOG_COLUMNS, build_catalog
from recommender.data.movielens import LINKS_SCHEMA
from recommender.data.schemas import CatalogSchema, validate_frame

MOVIES = pl.DataFrame(
    {
        "movie_id": [3, 1, 2],
        "title": ["Babylon 5", "Toy Story", "Jumanji"],
        "year": pl.Series([None, 1995, 1995], dtype=pl.Int32),
        "genres": pl.Series([["Sci-Fi"], ["Animation"], []], dtype=pl.List(pl.String)),
    }
)
LINKS = pl.DataFrame(
    {
        "movie_id": [1, 2, 2],  # movie 3 has no link; movie 2's second link is ignored
        "imdb_id": ["0114709", "0113497", "9999999"],
        "tmdb_id": [862, 8844, 1],
    }
)
DETAILS = pl.DataFrame(
    {
        "tmdb_id": [862, 862, 5],  # the repeated 862 keeps its first row; 5 matches no movie
        "tmdb_title": ["Toy Story", "Toy Story (dup)", "Other"],
        "poster_path": ["/toy.jpg", "/dup.jpg", "/other.jpg"],
        "overview": ["Toys.", "Dup.", "Other."],
        "popularity": [80.5, 1.0, 2.0],
        "vote_average": [7.9, 1.0, 2.0],
        "vote_count": [17000, 1, 2],
        "release_date": ["1995-10-30", None, "2001-01-01"],
    }
)


def test_every_movie_once_with_details_where_crawled() -> None:
    catalog = build_catalog(MOVIES, LINKS, DETAILS)

    expected = pl.DataFrame(
        {
            "movie_id": [3, 1, 2],
            "title": ["Babylon 5", "Toy Story", "Jumanji"],
            "year": pl.Series([None, 1995, 1995], dtype=pl.Int32),
            "genres": pl.Series([["Sci-Fi"], ["Animation"], []], dtype=pl.List(pl.String)),
            "imdb_id": [None, "0114709", "0113497"],
            "tmdb_id": [None, 862, 8844],
            "poster_path": [None, "/toy.jpg", None],
            "overview": [None, "Toys.", None],
            "popularity": [None, 80.5, None],
            "vote_average": [None, 7.9, None],
            "vote_count": [None, 17000, None],
            "release_date": [None, "1995-10-30", None],
        },
        schema_overrides={"popularity": pl.Float64, "vote_average": pl.Float64},
    )
    assert_frame_equal(catalog, expected)
    assert (
        validate_frame(catalog, CatalogSchema, name="catalog", max_rejected_fraction=0).summary[
            "rejected"
        ]
        == 0
    )


def test_without_details_the_tmdb_columns_are_typed_nulls() -> None:
    catalog = build_catalog(MOVIES, LINKS)

    assert catalog.columns == list(CATALOG_COLUMNS)
    assert catalog.select(CATALOG_COLUMNS[6:]).null_count().row(0) == (3,) * 6
    validate_frame(catalog, CatalogSchema, name="catalog", max_rejected_fraction=0)


def test_movies_sharing_a_tmdb_id_both_get_its_details() -> None:
    links = pl.DataFrame({"movie_id": [1, 2], "imdb_id": [None, None], "tmdb_id": [862, 862]})

    catalog = build_catalog(MOVIES.filter(pl.col("movie_id") < 3), links, DETAILS)

    assert catalog["poster_path"].to_list() == ["/toy.jpg", "/toy.jpg"]


def test_empty_links_as_from_ml100k() -> None:
    catalog = build_catalog(MOVIES, LINKS_SCHEMA.to_frame(), DETAILS)
    assert catalog.height == 3
    assert catalog["tmdb_id"].null_count() == 3


def test_repeated_movie_ids_are_refused() -> None:
    with pytest.raises(ValueError, match=r"movies must have one row per movie_id.*\[1\]"):
        build_catalog(pl.concat([MOVIES, MOVIES.slice(1, 1)]), LINKS)


def test_missing_columns_name_the_argument() -> None:
    with pytest.raises(ValueError, match="tmdb_details lacks the column.s. poster_path"):
        build_catalog(MOVIES, LINKS, DETAILS.drop("poster_path"))
    with pytest.raises(ValueError, match="links lacks the column.s. imdb_id"):
        build_catalog(MOVIES, LINKS.drop("imdb_id"))
