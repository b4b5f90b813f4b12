"""The durable append-only log: one write per batch, the torn-tail rule, the reader's report."""

from __future__ import annotations

import multiprocessing
from pathlib import Path

from recommender.data.logs import AppendLog, parse_json_object, read_log


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
