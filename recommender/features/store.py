"""A small offline feature store: versioned Parquet snapshots plus a registry.

Layout under the store root::

    <root>/<feature set>/<version>/<table>.parquet
    <root>/<feature set>/<version>/metadata.json

The version is the content hash of the tables, so the same inputs give the same version and
writing it again is a no-op. ``metadata.json`` is the registry entry: feature set name,
version, per-table schema, row count and summary statistics, the source data manifest,
``created_at`` and the code version. A version directory is assembled under a temporary name
and renamed into place, so a crash never leaves a half-written version behind.
"""

from __future__ import annotations

import importlib.metadata
import shutil
import subprocess
import tempfile
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import polars as pl

from recommender.data.storage import combined_hash, frame_hash, read_json, utc_now, write_json
from recommender.settings import PROJECT_ROOT

METADATA_NAME = "metadata.json"


class FeatureVersionNotFoundError(ValueError):
    """The requested feature set or version is not in the store."""


@dataclass(frozen=True)
class FeatureSet:
    """A feature set version read back from the store."""

    name: str
    version: str
    tables: dict[str, pl.DataFrame]
    metadata: dict[str, Any]


def code_version() -> str:
    """The git commit of the working tree when available, else the installed package version."""
    try:
        result = subprocess.run(
            ["git", "rev-parse", "--short=12", "HEAD"],
            cwd=PROJECT_ROOT,
            capture_output=True,
            text=True,
            check=True,
            timeout=5,
        )
    except (OSError, subprocess.SubprocessError):
        return f"movierec-{importlib.metadata.version('movierec')}"
    return result.stdout.strip()


def summary_statistics(df: pl.DataFrame) -> dict[str, dict[str, float | int | None]]:
    """Null count for every column and min/max/mean for the numeric ones."""
    stats: dict[str, dict[str, float | int | None]] = {}
    for name, dtype in df.schema.items():
        column = df.get_column(name)
        entry: dict[str, float | int | None] = {"null_count": column.null_count()}
        if dtype.is_numeric():
            entry.update(min=column.min(), max=column.max(), mean=column.mean())  # type: ignore[arg-type]
        stats[name] = entry
    return stats


class FeatureStore:
    """Versioned feature snapshots under ``root``."""

    def __init__(self, root: Path) -> None:
        self.root = Path(root)

    def write(
        self,
        name: str,
        tables: Mapping[str, pl.DataFrame],
        *,
        source_manifest: Mapping[str, Any],
    ) -> FeatureSet:
        """Store ``tables`` as a version of feature set ``name`` and return it.

        Args:
            name: Feature set name (a directory name: letters, digits, ``-`` and ``_``).
            tables: Table name to frame.
            source_manifest: The manifest of the processed data the features were built from.
        """
        if not name or not name.replace("-", "").replace("_", "").isalnum():
            raise ValueError(f"name must be letters, digits, '-' or '_', got {name!r}")
        if not tables:
            raise ValueError("tables must hold at least one table")
        hashes = {table: frame_hash(df) for table, df in tables.items()}
        version = combined_hash(hashes)[:16]
        target = self.directory(name, version)
        if (target / METADATA_NAME).is_file():
            return self.read(name, version)

        metadata = {
            "name": name,
            "version": version,
            "created_at": utc_now(),
            "code_version": code_version(),
            "source_manifest": dict(source_manifest),
            "tables": {
                table: {
                    "file": f"{table}.parquet",
                    "rows": df.height,
                    "schema": {col: str(dtype) for col, dtype in df.schema.items()},
                    "sha256": hashes[table],
                    "statistics": summary_statistics(df),
                }
                for table, df in tables.items()
            },
        }
        target.parent.mkdir(parents=True, exist_ok=True)
        staging = Path(tempfile.mkdtemp(dir=target.parent, prefix=f".{version}."))
        try:
            for table, df in tables.items():
                df.write_parquet(staging / f"{table}.parquet")
            write_json(metadata, staging / METADATA_NAME)
            staging.rename(target)
        except OSError:
            shutil.rmtree(staging, ignore_errors=True)
            if not (target / METADATA_NAME).is_file():  # not a concurrent writer's identical copy
                raise
        return FeatureSet(name=name, version=version, tables=dict(tables), metadata=metadata)

    def directory(self, name: str, version: str) -> Path:
        """Where version ``version`` of feature set ``name`` lives."""
        return self.root / name / version

    def registry(self, name: str) -> list[dict[str, Any]]:
        """Metadata of every stored version of ``name``, oldest first."""
        entries = [read_json(path) for path in (self.root / name).glob(f"*/{METADATA_NAME}")]
        return sorted(entries, key=lambda entry: (entry["created_at"], entry["version"]))

    def read(self, name: str, version: str | None = None) -> FeatureSet:
        """Read a version of ``name``; the latest one when ``version`` is None."""
        if version is None:
            entries = self.registry(name)
            if not entries:
                raise FeatureVersionNotFoundError(
                    f"feature set {name!r} has no versions in {self.root}; run the training "
                    "flow (movierec train) to build features first"
                )
            version = entries[-1]["version"]
        directory = self.directory(name, version)
        if not (directory / METADATA_NAME).is_file():
            known = ", ".join(entry["version"] for entry in self.registry(name)) or "none"
            raise FeatureVersionNotFoundError(
                f"feature set {name!r} has no version {version!r} in {self.root} "
                f"(known versions: {known})"
            )
        metadata = read_json(directory / METADATA_NAME)
        tables = {
            table: pl.read_parquet(directory / entry["file"])
            for table, entry in metadata["tables"].items()
        }
        return FeatureSet(name=name, version=version, tables=tables, metadata=metadata)
