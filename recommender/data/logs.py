"""One durable append-only JSON-lines log, for every log the project keeps: the TMDB crawl
store, the feedback events and the impressions.

The rules, the same for every log:

* **Lock**: writers and readers take ``fcntl.flock`` on a stable lock file beside the log
  (``<name>.lock``), never on the log itself, which rotation renames: a lock on a renamed file
  would let the next writer lock the new one and write alongside.
* **Append**: under the exclusive lock, write the whole batch of lines with one ``os.write`` on
  an ``O_APPEND`` descriptor, ``fsync``, unlock. Lines from concurrent writers (threads or
  processes) never interleave, and :meth:`AppendLog.append` returns only once its lines are on
  disk: acknowledge nothing before it returns.
* **Torn tail**: bytes after the last newline can only come from a writer that died mid-write
  (every writer holds the lock until its lines end with a newline), and such a write was never
  acknowledged. The next append cuts them off under the lock (logging how many bytes) before
  writing, so the file holds whole lines only.
* **Rotation** (``max_bytes``): under the same lock, before a write that would take the active
  file past ``max_bytes``, the file is renamed to the next numbered segment
  (``events.jsonl`` -> ``events.000001.jsonl``, ``events.000002.jsonl``, ...) and the write
  goes to a new active file. A rename is atomic, so a writer killed at any point leaves every
  acknowledged line in exactly one file: nothing is copied, nothing is lost. A batch larger
  than ``max_bytes`` still goes whole into one file.
* **Read**: :func:`read_log` reads the segments in order, then the active file, as one stream
  (line numbers run across the files), from a snapshot taken under a shared lock: the files
  are opened and the active file's size taken while no writer can rotate, then read unlocked
  up to that size. It never fails on content. An unterminated last line is not a record (a
  writer may be writing it right now) and is reported as ``torn_tail``; a line that does not
  parse is returned in ``rejected`` with its 1-based number and the reason, for a quarantine
  table; blank lines are skipped.
"""

from __future__ import annotations

import fcntl
import json
import logging
import os
import re
from collections.abc import Callable, Iterable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Generic, TypeVar

import polars as pl

from recommender.data.contracts import REJECTED_LINES

logger = logging.getLogger("recommender.data.logs")

_T = TypeVar("_T")
_CHUNK = 1 << 16


def json_line(record: Mapping[str, Any]) -> str:
    """``record`` as one JSON line (UTF-8 kept as is)."""
    return json.dumps(record, ensure_ascii=False)


class AppendLog:
    """An append-only JSON-lines file with the module's rules.

    Args:
        path: The active file; it, its lock file and its parent directories are created by the
            first append.
        max_bytes: Rotate the active file to a numbered segment before a write would take it
            past this size (``None``: never rotate).
    """

    def __init__(self, path: Path, *, max_bytes: int | None = None) -> None:
        if max_bytes is not None and max_bytes < 1:
            raise ValueError(f"max_bytes must be at least 1 (or None), got {max_bytes}")
        self.path = Path(path)
        self.max_bytes = max_bytes

    def append(self, lines: Iterable[str]) -> int:
        """Append ``lines`` (each one JSON document, no newline) as one locked, fsynced write.

        Returns:
            The number of lines written (0 writes nothing).
        """
        text = [line + "\n" for line in lines]
        if not text:
            return 0
        payload = memoryview("".join(text).encode())
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with _locked(self.path, fcntl.LOCK_EX):
            fd = os.open(self.path, os.O_RDWR | os.O_APPEND | os.O_CREAT, 0o644)
            try:
                size = os.fstat(fd).st_size
                keep = _end_of_last_line(fd, size)
                if keep < size:
                    logger.warning(
                        "%s: dropping a torn last line (%d bytes)", self.path, size - keep
                    )
                    os.ftruncate(fd, keep)
                if self.max_bytes is not None and 0 < keep and keep + len(payload) > self.max_bytes:
                    os.fsync(fd)  # the segment is final: its truncation must be on disk too
                    active = self._rotate()
                    os.close(fd)
                    fd = active
                while payload:  # one write in practice; the loop only guards against a short write
                    payload = payload[os.write(fd, payload) :]
                os.fsync(fd)
            finally:
                os.close(fd)
        return len(text)

    def append_records(self, records: Iterable[Mapping[str, Any]]) -> int:
        """Append JSON objects (see :meth:`append`)."""
        return self.append(json_line(record) for record in records)

    def _rotate(self) -> int:
        """Rename the active file to the next segment and open a new one (under the lock)."""
        numbers = [number for number, _ in _segments(self.path)]
        segment = _segment_path(self.path, max(numbers, default=0) + 1)
        os.rename(self.path, segment)
        fd = os.open(self.path, os.O_RDWR | os.O_APPEND | os.O_CREAT, 0o644)
        _fsync_directory(self.path.parent)  # both names durable before anything is acknowledged
        logger.info("%s: rotated to %s", self.path, segment.name)
        return fd


def log_files(path: Path) -> list[Path]:
    """The files of the log at ``path`` in order: its segments, oldest first, then ``path``
    (listed whether or not it exists)."""
    return [segment for _, segment in _segments(path)] + [path]


def _segment_path(path: Path, number: int) -> Path:
    return path.with_name(f"{path.stem}.{number:06d}{path.suffix}")


def _segments(path: Path) -> list[tuple[int, Path]]:
    pattern = re.compile(rf"{re.escape(path.stem)}\.(\d{{6,}}){re.escape(path.suffix)}")
    if not path.parent.is_dir():
        return []
    found = (
        (match, entry)
        for entry in path.parent.iterdir()
        if (match := pattern.fullmatch(entry.name)) is not None
    )
    return sorted((int(match.group(1)), entry) for match, entry in found)


@contextmanager
def _locked(path: Path, mode: int) -> Iterator[None]:
    """Hold ``flock`` of ``mode`` on the stable lock file of the log at ``path``."""
    fd = os.open(path.with_name(path.name + ".lock"), os.O_RDWR | os.O_CREAT, 0o644)
    try:
        fcntl.flock(fd, mode)
        yield
    finally:
        os.close(fd)  # also releases the lock


def _fsync_directory(directory: Path) -> None:
    fd = os.open(directory, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


@dataclass(frozen=True)
class LogContents(Generic[_T]):
    """What :func:`read_log` found.

    Attributes:
        records: The parsed lines, in log order.
        rejected: Lines that did not parse: ``line`` (1-based), ``text`` and ``reason``.
        torn_tail: The unterminated last line, or None.
    """

    records: list[_T]
    rejected: pl.DataFrame
    torn_tail: str | None


def read_log(path: Path, parse: Callable[[bytes], _T]) -> LogContents[_T]:
    """Read the log at ``path``, its segments first (a missing file is an empty log), parsing
    each line with ``parse``, which raises ``ValueError`` (pydantic's ``ValidationError`` is
    one) with the reason for a line it refuses."""
    records: list[_T] = []
    rejected: list[tuple[int, str, str]] = []
    lines: list[bytes] = []
    torn = b""
    for data in _snapshot(path):
        if torn:
            # Not the last file: a segment, cut to whole lines before its rename unless the
            # machine crashed first; its unterminated tail is then parsed like any line.
            lines.append(torn)
        lines.extend(data.split(b"\n"))
        torn = lines.pop()  # b"" when the file ends with a newline
    for number, raw in enumerate(lines, start=1):
        if not raw.strip():
            continue
        try:
            records.append(parse(raw))
        except ValueError as exc:
            rejected.append((number, raw.decode(errors="replace"), _reason(exc)))
    return LogContents(
        records=records,
        rejected=pl.DataFrame(rejected, schema=REJECTED_LINES, orient="row"),
        torn_tail=torn.decode(errors="replace") if torn else None,
    )


def _snapshot(path: Path) -> list[bytes]:
    """The contents of the log's files. Under the shared lock (no rotation or write half
    done) the segments are listed and the active file is opened and measured; then, unlocked,
    the segments (which never change once renamed) are read, and the active file up to that
    size through the descriptor (which still reads it if a rotation renames it meanwhile)."""
    if not path.parent.is_dir():
        return []
    with _locked(path, fcntl.LOCK_SH):
        segments = [segment for _, segment in _segments(path)]
        try:
            active = path.open("rb")
        except FileNotFoundError:  # before the first append, or a writer died mid-rotation
            active = None
        size = os.fstat(active.fileno()).st_size if active is not None else 0
    contents = [segment.read_bytes() for segment in segments]
    if active is not None:
        with active:
            contents.append(active.read(size))
    return contents


def parse_json_object(raw: bytes) -> dict[str, Any]:
    """A line as a JSON object; ``ValueError`` when it is not one."""
    record = json.loads(raw)  # JSONDecodeError is a ValueError
    if not isinstance(record, dict):
        raise ValueError(f"not a JSON object but {type(record).__name__}")
    return record


def _reason(exc: ValueError) -> str:
    errors = getattr(exc, "errors", None)
    if callable(errors):  # pydantic: one "field: message" per error
        return "; ".join(
            f"{'.'.join(str(part) for part in error['loc']) or 'line'}: {error['msg']}"
            for error in errors()
        )
    return f"line: {exc}"


def _end_of_last_line(fd: int, size: int) -> int:
    """Offset just after the last newline of the file (0 when there is none)."""
    if size == 0 or os.pread(fd, 1, size - 1) == b"\n":
        return size  # the usual case: one byte read per append
    end = size
    while end > 0:
        start = max(0, end - _CHUNK)
        newline = os.pread(fd, end - start, start).rfind(b"\n")
        if newline >= 0:
            return start + newline + 1
        end = start
    return 0
