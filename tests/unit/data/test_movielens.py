from __future__ import annotations

import hashlib
import shutil
import zipfile
from collections.abc import Callable
from pathlib import Path

import polars as pl
import pytest
from polars.testing import assert_frame_equal

from recommender.data.movielens import (
    LINKS_SCHEMA,
    MovieLensFormatError,
    MovieLensSourceError,
    load_movielens,
)
from recommender.settings import EMBEDDED_MOVIELENS

GENRES = pl.List(pl.String)

EXPECTED = {
    "ml-latest": (
        pl.DataFrame(
            {
                "user_id": [1, 1, 2, 2],
                "movie_id": [1, 2, 1, 3],
                "rating": [4.0, 3.5, 5.0, 0.5],
                "timestamp": [964982703, 964981247, 964982224, 964983815],
            }
        ),
        pl.DataFrame(
            {
                "movie_id": [1, 2, 3],
                "title": ["Toy Story", "American President, The", "Babylon 5"],
                "year": pl.Series([1995, 1995, None], dtype=pl.Int32),
                "genres": pl.Series(
                    [
                        ["Adventure", "Animation", "Children", "Comedy", "Fantasy"],
                        ["Comedy", "Drama", "Romance"],
                        [],
                    ],
                    dtype=GENRES,
                ),
            }
        ),
        pl.DataFrame(
            {
                "movie_id": [1, 2, 3],
                "imdb_id": ["0114709", "0112346", "0105946"],
                "tmdb_id": [862, 9087, None],
            }
        ),
        ("links.csv", "movies.csv", "ratings.csv"),
    ),
    "ml-100k": (
        pl.DataFrame(
            {
                "user_id": [1, 1, 2],
                "movie_id": [1, 2, 1],
                "rating": [5.0, 3.0, 4.0],
                "timestamp": [874965758, 876893171, 888550871],
            }
        ),
        pl.DataFrame(
            {
                "movie_id": [1, 2, 3, 267],
                "title": ["Toy Story", "Café Society", "Some Film", "unknown"],
                # 1996 comes from the release date; "unknown" has neither year nor genre.
                "year": pl.Series([1995, 1995, 1996, None], dtype=pl.Int32),
                "genres": pl.Series(
                    [["Animation", "Children's", "Comedy"], ["Drama"], ["Action", "Thriller"], []],
                    dtype=GENRES,
                ),
            }
        ),
        LINKS_SCHEMA.to_frame(),
        ("u.data", "u.genre", "u.item"),
    ),
}


@pytest.fixture
def dataset_dir(request: pytest.FixtureRequest) -> Path:
    return request.getfixturevalue(
        {"ml-latest": "ml_latest_dir", "ml-100k": "ml100k_dir"}[request.param]
    )


@pytest.mark.parametrize("dataset_dir", list(EXPECTED), indirect=True)
@pytest.mark.parametrize("kind", ["directory", "zip", "zip with folder", "url"])
def test_loads_each_layout_from_each_kind_of_source(
    dataset_dir: Path,
    kind: str,
    make_zip: Callable[..., Path],
    tmp_path: Path,
    request: pytest.FixtureRequest,
) -> None:
    layout = "ml-100k" if dataset_dir.name == "ml-100k" else "ml-latest"
    ratings, movies, links, files = EXPECTED[layout]
    if kind == "directory":
        source: str | Path = dataset_dir
    else:
        source = make_zip(dataset_dir, folder=dataset_dir.name if kind != "zip" else None)
        zip_sha256 = hashlib.sha256(source.read_bytes()).hexdigest()
    if kind == "url":
        base_url, served = request.getfixturevalue("file_server")
        shutil.copy(source, served / "dataset.zip")
        source = f"{base_url}/dataset.zip"

    data = load_movielens(source, cache_dir=tmp_path / "cache")

    assert_frame_equal(data.ratings, ratings)
    assert_frame_equal(data.movies, movies)
    assert_frame_equal(data.links, links)
    assert data.source.uri == str(source)
    assert data.source.layout == layout
    assert data.source.files == files
    if kind != "directory":
        assert data.source.sha256 == zip_sha256


def test_directory_hash_covers_the_files_read(ml_latest_dir: Path) -> None:
    before = load_movielens(ml_latest_dir).source.sha256
    (ml_latest_dir / "tags.csv").write_text("not read\n")
    assert load_movielens(ml_latest_dir).source.sha256 == before
    with (ml_latest_dir / "ratings.csv").open("a") as handle:
        handle.write("3,1,2.0,964982999\n")
    assert load_movielens(ml_latest_dir).source.sha256 != before


def test_ml100k_without_u_genre_uses_the_standard_genre_names(ml100k_dir: Path) -> None:
    (ml100k_dir / "u.genre").unlink()
    data = load_movielens(ml100k_dir)
    assert_frame_equal(data.movies, EXPECTED["ml-100k"][1])
    assert data.source.files == ("u.data", "u.item")


def test_ml100k_genre_names_come_from_u_genre(ml100k_dir: Path) -> None:
    genre_file = ml100k_dir / "u.genre"
    genre_file.write_text(genre_file.read_text().replace("Children's|", "Kids|"))
    movies = load_movielens(ml100k_dir).movies
    assert movies["genres"][0].to_list() == ["Animation", "Kids", "Comedy"]


def test_url_download_is_cached_under_a_name_from_the_url(
    ml_latest_dir: Path,
    make_zip: Callable[..., Path],
    file_server: tuple[str, Path],
    tmp_path: Path,
) -> None:
    base_url, served = file_server
    shutil.copy(make_zip(ml_latest_dir), served / "ml-latest-tiny.zip")
    cache = tmp_path / "cache"
    first = load_movielens(f"{base_url}/ml-latest-tiny.zip", cache_dir=cache)
    (served / "ml-latest-tiny.zip").unlink()  # the second load must not need the server

    second = load_movielens(f"{base_url}/ml-latest-tiny.zip", cache_dir=cache)

    assert [p.name for p in cache.iterdir()] == [second.source.path.name]
    assert second.source.path.name.endswith("-ml-latest-tiny.zip")
    assert second.source.sha256 == first.source.sha256
    assert_frame_equal(second.ratings, first.ratings)


def test_embedded_dataset_loads() -> None:
    data = load_movielens(EMBEDDED_MOVIELENS)
    assert data.ratings.height == 100_836
    assert data.ratings["user_id"].n_unique() == 610
    assert data.movies.height == 9_742
    assert data.links.height == 9_742
    assert data.ratings.null_count().sum_horizontal().item() == 0
    toy_story = data.movies.row(0, named=True)
    assert (toy_story["title"], toy_story["year"]) == ("Toy Story", 1995)


def test_unparseable_values_become_null_rows_instead_of_failing_the_file(
    ml_latest_dir: Path,
) -> None:
    with (ml_latest_dir / "ratings.csv").open("a") as handle:
        handle.write("3,abc,4.0,964982999\n3,4,4.0\n3,5,2.5,964983000,extra\n")

    ratings = load_movielens(ml_latest_dir).ratings

    assert ratings.height == 7
    assert ratings.tail(3).rows() == [
        (3, None, 4.0, 964982999),
        (3, 4, 4.0, None),
        (3, 5, 2.5, 964983000),
    ]


def test_missing_path_is_a_source_error(tmp_path: Path) -> None:
    with pytest.raises(MovieLensSourceError, match="nope.*no such file or directory"):
        load_movielens(tmp_path / "nope")


def test_directory_with_neither_layout_names_what_it_found(ml_latest_dir: Path) -> None:
    (ml_latest_dir / "links.csv").unlink()
    with pytest.raises(MovieLensFormatError, match=r"not a MovieLens dataset.*found movies\.csv"):
        load_movielens(ml_latest_dir)


def test_ratings_file_with_wrong_columns_names_the_file(ml_latest_dir: Path) -> None:
    (ml_latest_dir / "ratings.csv").write_text("user,item,rating,timestamp\n1,1,4.0,1\n")
    with pytest.raises(MovieLensFormatError, match=r"ratings\.csv lacks the column\(s\) userId"):
        load_movielens(ml_latest_dir)


def test_empty_file_is_a_format_error(ml_latest_dir: Path) -> None:
    (ml_latest_dir / "movies.csv").write_text("")
    with pytest.raises(MovieLensFormatError, match=r"movies\.csv is empty"):
        load_movielens(ml_latest_dir)


def test_u_data_with_wrong_field_count_names_the_file(ml100k_dir: Path) -> None:
    (ml100k_dir / "u.data").write_text("1,1,5,874965758\n")
    with pytest.raises(MovieLensFormatError, match=r"u\.data has 1 field\(s\).*expected 4"):
        load_movielens(ml100k_dir)


def test_corrupt_zip_is_a_format_error(tmp_path: Path) -> None:
    corrupt = tmp_path / "ml-latest-small.zip"
    corrupt.write_bytes(b"PK\x03\x04 this is not really a zip")
    with pytest.raises(MovieLensFormatError, match="not a valid zip archive"):
        load_movielens(corrupt)


def test_zip_with_corrupt_member_data_is_a_format_error(
    ml_latest_dir: Path, make_zip: Callable[..., Path]
) -> None:
    archive = make_zip(ml_latest_dir)
    with zipfile.ZipFile(archive) as zf:
        member = zf.getinfo("ratings.csv")
    data = bytearray(archive.read_bytes())
    start = member.header_offset + 30 + len(member.filename)  # past the local file header
    data[start : start + member.compress_size] = b"\xff" * member.compress_size
    archive.write_bytes(bytes(data))
    with pytest.raises(MovieLensFormatError, match="not a valid zip archive"):
        load_movielens(archive)


def test_http_error_is_a_source_error(file_server: tuple[str, Path], tmp_path: Path) -> None:
    base_url, _ = file_server
    with pytest.raises(MovieLensSourceError, match="404"):
        load_movielens(f"{base_url}/missing.zip", cache_dir=tmp_path / "cache")
    assert list((tmp_path / "cache").iterdir()) == []


def test_truncated_download_leaves_nothing_in_the_cache(
    ml_latest_dir: Path,
    make_zip: Callable[..., Path],
    file_server: tuple[str, Path],
    tmp_path: Path,
) -> None:
    base_url, served = file_server
    shutil.copy(make_zip(ml_latest_dir), served / "dataset.zip")
    with pytest.raises(MovieLensSourceError, match="download failed"):
        load_movielens(f"{base_url}/truncated/dataset.zip", cache_dir=tmp_path / "cache")
    assert list((tmp_path / "cache").iterdir()) == []


def test_download_that_is_not_a_zip_is_not_cached(
    file_server: tuple[str, Path], tmp_path: Path
) -> None:
    base_url, served = file_server
    (served / "index.zip").write_text("<html>maintenance</html>")
    with pytest.raises(MovieLensFormatError, match="not a zip archive"):
        load_movielens(f"{base_url}/index.zip", cache_dir=tmp_path / "cache")
    assert list((tmp_path / "cache").iterdir()) == []
