"""TMDB specifics: which requests are made, argument checks, and the readers of the raw crawl."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import polars as pl
import pytest
from pydantic import SecretStr

from recommender.data.logs import AppendLog
from recommender.data.tmdb import (
    DETAILS_SCHEMA,
    CrawlConfig,
    TMDBCrawler,
    crawl_tmdb,
    load_tmdb_details,
    load_tmdb_genres,
)
from recommender.settings import Settings
from support.fake_tmdb import GENRES, FakeTMDB


@pytest.fixture
def fake() -> Iterator[FakeTMDB]:
    with FakeTMDB(movies=30) as server:
        yield server


def crawler(fake: FakeTMDB, raw_dir: Path, **options: Any) -> TMDBCrawler:
    return TMDBCrawler(
        out_dir=raw_dir,
        api_token=SecretStr(fake.api_token),
        base_url=fake.base_url,
        rate_limit=500.0,
        **options,
    )


def test_details_cover_the_listed_movies_and_the_extra_ids_once_each(
    fake: FakeTMDB, tmp_path: Path
) -> None:
    listed = set(fake.list_ids("/movie/popular", 1)) | set(fake.list_ids("/movie/top_rated", 1))
    extra = min(set(fake.movies) - listed)

    report = crawler(fake, tmp_path).crawl(
        lists=["popular", "top_rated"], pages=1, movie_ids=[extra]
    )

    detail_paths = [r.path for r in fake.requests if r.path.startswith("/movie/")]
    detail_paths = [p for p in detail_paths if p.removeprefix("/movie/").isdigit()]
    assert sorted(detail_paths) == sorted(f"/movie/{i}" for i in listed | {extra})
    assert report.movies_fetched == len(listed) + 1
    assert set(load_tmdb_details(tmp_path)["tmdb_id"]) == listed | {extra}


def test_language_and_region_are_sent_and_region_only_to_lists(
    fake: FakeTMDB, tmp_path: Path
) -> None:
    crawler(fake, tmp_path, language="fr-FR", region="FR").crawl(lists=["discover"], pages=1)

    assert {r.params["language"] for r in fake.requests} == {"fr-FR"}
    with_region = {r.path for r in fake.requests if r.params.get("region") == "FR"}
    assert with_region == {"/discover/movie"}
    assert all(r.headers["Authorization"] == f"Bearer {fake.api_token}" for r in fake.requests)


def test_crawl_tmdb_takes_everything_from_settings(fake: FakeTMDB, tmp_path: Path) -> None:
    settings = Settings(
        data_dir=tmp_path,
        tmdb_api_key=SecretStr(fake.api_key),
        tmdb_base_url=fake.base_url,
        tmdb_language="de-DE",
        crawl_rate_limit=500.0,
        crawl_pages=2,
        crawl_lists=["top_rated"],
    )

    report = crawl_tmdb(
        settings.tmdb_dir, CrawlConfig(**settings.tmdb_crawl_options()), movie_ids=[5]
    )

    assert (report.pages_fetched, report.movies_fetched, report.movies_not_found) == (2, 30, 1)
    pages = sorted(r.params["page"] for r in fake.requests if r.path == "/movie/top_rated")
    assert pages == ["1", "2"]
    assert {r.params["language"] for r in fake.requests} == {"de-DE"}
    assert (settings.raw_dir / "tmdb" / "movies.jsonl").is_file()


@pytest.mark.parametrize(
    ("options", "argument"),
    [
        ({"pages": 0}, "pages"),
        ({"pages": 501}, "pages"),
        ({"pages": range(499, 502)}, "pages"),
        ({"lists": ["popular", "upcoming"]}, "lists"),
        ({"lists": []}, "lists"),
        ({"movie_ids": [603, -1]}, "movie_ids"),
        ({"movie_ids": [603.0]}, "movie_ids"),
    ],
)
def test_bad_arguments_are_value_errors_naming_them(
    tmp_path: Path, options: dict[str, Any], argument: str
) -> None:
    offline = TMDBCrawler(out_dir=tmp_path, api_key=SecretStr("k"), base_url="http://127.0.0.1:9")
    with pytest.raises(ValueError, match=argument):
        offline.crawl(**options)


def test_a_page_range_crawls_exactly_those_pages(fake: FakeTMDB, tmp_path: Path) -> None:
    crawler(fake, tmp_path).crawl(lists=["popular"], pages=range(2, 3))

    pages = [r.params["page"] for r in fake.requests if r.path == "/movie/popular"]
    assert pages == ["2"]


def test_load_tmdb_details_has_the_documented_columns_and_values(
    fake: FakeTMDB, tmp_path: Path
) -> None:
    crawler(fake, tmp_path).crawl(lists=["discover"], pages=2)

    details = load_tmdb_details(tmp_path)

    assert details.schema == pl.Schema(DETAILS_SCHEMA)
    assert details.height == 30
    assert details["tmdb_id"].to_list() == sorted(fake.movies)
    by_id = {row["tmdb_id"]: row for row in details.iter_rows(named=True)}
    for id_, movie in fake.movies.items():
        row = by_id[id_]
        assert row["tmdb_title"] == movie["title"]
        assert row["poster_path"] == movie["poster_path"]  # None for every 10th movie
        assert row["overview"] == (movie["overview"] or None)
        assert row["release_date"] == (movie["release_date"] or None)
        assert (row["popularity"], row["vote_average"], row["vote_count"]) == (
            movie["popularity"],
            movie["vote_average"],
            movie["vote_count"],
        )
    assert details["poster_path"].null_count() == 3
    assert details["release_date"].null_count() == 1
    assert load_tmdb_genres(tmp_path) == GENRES


def test_loaders_keep_the_last_record_of_a_movie(tmp_path: Path) -> None:
    movie = {"id": 7, "title": "Old", "popularity": 1.0, "vote_average": 5.0, "vote_count": 3}
    store = AppendLog(tmp_path / "movies.jsonl")
    store.append_records([{"key": "7", "body": movie}])
    store.append_records([{"key": "7", "body": {**movie, "title": "New", "popularity": 2}}])

    details = load_tmdb_details(tmp_path)

    assert details.rows() == [(7, "New", None, None, 2.0, 5.0, 3, None)]


def test_loaders_on_an_empty_crawl(tmp_path: Path) -> None:
    details = load_tmdb_details(tmp_path)

    assert details.is_empty()
    assert details.schema == pl.Schema(DETAILS_SCHEMA)
    assert load_tmdb_genres(tmp_path) == {}
