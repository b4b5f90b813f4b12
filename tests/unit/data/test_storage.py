"""Atomic table writes, content hashes and manifests."""

from __future__ import annotations

import json
from pathlib import Path

import polars as pl
import pytest

from recommender.data.storage import (
    combined_hash,
    frame_hash,
    new_generation,
    publish_generation,
    read_json,
    read_tables,
    write_tables,
)


def test_frame_hash_depends_on_content_not_on_chunking() -> None:
    df = pl.DataFrame({"a": [1, 2, 3], "g": [["x"], [], ["y", "z"]]})
    chunked = pl.concat([df.slice(0, 1), df.slice(1)], rechunk=False)
    assert chunked.n_chunks() > 1
    assert frame_hash(chunked) == frame_hash(df)
    assert frame_hash(df.reverse()) != frame_hash(df)
    assert frame_hash(df.with_columns(pl.col("a").cast(pl.Int32))) != frame_hash(df)


def test_combined_hash_ignores_order() -> None:
    assert combined_hash({"a": "1", "b": "2"}) == combined_hash({"b": "2", "a": "1"})
    assert combined_hash({"a": "1", "b": "2"}) != combined_hash({"a": "2", "b": "1"})


def test_write_tables_writes_parquet_and_a_manifest(tmp_path: Path) -> None:
    movies = pl.DataFrame({"movie_id": [1, 2]})
    manifest = write_tables(
        {"movies": movies}, tmp_path / "out", sources=[{"kind": "test", "path": tmp_path}]
    )
    assert pl.read_parquet(tmp_path / "out" / "movies.parquet").equals(movies)
    assert json.loads((tmp_path / "out" / "manifest.json").read_text()) == manifest
    assert manifest["tables"]["movies"] == {
        "file": "movies.parquet",
        "rows": 2,
        "columns": {"movie_id": "Int64"},
        "sha256": frame_hash(movies),
    }
    assert manifest["sources"] == [{"kind": "test", "path": str(tmp_path)}]
    assert manifest["content_hash"] == combined_hash({"movies": frame_hash(movies)})
    assert not list((tmp_path / "out").glob(".*.tmp"))


def test_read_json_names_the_file_when_it_is_corrupt(tmp_path: Path) -> None:
    path = tmp_path / "manifest.json"
    path.write_text("{not json")
    with pytest.raises(ValueError, match="manifest.json is not valid JSON"):
        read_json(path)
    with pytest.raises(FileNotFoundError, match="missing.json does not exist"):
        read_json(tmp_path / "missing.json")


def test_frame_hash_survives_a_parquet_round_trip_with_nulls(tmp_path: Path) -> None:
    df = pl.DataFrame(
        {"s": [None, "a", None], "g": [["x"], None, []], "f": [None, 1.5, None]},
        schema={"s": pl.String, "g": pl.List(pl.String), "f": pl.Float64},
    ).join(
        pl.DataFrame({"s": ["a"], "extra": [None]}, schema={"s": pl.String, "extra": pl.String}),
        on="s",
        how="left",
    )
    df.write_parquet(tmp_path / "t.parquet")
    assert frame_hash(pl.read_parquet(tmp_path / "t.parquet")) == frame_hash(df)
    assert frame_hash(df.with_columns(pl.col("f").fill_null(0.0))) != frame_hash(df)


def test_read_tables_checks_the_manifest(tmp_path: Path) -> None:
    movies = pl.DataFrame({"movie_id": [1, 2]})
    write_tables({"movies": movies}, tmp_path, sources=[])
    tables, manifest = read_tables(tmp_path, ("movies",))
    assert tables["movies"].equals(movies)
    with pytest.raises(ValueError, match="lists no table 'ratings'"):
        read_tables(tmp_path, ("ratings",))
    pl.DataFrame({"movie_id": [1, 3]}).write_parquet(tmp_path / "movies.parquet")
    with pytest.raises(ValueError, match="does not match its manifest"):
        read_tables(tmp_path, ("movies",))
    with pytest.raises(FileNotFoundError, match="run the data flow first"):
        read_tables(tmp_path / "nowhere", ("movies",))


def _generation(generations: Path, movie_ids: list[int]) -> Path:
    directory = new_generation(generations)
    write_tables({"movies": pl.DataFrame({"movie_id": movie_ids})}, directory, sources=[])
    return directory


def _movie_ids(directory: Path) -> list[int]:
    return read_tables(directory, ("movies",))[0]["movies"]["movie_id"].to_list()


def test_publish_swaps_the_link_and_keeps_only_the_previous_generation(tmp_path: Path) -> None:
    generations, link = tmp_path / "generations", tmp_path / "processed"
    first = _generation(generations, [1])
    publish_generation(first, link)
    failed = new_generation(generations)  # a run that failed before publishing
    second = _generation(generations, [1, 2])
    reader_saw = link.resolve()  # a reader in another process, just before the swap
    publish_generation(second, link)
    third = _generation(generations, [1, 2, 3])
    in_progress = new_generation(generations)  # a later run still writing

    publish_generation(third, link)

    assert _movie_ids(link) == [1, 2, 3]
    assert link.is_symlink() and not Path(link.readlink()).is_absolute()  # movable data dir
    assert sorted(generations.iterdir()) == [second, third, in_progress]
    assert reader_saw == first and not first.exists()  # two swaps later
    assert not failed.exists()
    assert _movie_ids(second) == [1, 2]
    assert not list(tmp_path.glob(".processed.*"))


def test_publish_turns_a_plain_processed_directory_into_the_previous_generation(
    tmp_path: Path,
) -> None:
    generations, link = tmp_path / "generations", tmp_path / "processed"
    write_tables({"movies": pl.DataFrame({"movie_id": [7]})}, link, sources=[])  # old layout

    publish_generation(_generation(generations, [8]), link)

    assert _movie_ids(link) == [8]
    (legacy,) = (g for g in generations.iterdir() if g != link.resolve())
    assert _movie_ids(legacy) == [7]
