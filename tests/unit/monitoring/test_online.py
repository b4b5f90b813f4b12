from __future__ import annotations

import polars as pl
import pytest
from scipy.stats import binomtest

from recommender.monitoring.online import attribute, online_quality, wilson_interval


def test_wilson_interval_known_value() -> None:
    # 5 of 10: p = 0.5, z^2/n = 0.38415: (0.5 + 0.19207 -+ 0.35000) / 1.38415
    assert wilson_interval(5, 10) == pytest.approx((0.236593, 0.763407), abs=1e-6)


@pytest.mark.parametrize(("successes", "trials"), [(0, 10), (10, 10), (1, 1000), (37, 120)])
def test_wilson_interval_matches_scipy(successes: int, trials: int) -> None:
    reference = binomtest(successes, trials).proportion_ci(method="wilson")
    assert wilson_interval(successes, trials) == pytest.approx(
        (reference.low, reference.high), abs=1e-9
    )


def test_wilson_interval_bounds() -> None:
    assert wilson_interval(0, 0) == (0.0, 1.0)
    with pytest.raises(ValueError, match="successes <= trials"):
        wilson_interval(3, 2)


IMPRESSIONS = pl.DataFrame(
    {
        "impression_id": ["i1", "i2", "i3"],
        "timestamp": [3_600.0 * 10 + 5, 3_600.0 * 11 + 5, 3_600.0 * 10 + 9],
        "endpoint": ["recommend", "recommend", "recommend"],
        "user_key": ["1", "2", "1"],
        "model_version": ["1", "1", "2"],
        "fallback": [False, True, False],
        "movie_ids": [[10, 20, 30], [10, 40], [50]],
    }
)
FEEDBACK = pl.DataFrame(
    {
        "impression_id": ["i1", "i1", "i1", "i2", None, "i3"],
        "movie_id": [20, 20, 30, 99, 10, 50],
        "event": ["click", "like", "click", "click", "like", "dislike"],
    }
)


def test_attribution_finds_the_rank_or_nothing() -> None:
    ranks = attribute(IMPRESSIONS, FEEDBACK).get_column("rank").to_list()
    assert ranks == [2, 2, 3, None, None, 1]


def test_online_quality_by_hand() -> None:
    quality = online_quality(IMPRESSIONS, FEEDBACK)
    first, second = quality["groups"]
    assert first["model_version"] == "1" and first["impressions"] == 2 and first["users"] == 2
    assert (first["click_rate"], first["like_rate"]) == (0.5, 0.5)
    assert first["click_rate_ci"] == pytest.approx(wilson_interval(1, 2))
    assert first["positive_rate_per_user"] == 0.5  # user 1: 1 of 1, user 2: 0 of 1
    assert first["click_ranks"] == {"2": 1, "3": 1}
    assert first["fallback_share"] == 0.5
    assert second["model_version"] == "2"
    assert (second["click_rate"], second["like_rate"], second["click_ranks"]) == (0.0, 0.0, {})
    assert quality["feedback_events"] == 6
    assert quality["attributed_events"] == 4
    assert quality["without_impression"] == 1
    assert quality["unknown_impression_or_movie"] == 1


def test_rates_over_time_per_version_and_hour() -> None:
    over_time = online_quality(IMPRESSIONS, FEEDBACK)["over_time"]
    # v1: i1 (10:00, clicked and liked), i2 (11:00, nothing attributed); v2: i3 (10:00).
    assert [(b["model_version"], b["start"], b["impressions"]) for b in over_time] == [
        ("1", "1970-01-01T10:00:00", 1),
        ("1", "1970-01-01T11:00:00", 1),
        ("2", "1970-01-01T10:00:00", 1),
    ]
    assert [(b["click_rate"], b["like_rate"]) for b in over_time] == [(1, 1), (0, 0), (0, 0)]
    assert over_time[0]["click_rate_ci"] == pytest.approx(wilson_interval(1, 1))
