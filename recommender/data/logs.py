"""One durable append-only JSON-lines log, for every log the project keeps: the TMDB crawl
store, the feedback events and the impressions.

The rules, the same for every log:

* **Append**: take an exclusive ``fcntl.flock`` on the file, write the whole batch of lines with
  one ``os.write`` on an ``O_APPEND`` descriptor, ``fsync``, unlock. Lines from concurrent writers
  (threads or processes) never interleave, and :meth:`AppendLog.append` returns only once its
  lines are on disk: acknowledge nothing before it returns.
* **Torn tail**: bytes after the last newline can only come from a writer that died mid-write
  (every writer holds the lock until its lines end with a newline), and such a write was never
  acknowledged. The next append cuts them off under the lock (logging how many bytes) before
  writing, so the file holds whole lines only.
* **Read**: :func:`read_log` never fails on content. An unterminated last line is not a record
  (a writer may be writing it right now) and is reported as ``torn_tail``; a line that does not
  parse is returned in ``rejected`` with its 1-based number and the reason, for a quarantine
  table; blank lines are skipped.
"""

from __future__ import annotations

import fcntl
import json
import logging
import os
from collections.abc import Callable, Iterable, Mapping
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
        path: The file; it and its parent directories are created by the first append.
    """

    def __init__(self, path: Path) -> None:
        self.path = Path(path)

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
        fd = os.open(self.path, os.O_RDWR | os.O_APPEND | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            size = os.fstat(fd).st_size
            keep = _end_of_last_line(fd, size)
            if keep < size:
                logger.warning("%s: dropping a torn last line (%d bytes)", self.path, size - keep)
                os.ftruncate(fd, keep)
            while payload:  # one write in practice; the loop only guards against a short write
                payload = payload[os.write(fd, payload) :]
            os.fsync(fd)
        finally:
            os.close(fd)  # also releases the lock
        return len(text)

    def append_records(self, records: Iterable[Mapping[str, Any]]) -> int:
        """Append JSON objects (see :meth:`append`)."""
        return self.append(json_line(record) for record in records)


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
    """Read the log at ``path`` (a missing file is an empty log), parsing each line with
    ``parse``, which raises ``ValueError`` (pydantic's ``ValidationError`` is one) with the
    reason for a line it refuses."""
    data = path.read_bytes() if path.exists() else b""
    lines = data.split(b"\n")
    torn = lines.pop()  # b"" when the file ends with a newline
    records: list[_T] = []
    rejected: list[tuple[int, str, str]] = []
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
