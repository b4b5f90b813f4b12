from __future__ import annotations

import pytest

from recommender.experiments.assignment import (
    BUCKETS,
    CHALLENGER,
    assign,
    bucket,
    experiment_id,
)

UNITS = [str(n) for n in range(100_000)]


def test_the_experiment_id_names_both_versions_and_the_salt() -> None:
    assert experiment_id("3", "4") == "v3-vs-v4"
    assert experiment_id("3", "4", salt="rerun") == "v3-vs-v4-rerun"
    with pytest.raises(ValueError, match="non-empty"):
        experiment_id("", "4")


def test_assignment_is_sticky() -> None:
    first = [assign("v1-vs-v2", unit, share=10) for unit in UNITS[:1000]]
    again = [assign("v1-vs-v2", unit, share=10) for unit in UNITS[:1000]]
    assert first == again
    assert bucket("v1-vs-v2", "s:abc") == bucket("v1-vs-v2", "s:abc")


@pytest.mark.parametrize("share", [1, 10, 50, 90])
def test_the_split_over_100k_units_is_within_tolerance(share: int) -> None:
    challengers = sum(assign("v1-vs-v2", unit, share=share) == CHALLENGER for unit in UNITS)
    expected = len(UNITS) * share / 100
    # 4 standard deviations of a binomial count: fails by chance about once in 16,000 runs
    assert abs(challengers - expected) < 4 * (expected * (1 - share / 100)) ** 0.5


def test_every_bucket_is_used_about_equally() -> None:
    counts = [0] * BUCKETS
    for unit in UNITS:
        counts[bucket("v1-vs-v2", unit)] += 1
    # chi-square over 100 buckets (99 degrees of freedom): its 0.9999 quantile is about 157
    expected = len(UNITS) / BUCKETS
    assert sum((c - expected) ** 2 / expected for c in counts) < 157


def test_a_new_experiment_reshuffles_users() -> None:
    old = {unit for unit in UNITS if assign("v1-vs-v2", unit, share=10) == CHALLENGER}
    new = {unit for unit in UNITS if assign("v1-vs-v3", unit, share=10) == CHALLENGER}
    salted = {unit for unit in UNITS if assign("v1-vs-v2-b", unit, share=10) == CHALLENGER}
    # independent 10 % draws share about 10 % of each other's members, not all of them
    for other in (new, salted):
        assert 0.07 < len(old & other) / len(old) < 0.13


def test_share_bounds() -> None:
    assert assign("e", "1", share=0) != CHALLENGER
    assert assign("e", "1", share=100) == CHALLENGER
    with pytest.raises(ValueError, match="share"):
        assign("e", "1", share=101)
