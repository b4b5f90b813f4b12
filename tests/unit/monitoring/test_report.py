from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

from recommender.monitoring.report import (
    DRIFT_EVENT,
    FEEDBACK_EVENT,
    last_emitted,
    remember_emitted,
)


def test_only_emitted_events_are_remembered(tmp_path: Path) -> None:
    state = tmp_path / "monitoring" / "events.json"
    assert last_emitted(state) == {}
    first = datetime(2026, 12, 1, tzinfo=UTC)
    remember_emitted(state, [{"event": DRIFT_EVENT, "emitted": True}], first)
    later = datetime(2026, 12, 2, tzinfo=UTC)
    remember_emitted(
        state,
        [{"event": DRIFT_EVENT, "emitted": False}, {"event": FEEDBACK_EVENT, "emitted": True}],
        later,
    )
    assert last_emitted(state) == {
        DRIFT_EVENT: first.isoformat(),
        FEEDBACK_EVENT: later.isoformat(),
    }
