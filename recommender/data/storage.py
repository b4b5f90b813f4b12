"""Writing tables and manifests so that every artifact records what it was made from.

Parquet files are written atomically (temporary file, fsync, rename): a reader never sees a
half-written table, and a crash leaves the previous version in place.

A set of tables that belong together (the processed ``movies``, ``interactions``, quarantine
tables and their manifest) is written as a *generation*: a fresh directory
(:func:`new_generation`), filled, fsynced, then published by pointing a symlink at it with one
atomic rename (:func:`publish_generation`). Readers open the tables through the symlink's path
and resolve it once (:func:`read_tables`), so they see one whole generation, the old or the new,
never a mix, whenever a writer crashes or another process publishes. The previous generation is
kept (a reader that resolved the link just before a swap can finish); older ones are removed.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import tempfile
from collections.abc import Mapping
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import polars as pl

MANIFEST_NAME = "manifest.json"


def frame_hash(df: pl.DataFrame) -> str:
    """Content hash (sha256 hex) of a frame: same columns, dtypes and rows in the same order
    give the same hash, whatever the frame's chunking or the bytes under its null slots.

    Digests the schema and polars' row hashes, which are stable within one polars version (the
    version is part of the digest, so an upgrade changes hashes instead of colliding).
    """
    digest = hashlib.sha256(f"polars {pl.__version__}\n{list(df.schema.items())}\n".encode())
    digest.update(df.hash_rows(seed=0).to_numpy().tobytes())
    return digest.hexdigest()


def combined_hash(hashes: Mapping[str, str]) -> str:
    """One sha256 over named hashes, independent of the mapping's order."""
    digest = hashlib.sha256()
    for name in sorted(hashes):
        digest.update(f"{name}={hashes[name]}\n".encode())
    return digest.hexdigest()


def _atomic_write(path: Path, write: Any) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    tmp = Path(tmp_name)
    try:
        with os.fdopen(fd, "wb") as handle:
            write(handle)
            handle.flush()
            os.fsync(handle.fileno())
        tmp.replace(path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def write_parquet(df: pl.DataFrame, path: Path) -> None:
    """Write ``df`` to ``path`` atomically."""
    _atomic_write(path, df.write_parquet)


def write_json(data: Mapping[str, Any], path: Path) -> None:
    """Write ``data`` as indented JSON to ``path`` atomically."""
    payload = (json.dumps(data, indent=2, sort_keys=True, default=str) + "\n").encode()
    _atomic_write(path, lambda handle: handle.write(payload))


def read_json(path: Path) -> dict[str, Any]:
    """Read a JSON object, with an error that names the file when it is missing or corrupt."""
    try:
        data = json.loads(path.read_text())
    except FileNotFoundError as exc:
        raise FileNotFoundError(f"{path} does not exist") from exc
    except json.JSONDecodeError as exc:
        raise ValueError(f"{path} is not valid JSON: {exc}") from exc
    if not isinstance(data, dict):
        raise ValueError(f"{path} must hold a JSON object, found {type(data).__name__}")
    return data


def utc_now() -> str:
    """The current time as an ISO-8601 UTC string (microsecond precision, so it orders writes)."""
    return datetime.now(UTC).isoformat()


def write_tables(
    tables: Mapping[str, pl.DataFrame],
    directory: Path,
    *,
    sources: list[dict[str, Any]],
    extra: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """Write each table as ``<directory>/<name>.parquet`` plus a ``manifest.json``.

    The manifest lists, per table, its file, row count, columns and content hash, and a
    ``content_hash`` over all tables, the ``sources`` the tables were made from and
    ``created_at``. The manifest is written last, so it only ever describes complete files.

    Returns:
        The manifest as written (JSON types only: paths become strings).
    """
    entries: dict[str, dict[str, Any]] = {}
    for name, df in tables.items():
        path = directory / f"{name}.parquet"
        write_parquet(df, path)
        entries[name] = {
            "file": path.name,
            "rows": df.height,
            "columns": {col: str(dtype) for col, dtype in df.schema.items()},
            "sha256": frame_hash(df),
        }
    manifest: dict[str, Any] = {
        "created_at": utc_now(),
        "content_hash": combined_hash({name: e["sha256"] for name, e in entries.items()}),
        "tables": entries,
        "sources": sources,
        **(extra or {}),
    }
    manifest = json.loads(json.dumps(manifest, default=str))  # paths etc. as written
    write_json(manifest, directory / MANIFEST_NAME)
    return manifest


def new_generation(generations_dir: Path) -> Path:
    """A new empty directory in ``generations_dir`` for the next generation of tables; names
    sort in creation order."""
    generations_dir.mkdir(parents=True, exist_ok=True)
    name = f"{datetime.now(UTC):%Y%m%dT%H%M%S%fZ}-{os.getpid()}"
    path = generations_dir / name
    path.mkdir()
    return path


def _fsync(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def publish_generation(generation: Path, link: Path) -> None:
    """Make ``link`` (a symlink) point at ``generation`` atomically, once its files are durable.

    Every file and directory of ``generation`` is fsynced first, then a new symlink replaces
    ``link`` in one rename and ``link``'s directory is fsynced. Afterwards the generations in
    ``generation``'s directory older than it are removed, except the one ``link`` pointed at
    before (readers may still be on it); runs that failed or crashed before publishing leave
    theirs, with their quarantine tables, until then. A ``link`` that is a plain directory
    (written before generations existed) becomes the previous generation.
    """
    generations_dir = generation.parent
    for path in [*generation.rglob("*"), generation]:
        _fsync(path)
    previous: Path | None = None
    if link.is_symlink():
        previous = link.resolve()
    elif link.is_dir():
        previous = generations_dir / "0-legacy"  # sorts before every generation
        link.rename(previous)
    tmp = link.with_name(f".{link.name}.{os.getpid()}.tmp")
    tmp.unlink(missing_ok=True)
    tmp.symlink_to(os.path.relpath(generation, link.parent))
    tmp.replace(link)
    _fsync(link.parent)
    for old in generations_dir.iterdir():
        # Newer ones belong to runs still writing; the data flow's runs do not overlap.
        if old.name < generation.name and old != previous:
            shutil.rmtree(old)


def read_tables(
    directory: Path, names: tuple[str, ...]
) -> tuple[dict[str, pl.DataFrame], dict[str, Any]]:
    """Read tables written by :func:`write_tables`, checking them against their manifest.

    ``directory`` may be a symlink to a generation (:func:`publish_generation`): it is resolved
    once, so the manifest and the tables come from the same generation.

    Raises:
        FileNotFoundError: The directory has no manifest (the step that writes it has not run).
        ValueError: A table is missing from the manifest or its content hash does not match.
    """
    directory = directory.resolve()
    manifest_path = directory / MANIFEST_NAME
    if not manifest_path.is_file():
        raise FileNotFoundError(
            f"{manifest_path} does not exist: run the data flow first (movierec data)"
        )
    manifest = read_json(manifest_path)
    tables = {}
    for name in names:
        entry = manifest.get("tables", {}).get(name)
        if entry is None:
            raise ValueError(f"{manifest_path} lists no table {name!r}")
        df = pl.read_parquet(directory / entry["file"])
        if frame_hash(df) != entry["sha256"]:
            raise ValueError(
                f"{directory / entry['file']} does not match its manifest {manifest_path} "
                "(changed after it was written); run the data flow again"
            )
        tables[name] = df
    return tables, manifest
