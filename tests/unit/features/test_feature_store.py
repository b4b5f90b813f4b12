"""Versioned feature snapshots: content-addressed versions, registry, reads."""

from __future__ import annotations

from pathlib import Path

import polars as pl
import pytest

from recommender.features.store import FeatureStore, FeatureVersionNotFoundError

MANIFEST = {"content_hash": "abc"}


def _tables(scale: int = 1) -> dict[str, pl.DataFrame]:
    return {
        "interactions": pl.DataFrame({"user_id": [1, 1, 2], "weight": [1.0, 2.0 * scale, 3.0]}),
        "movies": pl.DataFrame({"movie_id": [10, 20], "title": ["A", None]}),
    }


def test_same_inputs_give_the_same_version(tmp_path: Path) -> None:
    store = FeatureStore(tmp_path)
    first = store.write("movierec", _tables(), source_manifest=MANIFEST)
    again = store.write("movierec", _tables(), source_manifest=MANIFEST)
    other = store.write("movierec", _tables(scale=2), source_manifest=MANIFEST)
    assert first.version == again.version != other.version
    assert [entry["version"] for entry in store.registry("movierec")] == [
        first.version,
        other.version,
    ]


def test_registry_records_schema_rows_statistics_and_lineage(tmp_path: Path) -> None:
    store = FeatureStore(tmp_path)
    written = store.write("movierec", _tables(), source_manifest=MANIFEST)
    entry = store.registry("movierec")[0]
    assert entry["name"] == "movierec"
    assert entry["source_manifest"] == MANIFEST
    assert entry["code_version"]
    assert entry["created_at"]
    interactions = entry["tables"]["interactions"]
    assert interactions["rows"] == 3
    assert interactions["schema"] == {"user_id": "Int64", "weight": "Float64"}
    assert interactions["statistics"]["weight"] == {
        "null_count": 0,
        "min": 1.0,
        "max": 3.0,
        "mean": 2.0,
    }
    assert entry["tables"]["movies"]["statistics"]["title"] == {"null_count": 1}
    assert written.metadata == entry


def test_read_a_version_or_the_latest(tmp_path: Path) -> None:
    store = FeatureStore(tmp_path)
    first = store.write("movierec", _tables(), source_manifest=MANIFEST)
    latest = store.write("movierec", _tables(scale=3), source_manifest=MANIFEST)
    assert store.read("movierec").version == latest.version
    read = store.read("movierec", first.version)
    for name, df in _tables().items():
        assert read.tables[name].equals(df)


def test_unknown_versions_and_sets_say_what_exists(tmp_path: Path) -> None:
    store = FeatureStore(tmp_path)
    written = store.write("movierec", _tables(), source_manifest=MANIFEST)
    with pytest.raises(FeatureVersionNotFoundError, match=f"known versions: {written.version}"):
        store.read("movierec", "0123456789abcdef")
    with pytest.raises(FeatureVersionNotFoundError, match="has no versions"):
        store.read("other")
    with pytest.raises(ValueError, match="name must be"):
        store.write("../escape", _tables(), source_manifest=MANIFEST)
