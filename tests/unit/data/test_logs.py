"""The durable append-only log: one write per batch, the torn-tail rule, the reader's report."""

from __future__ import annotations

import multiprocessing
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from recommender.data.logs import AppendLog, log_files, parse_json_object, read_log


def test_append_writes_whole_lines_and_reads_them_back_in_order(tmp_path: Path) -> None:
    log = AppendLog(tmp_path / "sub" / "records.jsonl")
    assert log.append_records([]) == 0
    assert not log.path.exists()
    assert log.append_records([{"key": "1"}, {"key": "2", "text": "ünïcode"}]) == 2

    contents = read_log(log.path, parse_json_object)

    assert contents.records == [{"key": "1"}, {"key": "2", "text": "ünïcode"}]
    assert (contents.rejected.height, contents.torn_tail) == (0, None)
    assert log.path.read_bytes().endswith('ünïcode"}\n'.encode())


def test_a_torn_tail_is_reported_then_cut_off_by_the_next_append(tmp_path: Path) -> None:
    log = AppendLog(tmp_path / "records.jsonl")
    log.append_records([{"key": "1"}])
    with log.path.open("ab") as handle:
        handle.write(b'{"key": "2", "bo')  # a writer killed mid-write

    contents = read_log(log.path, parse_json_object)
    assert contents.records == [{"key": "1"}]
    assert contents.torn_tail == '{"key": "2", "bo'

    log.append_records([{"key": "3"}])
    assert log.path.read_bytes() == b'{"key": "1"}\n{"key": "3"}\n'
    contents = read_log(log.path, parse_json_object)
    assert [r["key"] for r in contents.records] == ["1", "3"]
    assert contents.torn_tail is None


def test_lines_that_do_not_parse_are_returned_with_number_and_reason(tmp_path: Path) -> None:
    path = tmp_path / "records.jsonl"
    path.write_bytes(b'{"key": "1"}\nnot json\n\n[1, 2]\n{"key": "5"}\n')

    contents = read_log(path, parse_json_object)

    assert [r["key"] for r in contents.records] == ["1", "5"]
    assert contents.rejected["line"].to_list() == [2, 4]
    assert contents.rejected["reason"][0].startswith("line: Expecting value")
    assert contents.rejected["reason"][1] == "line: not a JSON object but list"


def _append_many(path: Path, writer: int) -> None:
    log = AppendLog(path)
    for n in range(200):
        log.append_records([{"writer": writer, "n": n, "pad": "x" * 500}])


def test_concurrent_processes_interleave_no_lines(tmp_path: Path) -> None:
    path = tmp_path / "records.jsonl"
    context = multiprocessing.get_context("spawn")
    workers = [context.Process(target=_append_many, args=(path, w)) for w in range(4)]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join(timeout=60)
        assert worker.exitcode == 0

    contents = read_log(path, parse_json_object)

    assert contents.rejected.height == 0
    assert sorted((r["writer"], r["n"]) for r in contents.records) == [
        (w, n) for w in range(4) for n in range(200)
    ]


def _records(path: Path) -> list[dict[str, object]]:
    contents = read_log(path, parse_json_object)
    assert (contents.rejected.height, contents.torn_tail) == (0, None)
    return contents.records


def test_rotation_moves_full_files_to_numbered_segments_read_in_order(tmp_path: Path) -> None:
    log = AppendLog(tmp_path / "events.jsonl", max_bytes=100)
    for n in range(10):  # each line is 32 bytes: three to a file
        log.append_records([{"n": n, "pad": "x" * 12}])

    segments = sorted(p.name for p in tmp_path.glob("events.*.jsonl"))
    assert segments == ["events.000001.jsonl", "events.000002.jsonl", "events.000003.jsonl"]
    assert all(p.stat().st_size == 96 for p in tmp_path.glob("events.*.jsonl"))
    assert log.path.stat().st_size == 32
    assert [r["n"] for r in _records(log.path)] == list(range(10))
    assert log_files(log.path) == [*(tmp_path / name for name in segments), log.path]


def test_a_batch_larger_than_the_limit_stays_whole_and_line_numbers_run_across_files(
    tmp_path: Path,
) -> None:
    log = AppendLog(tmp_path / "events.jsonl", max_bytes=20)
    log.append(['{"n": 0}'])
    log.append(["not json", '{"n": 2}', '{"n": 3}'])  # 27 bytes: rotates, then goes whole

    assert (tmp_path / "events.000001.jsonl").read_bytes() == b'{"n": 0}\n'
    contents = read_log(log.path, parse_json_object)
    assert [r["n"] for r in contents.records] == [0, 2, 3]
    assert contents.rejected["line"].to_list() == [2]


def test_a_torn_tail_is_cut_off_before_the_file_becomes_a_segment(tmp_path: Path) -> None:
    log = AppendLog(tmp_path / "events.jsonl", max_bytes=30)
    log.append_records([{"n": 0}])
    with log.path.open("ab") as handle:
        handle.write(b'{"n": "torn')  # a writer killed mid-write, 20 bytes in the file now
    log.append_records([{"n": 1, "pad": "x" * 10}])  # 9 + 30 > 30: rotates

    assert (tmp_path / "events.000001.jsonl").read_bytes() == b'{"n": 0}\n'
    assert [r["n"] for r in _records(log.path)] == [0, 1]


def test_max_bytes_must_be_positive(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="max_bytes must be at least 1"):
        AppendLog(tmp_path / "events.jsonl", max_bytes=0)


WRITERS, RECORDS = 4, 150


def _append_rotating(path: Path, writer: int) -> None:
    log = AppendLog(path, max_bytes=8192)
    for n in range(RECORDS):
        log.append_records([{"writer": writer, "n": n, "pad": "x" * 200}])


def _assert_each_writer_in_order(records: list[dict[str, object]], complete: bool) -> None:
    for writer in range(WRITERS):
        seen = [r["n"] for r in records if r["writer"] == writer]
        assert seen == list(range(RECORDS if complete else len(seen)))


def test_processes_appending_past_many_rotations_keep_every_line_once_in_order(
    tmp_path: Path,
) -> None:
    path = tmp_path / "events.jsonl"
    context = multiprocessing.get_context("spawn")
    workers = [context.Process(target=_append_rotating, args=(path, w)) for w in range(WRITERS)]
    for worker in workers:
        worker.start()
    # Readers during the appends and rotations see, per writer, a prefix of its lines, each once.
    while any(worker.is_alive() for worker in workers):
        _assert_each_writer_in_order(_records(path), complete=False)
    for worker in workers:
        worker.join(timeout=60)
        assert worker.exitcode == 0

    _assert_each_writer_in_order(_records(path), complete=True)
    assert len(log_files(path)) > 10  # 600 lines of ~240 bytes in 8 KiB files: ~18 segments
    assert all(p.stat().st_size <= 8192 for p in log_files(path))


_KILLED_WRITER = """
import sys
from pathlib import Path
from recommender.data.logs import AppendLog

log, start = AppendLog(Path(sys.argv[1]), max_bytes=2048), int(sys.argv[2])
for n in range(start, start + 1_000_000):
    log.append_records([{"n": n, "pad": "x" * 100}])
    print(n, flush=True)  # acknowledged: append returned
"""


def test_a_writer_killed_while_rotating_loses_no_acknowledged_line_and_duplicates_none(
    tmp_path: Path,
) -> None:
    path = tmp_path / "events.jsonl"
    acknowledged: list[int] = []
    for round_ in range(1, 4):
        writer = subprocess.Popen(
            [sys.executable, "-c", _KILLED_WRITER, str(path), str(round_ * 100_000)],
            stdout=subprocess.PIPE,
            cwd=Path(__file__).parents[3],
        )
        deadline = time.monotonic() + 30
        while len(log_files(path)) < 1 + 3 * round_:  # poll for this round's third segment
            assert time.monotonic() < deadline, "the writer made no segments"
            time.sleep(0.001)
        writer.kill()  # SIGKILL: anywhere in an append, a rotation included
        output, _ = writer.communicate(timeout=30)
        lines = output.decode().split("\n")
        acknowledged += [int(n) for n in lines[:-1]]  # the last one may be cut short

        written = [r["n"] for r in read_log(path, parse_json_object).records]
        assert len(written) == len(set(written))
        assert set(acknowledged) <= set(written)
        assert written == sorted(written)

    AppendLog(path, max_bytes=2048).append_records([{"n": 0}])  # cuts any torn tail off
    assert _records(path)[-1] == {"n": 0}


_WRITER_KILLED_AT_RENAME = """
import os, signal, sys
from pathlib import Path
from recommender.data.logs import AppendLog

rename = os.rename
def rename_then_die(src, dst):
    if sys.argv[2] == "after":
        rename(src, dst)
    os.kill(os.getpid(), signal.SIGKILL)
os.rename = rename_then_die

log = AppendLog(Path(sys.argv[1]), max_bytes=2048)
for n in range(1_000):
    log.append_records([{"n": n, "pad": "x" * 100}])
    print(n, flush=True)
"""


@pytest.mark.parametrize("point", ["before", "after"])
def test_a_writer_killed_at_the_rename_of_a_rotation_loses_nothing(
    tmp_path: Path, point: str
) -> None:
    path = tmp_path / "events.jsonl"
    writer = subprocess.run(
        [sys.executable, "-c", _WRITER_KILLED_AT_RENAME, str(path), point],
        capture_output=True,
        cwd=Path(__file__).parents[3],
        timeout=60,
        check=False,
    )
    assert writer.returncode == -signal.SIGKILL
    acknowledged = [int(n) for n in writer.stdout.decode().split()]
    assert acknowledged == list(range(17))  # lines of ~120 bytes: the 18th passes 2,048
    assert path.exists() is (point == "before")  # killed between the rename and the new file

    assert [r["n"] for r in _records(path)] == acknowledged
    AppendLog(path, max_bytes=2048).append_records([{"n": 17}])
    assert [r["n"] for r in _records(path)] == [*acknowledged, 17]


_READER_WITH_FEW_DESCRIPTORS = """
import resource, sys
from pathlib import Path
from recommender.data.logs import parse_json_object, read_log

resource.setrlimit(resource.RLIMIT_NOFILE, (64, resource.getrlimit(resource.RLIMIT_NOFILE)[1]))
print(len(read_log(Path(sys.argv[1]), parse_json_object).records))
"""


def test_reading_many_segments_holds_few_descriptors(tmp_path: Path) -> None:
    log = AppendLog(tmp_path / "events.jsonl", max_bytes=16)
    for n in range(200):  # one line to a segment
        log.append_records([{"n": n}])
    assert len(log_files(log.path)) == 200

    reader = subprocess.run(
        [sys.executable, "-c", _READER_WITH_FEW_DESCRIPTORS, str(log.path)],
        capture_output=True,
        cwd=Path(__file__).parents[3],
        timeout=60,
        check=True,
    )
    assert reader.stdout.decode().split() == ["200"]
