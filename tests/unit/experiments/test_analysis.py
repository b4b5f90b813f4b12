from __future__ import annotations

import json
import math
from statistics import NormalDist

import numpy as np
import polars as pl
import pytest
from scipy.stats import chisquare

from recommender.experiments.analysis import (
    CONTINUE,
    KEEP,
    PROMOTE,
    ExperimentConfig,
    RatioMetric,
    always_valid_half_width,
    analyze,
    arm_metric,
    decide,
    difference,
    evaluate,
    experiment_report,
    planned_users_per_arm,
    ratio_from_sums,
    sample_ratio_mismatch,
    shadow_agreement,
    simulate_readings,
    user_outcomes,
)
from recommender.monitoring.beyond_accuracy import item_popularity
from recommender.monitoring.online import wilson_interval
from recommender.monitoring.report import experiment_lines
from recommender.serving.impressions import IMPRESSIONS

EXPERIMENT = "v1-vs-v2"
FEEDBACK_SCHEMA = pl.Schema(
    {
        "user_id": pl.Int64,
        "movie_id": pl.Int64,
        "event": pl.String,
        "timestamp": pl.Float64,
        "impression_id": pl.String,
    }
)


def impressions(*rows: dict[str, object]) -> pl.DataFrame:
    """Impression rows; every column not given takes a default of an A/B experiment."""
    defaults: dict[str, object] = {
        "timestamp": 0.0,
        "endpoint": "recommend",
        "fallback": False,
        "experiment": EXPERIMENT,
        "shadow_version": None,
        "shadow_movie_ids": None,
    }
    full = [
        {
            **defaults,
            "model_version": "1" if row.get("arm") == "champion" else "2",
            **row,
        }
        for row in rows
    ]
    return pl.DataFrame(full, schema=IMPRESSIONS)


def feedback(*rows: tuple[str | None, int, str]) -> pl.DataFrame:
    """Feedback events from ``(impression_id, movie_id, event)``."""
    return pl.DataFrame(
        [
            {"user_id": 1, "movie_id": m, "event": e, "timestamp": 0.0, "impression_id": i}
            for i, m, e in rows
        ],
        schema=FEEDBACK_SCHEMA,
    )


def bernoulli(users: int, clicks: int) -> RatioMetric:
    """An arm where every user had one impression and ``clicks`` of them clicked."""
    return ratio_from_sums(
        users=users,
        clicks=clicks,
        impressions=users,
        clicks_sq=clicks,
        impressions_sq=users,
        cross=clicks,
    )


def test_the_schema_has_the_eleven_columns() -> None:
    assert IMPRESSIONS.names() == [
        "impression_id",
        "timestamp",
        "endpoint",
        "user_key",
        "model_version",
        "fallback",
        "movie_ids",
        "experiment",
        "arm",
        "shadow_version",
        "shadow_movie_ids",
    ]


@pytest.mark.parametrize(
    ("options", "field"),
    [
        ({"share": 0}, "share"),
        ({"share": 100}, "share"),
        ({"share": 10, "alpha": 0.0}, "alpha"),
        ({"share": 10, "power": 1.0}, "power"),
        ({"share": 10, "mde": 0.0}, "mde"),
        ({"share": 10, "min_users": 1}, "min_users"),
        ({"share": 10, "srm_alpha": 1.5}, "srm_alpha"),
    ],
)
def test_the_config_names_a_bad_field(options: dict[str, float], field: str) -> None:
    with pytest.raises(ValueError, match=field):
        ExperimentConfig(**options)  # type: ignore[arg-type]


def test_attribution_counts_clicked_impressions_of_the_experiment() -> None:
    shown = impressions(
        {"impression_id": "a1", "user_key": "1", "arm": "champion", "movie_ids": [10, 20]},
        {"impression_id": "a2", "user_key": "1", "arm": "champion", "movie_ids": [30]},
        {"impression_id": "b1", "user_key": "2", "arm": "challenger", "movie_ids": [10]},
        # another experiment, and an answer outside any experiment: left out
        {"impression_id": "x1", "user_key": "1", "arm": "champion", "movie_ids": [10],
         "experiment": "v0-vs-v1"},
        {"impression_id": "o1", "user_key": "3", "arm": None, "movie_ids": [10],
         "experiment": None},
    )  # fmt: skip
    events = feedback(
        ("a1", 10, "click"),
        ("a1", 20, "click"),  # a second click on one impression counts once
        ("a1", 20, "like"),
        ("a2", 99, "click"),  # a movie a2 did not show
        ("zz", 30, "click"),  # an impression the log does not know
        (None, 10, "click"),  # no impression at all
        ("b1", 10, "view"),
        ("x1", 10, "click"),
        ("o1", 10, "click"),
    )
    outcomes = user_outcomes(shown, events, experiment=EXPERIMENT)
    assert outcomes.rows() == [("challenger", "2", 1, 0, 0), ("champion", "1", 2, 1, 1)]
    assert outcomes.columns == ["arm", "user_key", "impressions", "clicks", "likes"]


def test_delta_method_variance_by_hand() -> None:
    # Three champion users, (clicked impressions X, impressions Y): (1, 2), (0, 1), (2, 3).
    # n = 3, ΣX = 3, ΣY = 6, R = 0.5, Ȳ = 2, X̄ = 1.
    # s_X² = (0² + 1² + 1²)/2 = 1, s_Y² = (0² + 1² + 1²)/2 = 1, s_XY = (0 + 1 + 1)/2 = 1.
    # Var(R) = (1 − 2·0.5·1 + 0.25·1) / (3 · 2²) = 0.25 / 12 = 0.0208333
    # (the same as Σ(X − R·Y)² / ((n − 1)·n·Ȳ²) = (0 + 0.25 + 0.25) / 24).
    rows = [("u1", 1, 2), ("u2", 0, 1), ("u3", 2, 3)]
    shown = impressions(
        *(
            {"impression_id": f"{user}-{i}", "user_key": user, "arm": "champion",
             "movie_ids": [i]}
            for user, _, count in rows
            for i in range(count)
        )
    )  # fmt: skip
    events = feedback(
        *((f"{user}-{i}", i, "click") for user, clicks, _ in rows for i in range(clicks))
    )
    metric = arm_metric(user_outcomes(shown, events, experiment=EXPERIMENT), "champion")
    assert (metric.users, metric.clicks, metric.impressions, metric.rate) == (3, 3, 6, 0.5)
    assert metric.variance == pytest.approx(0.25 / 12, rel=1e-12)
    assert metric.per_user_variance == pytest.approx(0.25 / 4, rel=1e-12)


def test_delta_method_with_one_impression_per_user_is_the_binomial_variance() -> None:
    # X ∈ {0, 1}, Y = 1: s_Y² = s_XY = 0, s_X² = p(1 − p)·n/(n − 1), so Var(R) = p(1 − p)/(n − 1).
    assert bernoulli(1000, 100).variance == pytest.approx(0.1 * 0.9 / 999, rel=1e-12)
    assert bernoulli(1, 1).variance is None
    assert ratio_from_sums(
        users=0, clicks=0, impressions=0, clicks_sq=0, impressions_sq=0, cross=0
    ) == RatioMetric(0, 0.0, 0.0, None, None)


def test_always_valid_half_width_by_hand() -> None:
    # V = 1e-4, τ² = 3e-4, α = 0.05: V(V + τ²)/τ² = 1e-4 · 4e-4 / 3e-4 = 1.333333e-4;
    # ln((V + τ²)/V) = ln 4 = 1.386294; 2·ln(1/α) = 2·ln 20 = 5.991465; sum 7.377759;
    # 1.333333e-4 · 7.377759 = 9.837012e-4; sqrt = 0.0313640.
    half = always_valid_half_width(1e-4, 3e-4, alpha=0.05)
    assert half == pytest.approx(0.0313640, abs=1e-7)
    # At that distance the normal-mixture likelihood ratio is exactly 1/α.
    v, tau2 = 1e-4, 3e-4
    ratio = math.sqrt(v / (v + tau2)) * math.exp(half**2 * tau2 / (2 * v * (v + tau2)))
    assert ratio == pytest.approx(20.0, rel=1e-9)
    assert always_valid_half_width(0.0, 3e-4, alpha=0.05) == 0.0
    with pytest.raises(ValueError, match="tau2"):
        always_valid_half_width(1e-4, 0.0, alpha=0.05)


def test_difference_has_both_intervals_and_the_always_valid_one_is_wider() -> None:
    champion, challenger = bernoulli(1000, 100), bernoulli(1000, 120)
    diff = difference(champion, challenger, config=ExperimentConfig(share=50))
    v = 0.1 * 0.9 / 999 + 0.12 * 0.88 / 999
    half = always_valid_half_width(v, (0.1 * 0.1) ** 2, alpha=0.05)
    assert diff.estimate == pytest.approx(0.02)
    assert diff.relative == pytest.approx(0.2)
    assert diff.mde_absolute == pytest.approx(0.01)
    assert diff.always_valid_ci == pytest.approx((0.02 - half, 0.02 + half))
    assert diff.fixed_horizon_ci == pytest.approx(
        (0.02 - 1.959964 * v**0.5, 0.02 + 1.959964 * v**0.5)
    )
    assert diff.always_valid_ci[0] < diff.fixed_horizon_ci[0]  # type: ignore[index]


def test_sample_ratio_mismatch_by_hand_and_against_scipy() -> None:
    # 5,000 users at a 10 % share: expected 4,500 / 500. Observed 4,520 / 480:
    # χ² = 20²/4500 + 20²/500 = 0.088889 + 0.8 = 0.888889, p = 0.3458.
    srm = sample_ratio_mismatch(4520, 480, share=10, srm_alpha=0.001)
    reference = chisquare([4520, 480], [4500, 500])
    assert srm.chi2 == pytest.approx(0.888889, abs=1e-6)
    assert (srm.chi2, srm.p_value) == pytest.approx((reference.statistic, reference.pvalue))
    assert not srm.flagged and srm.observed_challenger_share == pytest.approx(0.096)
    # 4,400 / 600: χ² = 100²/4500 + 100²/500 = 22.2222, p = 2.43e-6 < 0.001
    broken = sample_ratio_mismatch(4400, 600, share=10, srm_alpha=0.001)
    assert broken.chi2 == pytest.approx(22.222222, abs=1e-6)
    assert broken.p_value == pytest.approx(chisquare([4400, 600], [4500, 500]).pvalue)
    assert broken.flagged
    empty = sample_ratio_mismatch(0, 0, share=10, srm_alpha=0.001)
    assert (empty.p_value, empty.flagged, empty.observed_challenger_share) == (1.0, False, None)


def test_planned_sample_is_the_two_proportion_formula_with_one_impression_per_user() -> None:
    # Textbook: n = (z_0.975 + z_0.8)² · (p1·q1 + p2·q2) / (p1 − p2)², p1 = 0.10, p2 = 0.11
    # (the MDE of 10 %): 7.848880 · (0.09 + 0.0979) / 0.01² = 14,748.0. The per-user variances
    # are the sample ones, p·q·n/(n − 1), hence the factor 1000/999.
    config = ExperimentConfig(share=50, alpha=0.05, power=0.8, mde=0.10)
    z = NormalDist().inv_cdf(0.975) + NormalDist().inv_cdf(0.8)
    textbook = z * z * (0.1 * 0.9 + 0.11 * 0.89) / 0.01**2
    assert textbook == pytest.approx(14_748.0, abs=0.1)
    planned = planned_users_per_arm(bernoulli(1000, 100), bernoulli(1000, 110), config=config)
    assert planned == math.ceil(textbook * 1000 / 999)
    assert planned_users_per_arm(bernoulli(1000, 0), bernoulli(1000, 5), config=config) is None


@pytest.mark.parametrize(
    ("champion", "challenger", "share", "decision", "words"),
    [
        (bernoulli(1000, 100), bernoulli(1000, 200), 50, PROMOTE, "lies above 0"),
        # 100,000 users each and no difference: the interval [-0.0043, +0.0043] is below +0.01
        (bernoulli(100_000, 10_000), bernoulli(100_000, 10_000), 50, KEEP, "not better"),
        # significantly worse is a keep too
        (bernoulli(1000, 200), bernoulli(1000, 100), 50, KEEP, "not better"),
        (bernoulli(1000, 100), bernoulli(1000, 100), 50, CONTINUE, "not conclusive"),
        (bernoulli(1000, 100), bernoulli(99, 50), 10, CONTINUE, "too few users"),
        # 1,000 against 1,400 users at 50 %: χ² = 66.7, the split is broken even though the
        # challenger's rate would promote it
        (bernoulli(1000, 100), bernoulli(1400, 280), 50, CONTINUE, "split is broken"),
        (bernoulli(1000, 0), bernoulli(1000, 0), 50, CONTINUE, "no interval yet"),
    ],
)
def test_each_branch_of_the_decision(
    champion: RatioMetric, challenger: RatioMetric, share: int, decision: str, words: str
) -> None:
    config = ExperimentConfig(share=share)
    result = evaluate(champion, challenger, config=config)
    assert result.decision.decision == decision
    assert words in result.decision.reason
    direct = decide(champion, challenger, result.difference, result.srm, config=config)
    assert direct.decision == decision


def test_the_reason_gives_the_numbers() -> None:
    reason = evaluate(bernoulli(1000, 100), bernoulli(1000, 200), config=ExperimentConfig(share=50))
    assert "+0.1000" in reason.decision.reason and "+100.0%" in reason.decision.reason


def test_analyze_composes_a_json_report() -> None:
    shown = impressions(
        *(
            {"impression_id": f"{arm}-{user}", "user_key": f"{arm}-{user}", "arm": arm,
             "movie_ids": [1, 2, 3]}
            for arm in ("champion", "challenger")
            for user in range(4)
        ),
        {"impression_id": "odd", "user_key": "champion-0", "arm": "champion",
         "movie_ids": [4], "model_version": "0"},
    )  # fmt: skip
    events = feedback(
        ("champion-0", 1, "click"),
        ("challenger-0", 2, "click"),
        ("challenger-1", 3, "click"),
        ("challenger-1", 3, "like"),
    )
    report = analyze(shown, events, experiment=EXPERIMENT, config=ExperimentConfig(share=50))
    json.dumps(report)
    champion, challenger = report["arms"]["champion"], report["arms"]["challenger"]  # type: ignore[index]
    assert champion["model_version"] == "1" and challenger["model_version"] == "2"
    assert (champion["impressions"], champion["users"], champion["clicks"]) == (5, 4, 1)
    assert (challenger["impressions"], challenger["users"], challenger["clicks"]) == (4, 4, 2)
    assert challenger["likes"] == 1 and challenger["like_rate"] == 0.25
    assert champion["click_rate"] == 0.2 and champion["click_rate_ci"] == wilson_interval(1, 5)
    assert report["difference"]["estimate"] == pytest.approx(0.3)  # type: ignore[index]
    assert report["difference"]["test"] == "mSPRT (always valid)"  # type: ignore[index]
    assert report["config"]["share"] == 50  # type: ignore[index]
    assert report["decision"] == CONTINUE and "too few users" in report["reason"]  # type: ignore[operator]


def test_analyze_of_empty_inputs_continues() -> None:
    report = analyze(
        IMPRESSIONS.to_frame(),
        FEEDBACK_SCHEMA.to_frame(),
        experiment=EXPERIMENT,
        config=ExperimentConfig(share=10),
    )
    json.dumps(report)
    assert report["decision"] == CONTINUE
    assert report["arms"]["champion"]["users"] == 0  # type: ignore[index]
    assert report["arms"]["champion"]["click_rate"] is None  # type: ignore[index]
    assert report["difference"]["always_valid_ci"] is None  # type: ignore[index]
    assert report["planned_users_per_arm"] is None
    assert report["srm"]["flagged"] is False  # type: ignore[index]


SHADOW = impressions(
    {"impression_id": "s1", "user_key": "1", "arm": "champion", "movie_ids": [1, 2, 3],
     "shadow_version": "2", "shadow_movie_ids": [1, 3, 4]},
    {"impression_id": "s2", "user_key": "2", "arm": "champion", "movie_ids": [5, 6],
     "shadow_version": "2", "shadow_movie_ids": [5, 6]},
    {"impression_id": "s3", "user_key": "3", "arm": "champion", "movie_ids": [7, 8]},
)  # fmt: skip


def test_shadow_agreement_on_tiny_lists() -> None:
    # s1, k = 2: top-2 {1, 2} and {1, 3} share 1 -> overlap 1/2. RBO with p = 0.9 at depth 2:
    # weights 0.1/0.19 = 0.526316 and 0.09/0.19 = 0.473684; depth 1 agrees (1/1), depth 2 half
    # (1/2): 0.526316 + 0.236842 = 0.763158. Full lists share {1, 3}: 2/3 of each.
    # s2: identical lists, all 1. s3 has no shadow list and is left out.
    events = feedback(
        ("s1", 2, "click"),  # not in the shadow list
        ("s1", 3, "click"),  # in it
        ("s2", 5, "click"),  # in it
        ("s2", 9, "click"),  # not shown: not attributed
    )
    agreement = shadow_agreement(SHADOW, experiment=EXPERIMENT, k=2, feedback=events)
    assert agreement["requests"] == 2 and agreement["shadow_version"] == "2"
    assert agreement["overlap_at_k"] == pytest.approx(0.75)
    assert agreement["rank_biased_overlap"] == pytest.approx((0.763158 + 1) / 2, abs=1e-6)
    assert agreement["served_share_in_both"] == pytest.approx((2 / 3 + 1) / 2)
    assert agreement["shadow_share_in_both"] == pytest.approx((2 / 3 + 1) / 2)
    assert agreement["clicks"] == 3
    assert agreement["clicked_in_shadow_share"] == pytest.approx(2 / 3)


def test_shadow_agreement_of_disjoint_and_of_no_lists() -> None:
    disjoint = impressions(
        {"impression_id": "d", "user_key": "1", "arm": "champion", "movie_ids": [1, 2],
         "shadow_version": "2", "shadow_movie_ids": [3, 4]},
    )  # fmt: skip
    agreement = shadow_agreement(disjoint, experiment=EXPERIMENT, k=2)
    assert (agreement["overlap_at_k"], agreement["rank_biased_overlap"]) == (0.0, 0.0)
    assert "clicks" not in agreement
    empty = shadow_agreement(
        IMPRESSIONS.to_frame(),
        experiment=EXPERIMENT,
        k=10,
        feedback=FEEDBACK_SCHEMA.to_frame(),
    )
    assert empty["requests"] == 0 and empty["overlap_at_k"] is None
    assert empty["clicks"] == 0 and empty["clicked_in_shadow_share"] is None
    with pytest.raises(ValueError, match="k must be"):
        shadow_agreement(SHADOW, experiment=EXPERIMENT, k=0)


def test_simulated_readings_accumulate_users_at_the_configured_split() -> None:
    def run(seed: int) -> list:
        return simulate_readings(
            np.random.default_rng(seed),
            users=5000,
            share=10,
            click_rate_a=0.1,
            click_rate_b=0.1,
            readings=24,
            impressions_per_user_mean=4,
            heterogeneity=0.2,
        )

    readings = run(7)
    assert readings == run(7)
    assert [r.hour for r in readings] == list(range(1, 25))
    users = [r.champion.users + r.challenger.users for r in readings]
    assert users == sorted(users) and 0 < users[0] < users[-1] <= 5000
    last = readings[-1]
    assert last.challenger.users / (last.champion.users + last.challenger.users) == pytest.approx(
        0.1, abs=0.02
    )
    assert last.champion.rate == pytest.approx(0.1, abs=0.01)
    assert last.champion.impressions / last.champion.users > 1  # several impressions per user


def test_the_shadow_report_compares_the_lists_and_never_decides() -> None:
    # popularity: movie 1 seen by all 4 training users (p = 1), movies 3 and 5 by 1 (p = 1/4)
    training = pl.DataFrame({"user_id": [1, 2, 3, 4, 1, 2], "movie_id": [1, 1, 1, 1, 3, 5]})
    report = experiment_report(
        SHADOW,
        feedback(("s1", 3, "click")),
        experiment=EXPERIMENT,
        mode="shadow",
        config=ExperimentConfig(share=10, min_users=2),
        k=2,
        popularity=item_popularity(training),
    )
    assert report["mode"] == "shadow" and report["decision"] == "continue"
    assert "shadow mode" in str(report["reason"])
    shadow = report["shadow"]
    assert shadow["requests"] == 2 and shadow["clicks"] == 1  # type: ignore[index]
    lists = shadow["lists"]  # type: ignore[index]
    # served lists [1, 2, 3] and [5, 6]; shadow lists [1, 3, 4] and [5, 6]
    assert lists["served"]["distinct_movies"] == 5 and lists["shadow"]["distinct_movies"] == 5
    # shadow list 1: p = 1, 1/4 and, for the unseen movie 4, the floor 1/(4 + 1)
    assert lists["shadow"]["average_popularity"] == pytest.approx(
        ((1 + 0.25 + 0.2) / 3 + (0.25 + 0.2) / 2) / 2
    )
    assert lists["served"]["novelty"] > 0
    json.dumps(report)


def test_in_ab_mode_the_report_is_the_analysis() -> None:
    report = experiment_report(
        SHADOW,
        feedback(),
        experiment=EXPERIMENT,
        mode="ab",
        config=ExperimentConfig(share=10),
        k=2,
        popularity=item_popularity(pl.DataFrame({"user_id": [1], "movie_id": [1]})),
    )
    assert report["mode"] == "ab" and "shadow" not in report
    assert report["decision"] == "continue"


def test_the_report_lines_name_the_verdict_and_survive_missing_figures() -> None:
    empty = experiment_report(
        IMPRESSIONS.to_frame(),
        FEEDBACK_SCHEMA.to_frame(),
        experiment=EXPERIMENT,
        mode="ab",
        config=ExperimentConfig(share=10),
        k=10,
        popularity=item_popularity(pl.DataFrame({"user_id": [1], "movie_id": [1]})),
    )
    lines = experiment_lines({**empty, "action": None})
    assert lines[0].startswith(f"- experiment **{EXPERIMENT}** (ab): **continue**")
    assert "click rate difference n/a" in lines[-1]
    assert "SAMPLE RATIO MISMATCH" not in "\n".join(lines)
    flagged = {**empty, "srm": {**empty["srm"], "flagged": True}, "action": "kept"}  # type: ignore[dict-item]
    assert "SAMPLE RATIO MISMATCH" in "\n".join(experiment_lines(flagged))
    assert experiment_lines(flagged)[-1] == "- action: kept"
