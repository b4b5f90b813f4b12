"""Load a MovieLens release into the canonical ratings / movies / links frames.

Two layouts are understood:

* ``ml-latest`` (ml-latest, ml-latest-small, ml-20m, ml-25m, ml-32m): ``ratings.csv``,
  ``movies.csv`` and ``links.csv`` with headers.
* ``ml-100k``: ``u.data`` (tab-separated ``user item rating timestamp``), ``u.item``
  (pipe-separated, latin-1, 19 genre flags) and optionally ``u.genre`` for the genre names.
  ml-100k has no TMDB/IMDb ids, so its ``links`` is an empty frame with the links columns;
  the ``unknown`` genre flag is treated as "no genres listed" (empty list).

A source is a directory, a ``.zip`` (files at the root or in one top-level folder, as in the
GroupLens zips) or an http(s) URL of such a zip, downloaded once into a cache directory.

Parsing is lenient row-wise and strict file-wise: a file with the wrong columns, a directory
with neither layout or a corrupt zip fails here with :class:`MovieLensFormatError`; a value that
does not parse (``"abc"`` as a movie id, a short row) becomes null, and a row with extra fields
keeps its leading fields, so that validation (:mod:`recommender.data.schemas`) quarantines the
row with a reason (``movie_id: not_nullable``) instead of the whole file failing.
"""

from __future__ import annotations

import hashlib
import os
import re
import tempfile
import zipfile
import zlib
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Literal
from urllib.parse import urlparse

import polars as pl
import requests

from recommender.data import contracts

Layout = Literal["ml-latest", "ml-100k"]

LINKS_SCHEMA = contracts.LINKS

ML100K_GENRES = (
    "unknown", "Action", "Adventure", "Animation", "Children's", "Comedy", "Crime",
    "Documentary", "Drama", "Fantasy", "Film-Noir", "Horror", "Musical", "Mystery", "Romance",
    "Sci-Fi", "Thriller", "War", "Western",
)  # fmt: skip

# The first file of each layout marks the dataset folder inside a zip.
_LAYOUT_FILES: dict[Layout, tuple[str, ...]] = {
    "ml-latest": ("ratings.csv", "movies.csv", "links.csv"),
    "ml-100k": ("u.data", "u.item"),
}
_OPTIONAL_FILES: dict[Layout, tuple[str, ...]] = {"ml-100k": ("u.genre",)}
_RATINGS_CSV = {
    "userId": pl.Int64,
    "movieId": pl.Int64,
    "rating": pl.Float64,
    "timestamp": pl.Int64,
}
_RENAME = {"userId": "user_id", "movieId": "movie_id", "imdbId": "imdb_id", "tmdbId": "tmdb_id"}
# "Title (1995)"; a few series carry a range "(1975-1979)" and some titles have no year.
_TITLE_YEAR = r"^(?<title>.*?)\s*\((?<year>\d{4})(?:[-–]\d{4})?\)\s*$"
_CHUNK = 1 << 20


class MovieLensFormatError(ValueError):
    """The source exists but is not a MovieLens dataset in a supported layout."""


class MovieLensSourceError(ValueError):
    """The source cannot be reached: a missing path, an HTTP error, a failed download."""


@dataclass(frozen=True)
class SourceInfo:
    """Where a dataset came from, for lineage.

    Attributes:
        uri: The source as given (path or URL).
        path: The local directory or zip that was read (the cached download for a URL).
        layout: ``"ml-latest"`` or ``"ml-100k"``.
        sha256: Hex digest of the zip (downloaded or local) or, for a directory, of the files
            read (each file's name and content, in name order).
        files: The files read, in name order.
    """

    uri: str
    path: Path
    layout: Layout
    sha256: str
    files: tuple[str, ...]


@dataclass(frozen=True)
class MovieLensData:
    """The canonical frames of one MovieLens release.

    Attributes:
        ratings: ``user_id`` Int64, ``movie_id`` Int64, ``rating`` Float64, ``timestamp``
            Int64 (unix seconds).
        movies: ``movie_id`` Int64, ``title`` String (without the trailing year), ``year``
            Int32 (nullable), ``genres`` List(String).
        links: ``movie_id`` Int64, ``imdb_id`` String (leading zeros kept), ``tmdb_id`` Int64;
            both ids nullable. Empty (same columns) for ml-100k.
        source: Where the data came from.
    """

    ratings: pl.DataFrame
    movies: pl.DataFrame
    links: pl.DataFrame
    source: SourceInfo


# A file's content for polars: a path on disk, or the bytes of a zip member.
_Reader = Callable[[str], Path | bytes]


def load_movielens(source: str | Path, *, cache_dir: Path | None = None) -> MovieLensData:
    """Load a MovieLens release from a directory, a ``.zip`` or an http(s) URL of a zip.

    Args:
        source: The directory, zip file or URL.
        cache_dir: Where URL downloads are kept (one file per URL, reused when present).
            Required for a URL (``Settings.movielens_cache_dir``).

    Returns:
        The ratings, movies and links frames and the :class:`SourceInfo`.

    Raises:
        MovieLensSourceError: The path does not exist, or the download failed.
        MovieLensFormatError: The source is not a MovieLens dataset (no known layout, a file
            with the wrong columns, an unreadable file, a corrupt zip).
    """
    uri = str(source)
    if urlparse(uri).scheme in ("http", "https"):
        if cache_dir is None:
            raise ValueError(f"cache_dir is required to download {uri}")
        return _load_zip(_download(uri, cache_dir=cache_dir), uri=uri)
    path = Path(source)
    if path.is_file():
        return _load_zip(path, uri=uri)
    if not path.is_dir():
        raise MovieLensSourceError(f"MovieLens source {uri!r}: no such file or directory")
    layout, files = _detect_layout(
        frozenset(p.name for p in path.iterdir() if p.is_file()), where=uri
    )
    digest = hashlib.sha256()
    for name in files:
        digest.update(name.encode() + b"\0")
        _update_from_file(digest, path / name)
    frames = _read_layout(layout, files, lambda name: path / name, where=uri)
    return MovieLensData(*frames, SourceInfo(uri, path, layout, digest.hexdigest(), files))


def _load_zip(path: Path, *, uri: str) -> MovieLensData:
    digest = hashlib.sha256()
    _update_from_file(digest, path)
    try:
        with zipfile.ZipFile(path) as archive:
            members = archive.namelist()
            prefix = _zip_root(members)
            layout, files = _detect_layout(
                frozenset(
                    member.removeprefix(prefix)
                    for member in members
                    if member.startswith(prefix) and "/" not in member.removeprefix(prefix)
                ),
                where=uri,
            )
            frames = _read_layout(
                layout, files, lambda name: archive.read(prefix + name), where=uri
            )
    except (zipfile.BadZipFile, zlib.error, EOFError) as exc:
        raise MovieLensFormatError(f"{uri}: not a valid zip archive ({exc})") from exc
    return MovieLensData(*frames, SourceInfo(uri, path, layout, digest.hexdigest(), files))


def _zip_root(members: Iterable[str]) -> str:
    """The folder ('' or 'name/') holding a layout's first file, at most one level deep."""
    markers = {files[0] for files in _LAYOUT_FILES.values()}
    roots = sorted(
        folder + "/" if folder else ""
        for folder, _, name in (member.rpartition("/") for member in members)
        if name in markers and "/" not in folder
    )
    return roots[0] if roots else ""


def _detect_layout(names: frozenset[str], *, where: str) -> tuple[Layout, tuple[str, ...]]:
    """The layout whose files are all present, and the files to read (in name order)."""
    for layout, required in _LAYOUT_FILES.items():
        if names.issuperset(required):
            optional = [name for name in _OPTIONAL_FILES.get(layout, ()) if name in names]
            return layout, tuple(sorted((*required, *optional)))
    expected = " or ".join(
        f"{', '.join(files)} ({layout})" for layout, files in _LAYOUT_FILES.items()
    )
    raise MovieLensFormatError(
        f"{where}: not a MovieLens dataset: expected {expected}; "
        f"found {', '.join(sorted(names)) or 'no files'}"
    )


def _read_layout(
    layout: Layout, files: tuple[str, ...], read: _Reader, *, where: str
) -> tuple[pl.DataFrame, pl.DataFrame, pl.DataFrame]:
    if layout == "ml-latest":
        return _read_ml_latest(read, where=where)
    genres = _ml100k_genres(read("u.genre"), where=where) if "u.genre" in files else ML100K_GENRES
    return *_read_ml100k(read, genres=genres, where=where), LINKS_SCHEMA.to_frame()


def _read_table(
    read: _Reader,
    name: str,
    columns: dict[str, pl.DataType | type[pl.DataType]],
    *,
    where: str,
    separator: str = ",",
    has_header: bool = True,
    quote_char: str | None = '"',
    transform: Callable[[bytes], bytes] | None = None,
) -> pl.DataFrame:
    """Read one delimited file with explicit dtypes; values that do not parse become null.

    With a header, the header must contain ``columns`` (others are ignored); without one, the
    first line must have exactly ``len(columns)`` fields, named ``columns`` in order.
    """
    content = read(name)
    if transform is not None:
        content = transform(content if isinstance(content, bytes) else content.read_bytes())
    options = {
        "separator": separator,
        "quote_char": quote_char,
        "has_header": has_header,
        "truncate_ragged_lines": True,
    }
    try:
        head = pl.read_csv(content, n_rows=1, infer_schema=False, **options).columns
        if has_header:
            missing = [column for column in columns if column not in head]
            if missing:
                raise MovieLensFormatError(
                    f"{where}: {name} lacks the column(s) {', '.join(missing)}; "
                    f"expected {', '.join(columns)}, found {', '.join(head)}"
                )
            return pl.read_csv(
                content,
                columns=list(columns),
                schema_overrides=columns,
                ignore_errors=True,
                **options,
            )
        if len(head) != len(columns):
            raise MovieLensFormatError(
                f"{where}: {name} has {len(head)} field(s) separated by {separator!r}, "
                f"expected {len(columns)} ({', '.join(columns)})"
            )
        return pl.read_csv(
            content,
            schema=columns,
            ignore_errors=True,
            **options,
        )
    except pl.exceptions.NoDataError as exc:
        raise MovieLensFormatError(f"{where}: {name} is empty") from exc
    except pl.exceptions.ComputeError as exc:
        raise MovieLensFormatError(f"{where}: {name} cannot be parsed: {exc}") from exc


def _split_title(title: pl.Expr) -> tuple[pl.Expr, pl.Expr]:
    """The title without the trailing "(1995)", and the year from it (null when absent)."""
    parts = title.str.extract_groups(_TITLE_YEAR)
    return (
        pl.coalesce(parts.struct.field("title"), title.str.strip_chars()).alias("title"),
        parts.struct.field("year").cast(pl.Int32).alias("year"),
    )


def _read_ml_latest(
    read: _Reader, *, where: str
) -> tuple[pl.DataFrame, pl.DataFrame, pl.DataFrame]:
    ratings = _read_table(read, "ratings.csv", _RATINGS_CSV, where=where).rename(
        _RENAME, strict=False
    )
    movies = _read_table(
        read,
        "movies.csv",
        {"movieId": pl.Int64, "title": pl.String, "genres": pl.String},
        where=where,
    ).select(
        pl.col("movieId").alias("movie_id"),
        *_split_title(pl.col("title")),
        pl.col("genres")
        .str.split("|")
        .list.eval(pl.element().filter(pl.element() != "(no genres listed)"))
        .fill_null(pl.lit([], dtype=pl.List(pl.String))),
    )
    links = _read_table(
        read,
        "links.csv",
        {"movieId": pl.Int64, "imdbId": pl.String, "tmdbId": pl.Int64},
        where=where,
    ).rename(_RENAME, strict=False)
    return ratings, movies, links


def _read_ml100k(
    read: _Reader, *, genres: tuple[str, ...], where: str
) -> tuple[pl.DataFrame, pl.DataFrame]:
    ratings = _read_table(
        read,
        "u.data",
        {_RENAME.get(name, name): dtype for name, dtype in _RATINGS_CSV.items()},
        where=where,
        separator="\t",
        has_header=False,
    )
    flags = [f"genre_{i}" for i in range(len(genres))]
    title, title_year = _split_title(pl.col("title"))
    movies = _read_table(
        read,
        "u.item",
        {
            "movie_id": pl.Int64,
            "title": pl.String,
            "release_date": pl.String,
            "video_release_date": pl.String,
            "imdb_url": pl.String,
            **dict.fromkeys(flags, pl.Int8),
        },
        where=where,
        separator="|",
        has_header=False,
        quote_char=None,
        transform=lambda raw: raw.decode("latin-1").encode(),
    ).select(
        "movie_id",
        title,
        # u.item titles carry the year like ml-latest; the release date ("01-Jan-1995") is
        # the fallback.
        pl.coalesce(
            title_year, pl.col("release_date").str.extract(r"(\d{4})\s*$").cast(pl.Int32)
        ).alias("year"),
        pl.concat_list(
            pl.when(pl.col(flag) == 1).then(pl.lit(genre))
            for flag, genre in zip(flags, genres, strict=True)
            if genre != "unknown"
        )
        .list.drop_nulls()
        .alias("genres"),
    )
    return ratings, movies


def _ml100k_genres(content: Path | bytes, *, where: str) -> tuple[str, ...]:
    """Genre names in flag order from u.genre (``name|index`` lines)."""
    text = (content if isinstance(content, bytes) else content.read_bytes()).decode("latin-1")
    try:
        pairs = sorted(
            (int(index), name)
            for name, _, index in (line.rpartition("|") for line in text.splitlines())
            if name
        )
    except ValueError as exc:
        raise MovieLensFormatError(f"{where}: u.genre is not 'name|index' lines: {exc}") from exc
    if [index for index, _ in pairs] != list(range(len(pairs))):
        raise MovieLensFormatError(f"{where}: u.genre indexes are not 0..{len(pairs) - 1}")
    return tuple(name for _, name in pairs)


def _update_from_file(digest: hashlib._Hash, path: Path) -> None:
    with path.open("rb") as handle:
        while chunk := handle.read(_CHUNK):
            digest.update(chunk)


def _download(url: str, *, cache_dir: Path) -> Path:
    """Download ``url`` into ``cache_dir`` once; return the cached file.

    The body is streamed to a temporary file in ``cache_dir`` and renamed into place only when
    complete and a valid zip, so an interrupted or bogus download is never taken for the dataset.
    """
    basename = re.sub(r"[^A-Za-z0-9._-]", "_", Path(urlparse(url).path).name) or "download"
    target = cache_dir / f"{hashlib.sha256(url.encode()).hexdigest()[:16]}-{basename}"
    if target.is_file():
        return target
    cache_dir.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(dir=cache_dir, prefix=f".{target.name}.", suffix=".part")
    tmp = Path(tmp_name)
    try:
        with os.fdopen(fd, "wb") as out, requests.get(url, stream=True, timeout=60) as response:
            response.raise_for_status()
            for chunk in response.iter_content(_CHUNK):
                out.write(chunk)
        if not zipfile.is_zipfile(tmp):
            raise MovieLensFormatError(f"{url}: the download is not a zip archive")
        os.replace(tmp, target)
    except requests.RequestException as exc:
        raise MovieLensSourceError(f"{url}: download failed: {exc}") from exc
    finally:
        tmp.unlink(missing_ok=True)
    return target
