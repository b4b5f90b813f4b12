from __future__ import annotations

import fcntl
import os
import re
import threading
import time
from pathlib import Path

import pytest

from recommender.data.contracts import IMPRESSION_ID_PATTERN
from recommender.data.logs import AppendLog
from recommender.serving.impressions import (
    ImpressionWriter,
    impression_record,
    new_impression_id,
    read_impressions,
    user_key,
)


def test_ids_are_unique_and_sort_by_time() -> None:
    ids = [new_impression_id(now=1_700_000_000 + i / 1000) for i in range(1000)]
    assert len(set(ids)) == 1000
    assert ids == sorted(ids)
    assert new_impression_id(now=1.0) < new_impression_id(now=2.0)
    assert re.fullmatch(IMPRESSION_ID_PATTERN, new_impression_id())


def test_user_key() -> None:
    assert user_key(7, "abc") == "7"
    assert user_key(None, "abc") == "s:abc"
    assert user_key(None, None) == "anonymous"


def _record(n: int) -> dict[str, object]:
    return impression_record(
        impression_id=new_impression_id(),
        endpoint="recommend",
        user=str(n),
        model_version="3",
        movie_ids=[n, n + 1],
        fallback=False,
    )


def test_every_record_is_written_once_in_order_by_batches(tmp_path: Path) -> None:
    log = AppendLog(tmp_path / "impressions.jsonl")
    writer = ImpressionWriter(log, flush_seconds=0.05, max_batch=64)
    threads = [
        threading.Thread(
            target=lambda t=t: [writer.record(_record(t * 1000 + i)) for i in range(500)]
        )
        for t in range(4)
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    writer.close()
    table = read_impressions(log.path)
    assert table.height == 2000
    users = table.get_column("user_key").cast(int).to_list()
    for t in range(4):  # each thread's records in its order
        assert [u for u in users if u // 1000 == t] == list(range(t * 1000, t * 1000 + 500))
    assert table.get_column("movie_ids")[0].to_list() == [users[0], users[0] + 1]
    assert writer.dropped == 0


def test_a_record_reaches_the_disk_within_the_flush_interval(tmp_path: Path) -> None:
    log = AppendLog(tmp_path / "impressions.jsonl")
    writer = ImpressionWriter(log, flush_seconds=0.05, max_batch=1000)
    writer.record(_record(1))
    deadline = time.monotonic() + 5
    while read_impressions(log.path).height == 0:
        assert time.monotonic() < deadline, "the record was not written"
        time.sleep(0.01)
    writer.close()


def test_a_backlog_past_the_bound_is_dropped_and_counted(tmp_path: Path) -> None:
    log = AppendLog(tmp_path / "impressions.jsonl")
    writer = ImpressionWriter(log, flush_seconds=0.01, max_batch=5, max_pending=5)
    lock = os.open(tmp_path / "impressions.jsonl.lock", os.O_RDWR | os.O_CREAT)
    fcntl.flock(lock, fcntl.LOCK_EX)  # the disk is stuck: appends wait for this lock
    try:
        for n in range(20):
            writer.record(_record(n))
        assert writer.dropped >= 10  # at most one batch in flight and five waiting
    finally:
        os.close(lock)
    writer.close()
    assert read_impressions(log.path).height + writer.dropped == 20


def test_read_of_a_missing_log_is_empty(tmp_path: Path) -> None:
    assert read_impressions(tmp_path / "none.jsonl").height == 0


def test_bad_options_are_refused(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="flush_seconds"):
        ImpressionWriter(AppendLog(tmp_path / "x.jsonl"), flush_seconds=0)
