from __future__ import annotations

import multiprocessing
import multiprocessing.synchronize
import threading
from pathlib import Path

import polars as pl
import pytest
from polars.testing import assert_frame_equal
from pydantic import ValidationError

from recommender.data.feedback import (
    FEEDBACK_DTYPES,
    FeedbackEvent,
    append_event,
    append_events,
    events_to_interactions,
    read_events,
)
from recommender.data.schemas import FeedbackSchema, InteractionsSchema, validate_frame

EVENTS_PER_WRITER = 20


def _write_events(
    path: Path, user_id: int, start: threading.Event | multiprocessing.synchronize.Event
) -> None:
    """One writer: once ``start`` is set, half its events one by one, then a batch of the rest."""
    start.wait()
    half = EVENTS_PER_WRITER // 2
    for movie_id in range(1, half + 1):
        append_event(path, FeedbackEvent(user_id=user_id, movie_id=movie_id, event="view"))
    append_events(
        path,
        [
            FeedbackEvent(user_id=user_id, movie_id=movie_id, event="rating", value=4.0)
            for movie_id in range(half + 1, EVENTS_PER_WRITER + 1)
        ],
    )


def _assert_every_event_once(path: Path, writers: int) -> None:
    log = read_events(path)
    assert (log.rejected.height, log.torn_tail) == (0, None)
    pairs = log.events.select("user_id", "movie_id").sort("user_id", "movie_id").rows()
    expected = [(u, m) for u in range(1, writers + 1) for m in range(1, EVENTS_PER_WRITER + 1)]
    assert pairs == expected
    assert path.read_bytes().count(b"\n") == writers * EVENTS_PER_WRITER


def test_round_trip_creates_the_directories(tmp_path: Path) -> None:
    path = tmp_path / "raw" / "feedback" / "events.jsonl"
    events = [
        FeedbackEvent(user_id=1, movie_id=10, event="rating", value=4.5, timestamp=100.25),
        FeedbackEvent(
            user_id=2,
            movie_id=20,
            event="dislike",
            timestamp=101.0,
            impression_id="0190a1b2c3d4" + "0123456789abcdef",
        ),
    ]

    assert append_events(path, events) == 2
    assert append_events(path, []) == 0
    log = read_events(path)

    expected = pl.DataFrame(
        {
            "user_id": [1, 2],
            "movie_id": [10, 20],
            "event": ["rating", "dislike"],
            "value": [4.5, None],
            "timestamp": [100.25, 101.0],
            "impression_id": [None, "0190a1b2c3d40123456789abcdef"],
        },
        schema=FEEDBACK_DTYPES,
    )
    assert_frame_equal(log.events, expected)
    assert (log.rejected.height, log.torn_tail) == (0, None)
    validate_frame(log.events, FeedbackSchema, name="feedback", max_rejected_fraction=0)


def test_a_missing_log_is_empty(tmp_path: Path) -> None:
    log = read_events(tmp_path / "events.jsonl")
    assert log.events.schema == FEEDBACK_DTYPES
    assert (log.events.height, log.rejected.height, log.torn_tail) == (0, 0, None)


def test_32_writer_processes_lose_and_tear_nothing(tmp_path: Path) -> None:
    path = tmp_path / "events.jsonl"
    # fork, not spawn: a spawned child re-imports this module's heavy imports (pandera, pytest),
    # about 1.5 s each here. The children only use os and pydantic, never polars' thread pool.
    context = multiprocessing.get_context("fork")
    start = context.Event()
    writers = [context.Process(target=_write_events, args=(path, u, start)) for u in range(1, 33)]
    for writer in writers:
        writer.start()
    start.set()
    for writer in writers:
        writer.join(timeout=120)
    assert [writer.exitcode for writer in writers] == [0] * 32
    _assert_every_event_once(path, 32)


def test_concurrent_writer_threads_lose_and_tear_nothing(tmp_path: Path) -> None:
    path = tmp_path / "events.jsonl"
    start = threading.Event()
    threads = [threading.Thread(target=_write_events, args=(path, u, start)) for u in range(1, 17)]
    for thread in threads:
        thread.start()
    start.set()
    for thread in threads:
        thread.join()
    _assert_every_event_once(path, 16)


def test_torn_last_line_is_reported_then_cut_off_by_the_next_append(tmp_path: Path) -> None:
    path = tmp_path / "events.jsonl"
    append_event(path, FeedbackEvent(user_id=1, movie_id=1, event="like", timestamp=1.0))
    with path.open("ab") as handle:  # a writer crashed half-way through its line
        handle.write(b'{"user_id":2,"movie_id":2,"ev')

    log = read_events(path)
    assert log.events["user_id"].to_list() == [1]
    assert (log.rejected.height, log.torn_tail) == (0, '{"user_id":2,"movie_id":2,"ev')

    # The torn write was never acknowledged: the next writer cuts it off before its own line.
    append_event(path, FeedbackEvent(user_id=3, movie_id=3, event="view", timestamp=2.0))
    log = read_events(path)
    assert log.events["user_id"].to_list() == [1, 3]
    assert (log.rejected.height, log.torn_tail) == (0, None)
    assert path.read_bytes().count(b"\n") == 2


def test_malformed_lines_in_the_middle_are_returned_with_reasons(tmp_path: Path) -> None:
    path = tmp_path / "events.jsonl"
    path.write_text(
        '{"user_id":1,"movie_id":1,"event":"view","timestamp":1.0}\n'
        "not json\n"
        "\n"
        '{"user_id":1,"movie_id":1,"event":"rating","timestamp":1.0}\n'
        '{"user_id":-1,"movie_id":1,"event":"share","timestamp":1.0}\n'
        '{"user_id":2,"movie_id":5,"event":"rating","value":3.0,"timestamp":2.0}\n'
    )

    log = read_events(path)

    assert log.events.select("user_id", "movie_id").rows() == [(1, 1), (2, 5)]
    assert log.rejected["reason"][0].startswith("line: Invalid JSON")
    assert log.rejected.slice(1).rows() == [
        (
            4,
            '{"user_id":1,"movie_id":1,"event":"rating","timestamp":1.0}',
            "line: Value error, a 'rating' event needs a value between 0.5 and 5.0",
        ),
        (
            5,
            '{"user_id":-1,"movie_id":1,"event":"share","timestamp":1.0}',
            "user_id: Input should be greater than 0; "
            "event: Input should be 'view', 'click', 'like', 'dislike' or 'rating'",
        ),
    ]
    assert log.torn_tail is None


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        ({"user_id": 0, "movie_id": 1, "event": "view"}, "user_id\n  Input should be greater"),
        ({"user_id": True, "movie_id": 1, "event": "view"}, "user_id\n  Input should be a valid"),
        ({"user_id": 1, "movie_id": 1, "event": "share"}, "event\n  Input should be 'view'"),
        ({"user_id": 1, "movie_id": 1, "event": "rating"}, "needs a value between 0.5 and 5.0"),
        ({"user_id": 1, "movie_id": 1, "event": "rating", "value": 5.5}, "value\n  Input should"),
        (
            {"user_id": 1, "movie_id": 1, "event": "view", "timestamp": float("nan")},
            "timestamp\n  Input should be a finite number",
        ),
        ({"user_id": 1, "movie_id": 1, "event": "view", "score": 1}, "score\n  Extra inputs"),
    ],
)
def test_event_validation_errors_name_the_field(fields: dict[str, object], message: str) -> None:
    with pytest.raises(ValidationError) as caught:
        FeedbackEvent.model_validate(fields)
    assert message in str(caught.value)


def test_events_map_to_interactions() -> None:
    events = pl.DataFrame(
        {
            "user_id": [1, 1, 1, 1, 1],
            "movie_id": [1, 2, 3, 4, 5],
            "event": ["rating", "like", "click", "view", "dislike"],
            "value": [2.0, None, None, None, None],
            "timestamp": [10.9, 11.0, 12.5, 13.0, 14.0],
            "impression_id": [None] * 5,
        },
        schema=FEEDBACK_DTYPES,
    )

    interactions = events_to_interactions(events)

    expected = pl.DataFrame(
        {
            "user_id": [1, 1, 1, 1],
            "movie_id": [1, 2, 3, 4],
            "rating": [2.0, 5.0, 3.5, 3.0],
            "timestamp": [10, 11, 12, 13],
            "source": ["feedback"] * 4,
        }
    )
    assert_frame_equal(interactions, expected)
    validate_frame(interactions, InteractionsSchema, name="i", max_rejected_fraction=0)


def test_a_logged_time_past_what_the_pipeline_takes_is_rejected_not_read(tmp_path: Path) -> None:
    path = tmp_path / "events.jsonl"
    path.write_text(
        '{"user_id":1,"movie_id":1,"event":"like","timestamp":1e19}\n'
        '{"user_id":1,"movie_id":2,"event":"like","timestamp":1700000000.0}\n'
    )
    log = read_events(path)
    assert log.events["movie_id"].to_list() == [2]
    assert log.rejected["line"].to_list() == [1]
    assert log.rejected["reason"].item().startswith("timestamp: Input should be less than")


def test_identical_events_collapse_to_one_interaction_the_latest() -> None:
    flood = [FeedbackEvent(user_id=7, movie_id=1, event="view", timestamp=t) for t in range(15_000)]
    others = [
        FeedbackEvent(user_id=7, movie_id=1, event="like", timestamp=5.0),
        FeedbackEvent(user_id=7, movie_id=1, event="rating", value=2.0, timestamp=6.0),
        FeedbackEvent(user_id=7, movie_id=1, event="rating", value=4.0, timestamp=7.0),
        FeedbackEvent(user_id=8, movie_id=1, event="view", timestamp=8.0),
    ]
    events = pl.DataFrame(
        [event.model_dump() for event in [*flood, *others]], schema=FEEDBACK_DTYPES
    )

    interactions = events_to_interactions(events).sort("user_id", "rating")

    assert interactions.select("user_id", "movie_id", "rating", "timestamp").rows() == [
        (7, 1, 2.0, 6),
        (7, 1, 3.0, 14_999),  # 15,000 views: one interaction, the latest
        (7, 1, 4.0, 7),
        (7, 1, 5.0, 5),
        (8, 1, 3.0, 8),
    ]


def test_the_log_rotates_past_max_bytes_and_is_read_across_its_segments(tmp_path: Path) -> None:
    path = tmp_path / "events.jsonl"
    for movie_id in range(1, 31):
        append_event(path, FeedbackEvent(user_id=1, movie_id=movie_id, event="view"), max_bytes=512)

    segments = sorted(tmp_path.glob("events.*.jsonl"))
    assert len(segments) >= 5  # ~80-byte lines, six to a 512-byte file
    log = read_events(path)
    assert log.events["movie_id"].to_list() == list(range(1, 31))
    assert (log.rejected.height, log.torn_tail) == (0, None)
