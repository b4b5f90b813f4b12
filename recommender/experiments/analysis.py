"""The statistics of an online experiment: champion against challenger on users' clicks.

The unit of analysis is the **user** (the unit the assignment hashes, see
:mod:`recommender.experiments.assignment`), not the impression: one user's impressions are
correlated, so treating them as independent trials would make every interval too narrow. Per
arm, the click rate is a ratio of per-user sums, R = ΣX / ΣY (X = a user's impressions with at
least one attributed click, Y = the user's impressions), whose variance comes from the delta
method over users (:func:`delta_method_variance`).

The difference challenger − champion gets an **always-valid** confidence interval from the
mixture sequential probability ratio test (:func:`always_valid_half_width`): the monitoring
report is read every hour, and a fixed-horizon interval read that often would promote a
challenger no better than the champion far more often than alpha says
(``benchmarks/experiment_aa.py`` measures both). :func:`decide` turns the interval into
``promote``, ``keep champion`` or ``continue``; :func:`analyze` composes everything into one
JSON-serialisable report. :func:`simulate_readings` replays the analysis on synthetic users as
they accumulate, for the A/A benchmark.

References:
    Deng, Knoblich, Lu (2018), "Applying the Delta Method in Metric Analytics: A Practical
    Guide with Novel Ideas", KDD.
    Johari, Koomen, Pekelis, Walsh (2017), "Peeking at A/B Tests: Why it matters, and what to
    do about it", KDD.
    Howard, Ramdas, McAuliffe, Sekhon (2021), "Time-uniform, nonparametric, nonasymptotic
    confidence sequences", Annals of Statistics.
"""

from __future__ import annotations

import math
from collections import Counter
from dataclasses import asdict, dataclass, fields
from statistics import NormalDist

import numpy as np
import polars as pl
from scipy.special import chdtrc

from recommender.experiments.assignment import CHALLENGER, CHAMPION
from recommender.monitoring.beyond_accuracy import average_popularity, novelty
from recommender.monitoring.online import Z_95, attribute, impression_outcomes, wilson_interval

PROMOTE = "promote"
KEEP = "keep champion"
CONTINUE = "continue"
TEST_NAME = "mSPRT (always valid)"
RBO_PERSISTENCE = 0.9
"""Rank-biased overlap's p: the weight of depth d is proportional to p^(d-1) (about 86 % of it
on the first 10 ranks of an unbounded list, Webber et al. 2010)."""


@dataclass(frozen=True)
class ExperimentConfig:
    """How an experiment is run and judged.

    Attributes:
        share: percent of users (the assignment unit) sent to the challenger, 1..99.
        alpha: the error rate of the always-valid interval (its level is 1 - alpha).
        power: the power the planned sample aims at.
        mde: the minimum detectable effect, relative to the champion's click rate (0.10: +10 %).
        min_users: users each arm needs before any decision.
        srm_alpha: the p-value below which the split counts as broken.
    """

    share: int
    alpha: float = 0.05
    power: float = 0.8
    mde: float = 0.10
    min_users: int = 100
    srm_alpha: float = 0.001

    def __post_init__(self) -> None:
        if isinstance(self.share, bool) or not isinstance(self.share, int):
            raise ValueError(f"share must be an integer percent, got {self.share!r}")
        if not 1 <= self.share <= 99:
            raise ValueError(f"share must be within 1..99, got {self.share}")
        for name in ("alpha", "power", "srm_alpha"):
            value = getattr(self, name)
            if not 0 < value < 1:
                raise ValueError(f"{name} must be within (0, 1), got {value}")
        if not self.mde > 0:
            raise ValueError(f"mde must be > 0, got {self.mde}")
        if self.min_users < 2:
            raise ValueError(f"min_users must be >= 2 (a variance needs two), got {self.min_users}")


@dataclass(frozen=True)
class RatioMetric:
    """One arm's click rate as a ratio of per-user sums.

    Attributes:
        users: n, users with at least one impression.
        clicks: ΣX, impressions with at least one attributed click.
        impressions: ΣY.
        rate: R = ΣX / ΣY (None without impressions).
        variance: Var(R) by the delta method (None with fewer than two users).
    """

    users: int
    clicks: float
    impressions: float
    rate: float | None
    variance: float | None

    @property
    def per_user_variance(self) -> float | None:
        """σ² = Var(R) · n: the variance of one user's linearised metric (X − R·Y) / Ȳ."""
        return None if self.variance is None else self.variance * self.users


@dataclass(frozen=True)
class Difference:
    """Challenger − champion click rate, with its intervals (None where undefined)."""

    estimate: float | None
    relative: float | None
    always_valid_ci: tuple[float, float] | None
    fixed_horizon_ci: tuple[float, float] | None
    mde_absolute: float | None
    test: str = TEST_NAME
    fixed_horizon_note: str = "95 % fixed horizon: valid only if read once, at a planned size"


@dataclass(frozen=True)
class SampleRatio:
    """The sample-ratio-mismatch check of users per arm against the configured share."""

    champion_users: int
    challenger_users: int
    expected_challenger_share: float
    observed_challenger_share: float | None
    chi2: float
    p_value: float
    flagged: bool


@dataclass(frozen=True)
class Decision:
    """``promote``, ``keep champion`` or ``continue``, and why, in words and numbers."""

    decision: str
    reason: str


@dataclass(frozen=True)
class Evaluation:
    """Everything that follows from the two arms' click rates and the configuration."""

    difference: Difference
    srm: SampleRatio
    planned_users_per_arm: int | None
    decision: Decision


def delta_method_variance(
    *,
    users: int,
    clicks: float,
    impressions: float,
    clicks_sq: float,
    impressions_sq: float,
    cross: float,
) -> float | None:
    """Var(R) of the ratio R = ΣX/ΣY from per-user sums, by the delta method:

    Var(R) ≈ (s_X² − 2R·s_XY + R²·s_Y²) / (n·Ȳ²),

    with n users, Ȳ = ΣY/n and the sample (co)variances s_X² = (ΣX² − (ΣX)²/n)/(n − 1),
    s_Y² likewise, s_XY = (ΣXY − ΣX·ΣY/n)/(n − 1) (Deng, Knoblich, Lu 2018, section 3). The
    arguments are n, ΣX, ΣY, ΣX², ΣY² and ΣXY. None with fewer than two users or no
    impressions; never negative (rounding is clipped at 0).
    """
    if users < 2 or impressions <= 0:
        return None
    n = users
    rate = clicks / impressions
    var_x = (clicks_sq - clicks * clicks / n) / (n - 1)
    var_y = (impressions_sq - impressions * impressions / n) / (n - 1)
    cov_xy = (cross - clicks * impressions / n) / (n - 1)
    mean_y = impressions / n
    return max(0.0, (var_x - 2 * rate * cov_xy + rate * rate * var_y) / (n * mean_y * mean_y))


def ratio_from_sums(
    *,
    users: int,
    clicks: float,
    impressions: float,
    clicks_sq: float,
    impressions_sq: float,
    cross: float,
) -> RatioMetric:
    """The :class:`RatioMetric` of per-user sums n, ΣX, ΣY, ΣX², ΣY², ΣXY."""
    clicks, impressions = float(clicks), float(impressions)
    return RatioMetric(
        users=int(users),
        clicks=clicks,
        impressions=impressions,
        rate=clicks / impressions if impressions > 0 else None,
        variance=delta_method_variance(
            users=users,
            clicks=clicks,
            impressions=impressions,
            clicks_sq=float(clicks_sq),
            impressions_sq=float(impressions_sq),
            cross=float(cross),
        ),
    )


def ratio_metric(clicks: np.ndarray, impressions: np.ndarray) -> RatioMetric:
    """The :class:`RatioMetric` of per-user counts (one entry per user, same order)."""
    x = np.asarray(clicks, dtype=np.float64)
    y = np.asarray(impressions, dtype=np.float64)
    if x.shape != y.shape:
        raise ValueError(f"clicks and impressions differ in shape: {x.shape} != {y.shape}")
    return ratio_from_sums(
        users=x.size,
        clicks=float(x.sum()),
        impressions=float(y.sum()),
        clicks_sq=float(x @ x),
        impressions_sq=float(y @ y),
        cross=float(x @ y),
    )


def always_valid_half_width(variance: float, tau2: float, *, alpha: float) -> float:
    """Half-width of the mSPRT always-valid interval around an estimate of variance V:

    sqrt( V(V + τ²)/τ² · ( ln((V + τ²)/V) + 2·ln(1/α) ) ).

    It is where the normal mixture likelihood ratio with mixing distribution N(0, τ²),
    Λ = sqrt(V/(V + τ²)) · exp(θ̂²τ² / (2V(V + τ²))), reaches 1/α; by Ville's inequality the
    probability that the true difference ever leaves the interval, over all the times it is
    read, is at most α (Johari et al. 2017, section 4; Howard et al. 2021 for confidence
    sequences). 0 when V is 0.
    """
    if variance < 0 or tau2 <= 0:
        raise ValueError(f"need variance >= 0 and tau2 > 0, got {variance} and {tau2}")
    if not 0 < alpha < 1:
        raise ValueError(f"alpha must be within (0, 1), got {alpha}")
    if variance == 0:
        return 0.0
    v = variance
    return math.sqrt(v * (v + tau2) / tau2 * (math.log((v + tau2) / v) + 2 * math.log(1 / alpha)))


def difference(
    champion: RatioMetric, challenger: RatioMetric, *, config: ExperimentConfig
) -> Difference:
    """θ̂ = R_challenger − R_champion with V = Var_A + Var_B, its always-valid interval
    θ̂ ± :func:`always_valid_half_width` (V, τ², α) with τ² = (mde · R_champion)², and the
    fixed-horizon 95 % interval θ̂ ± 1.96·sqrt(V) for comparison. The intervals are None until
    both variances exist (two users per arm) and the champion's rate is above 0; the always-valid
    one is also None while V is 0 (no variation seen yet).

    The interval at each reading is valid on its own at every reading; Johari et al. also
    intersect it over time, which needs the history and is left to the caller. τ² comes from the
    observed champion rate and V from estimated variances, so the guarantee is asymptotic:
    ``benchmarks/experiment_aa.py`` measures the false-promotion rate it gives."""
    if champion.rate is None or challenger.rate is None:
        return Difference(None, None, None, None, None)
    estimate = challenger.rate - champion.rate
    relative = estimate / champion.rate if champion.rate > 0 else None
    mde_absolute = config.mde * champion.rate
    if champion.variance is None or challenger.variance is None:
        return Difference(estimate, relative, None, None, mde_absolute)
    v = champion.variance + challenger.variance
    spread = Z_95 * math.sqrt(v)
    fixed = (estimate - spread, estimate + spread)
    if mde_absolute <= 0 or v == 0:
        return Difference(estimate, relative, None, fixed, mde_absolute)
    half = always_valid_half_width(v, mde_absolute**2, alpha=config.alpha)
    return Difference(estimate, relative, (estimate - half, estimate + half), fixed, mde_absolute)


def sample_ratio_mismatch(
    champion_users: int, challenger_users: int, *, share: int, srm_alpha: float
) -> SampleRatio:
    """Chi-square goodness of fit of the users per arm against the configured split:

    χ² = Σ (O − E)² / E over the two arms, E = N·(1 − share/100) and N·share/100, df = 1;
    p = P(χ²₁ ≥ χ²); ``flagged`` when p < ``srm_alpha``. No users: χ² = 0, p = 1.
    """
    if champion_users < 0 or challenger_users < 0:
        raise ValueError("champion_users and challenger_users must be >= 0")
    if not 0 < share < 100:
        raise ValueError(f"share must be within 1..99, got {share}")
    total = champion_users + challenger_users
    expected_share = share / 100
    if total == 0:
        return SampleRatio(0, 0, expected_share, None, 0.0, 1.0, False)
    expected = (total * (1 - expected_share), total * expected_share)
    observed = (champion_users, challenger_users)
    statistic = sum((o - e) ** 2 / e for o, e in zip(observed, expected, strict=True))
    p_value = float(chdtrc(1, statistic))  # scipy.stats.chi2.sf(statistic, 1), without its overhead
    return SampleRatio(
        champion_users=champion_users,
        challenger_users=challenger_users,
        expected_challenger_share=expected_share,
        observed_challenger_share=challenger_users / total,
        chi2=float(statistic),
        p_value=p_value,
        flagged=p_value < srm_alpha,
    )


def planned_users_per_arm(
    champion: RatioMetric, challenger: RatioMetric, *, config: ExperimentConfig
) -> int | None:
    """Users per arm a fixed-horizon two-sided test at ``alpha`` would need to detect the MDE
    with the configured power:

    n = (z_{1−α/2} + z_{power})² · (σ²_A + σ²_B) / δ², δ = mde · R_champion,

    σ² the observed per-user variance of each arm's linearised metric (Var(R) · n). Rounded up.
    None until both variances exist and the champion's rate is above 0. With one impression per
    user this is the textbook two-proportion formula (σ² = p(1 − p) · n/(n − 1)).
    """
    sigma_a, sigma_b = champion.per_user_variance, challenger.per_user_variance
    if sigma_a is None or sigma_b is None or not champion.rate:
        return None
    delta = config.mde * champion.rate
    z = NormalDist().inv_cdf(1 - config.alpha / 2) + NormalDist().inv_cdf(config.power)
    return math.ceil(z * z * (sigma_a + sigma_b) / (delta * delta))


def decide(
    champion: RatioMetric,
    challenger: RatioMetric,
    diff: Difference,
    srm: SampleRatio,
    *,
    config: ExperimentConfig,
    planned: int | None = None,
) -> Decision:
    """``promote`` when the always-valid interval's lower bound is above 0; ``keep champion``
    when its upper bound is below +δ (the challenger cannot be better by the MDE, which includes
    being significantly worse); otherwise ``continue``. Always ``continue`` while the split is
    broken (SRM flagged), while either arm has fewer than ``min_users`` users, and while there is
    no interval yet."""
    level = f"{(1 - config.alpha) * 100:g} %"
    if srm.flagged:
        return Decision(
            CONTINUE,
            f"sample ratio mismatch: {srm.champion_users} champion and {srm.challenger_users} "
            f"challenger users where {100 - config.share}/{config.share} was configured "
            f"(chi-square {srm.chi2:.1f}, p = {srm.p_value:.2g} < {config.srm_alpha:g}); the "
            "split is broken (assignment, routing or logging), so no decision is made until it "
            "is fixed",
        )
    plan = f"; planned {planned} users per arm" if planned is not None else ""
    if min(champion.users, challenger.users) < config.min_users:
        return Decision(
            CONTINUE,
            f"too few users: {champion.users} champion, {challenger.users} challenger; each arm "
            f"needs at least {config.min_users} before any decision{plan}",
        )
    if diff.always_valid_ci is None or diff.estimate is None or diff.mde_absolute is None:
        return Decision(
            CONTINUE,
            "no interval yet: the champion's click rate is "
            f"{_num(champion.rate)} and the arms show no variation to measure{plan}",
        )
    low, high = diff.always_valid_ci
    observed = (
        f"difference {diff.estimate:+.4f} ({_percent(diff.relative)} of the champion's "
        f"{champion.rate:.4f}), always-valid {level} interval [{low:+.4f}, {high:+.4f}]"
    )
    if low > 0:
        return Decision(PROMOTE, f"the challenger clicks better: {observed} lies above 0")
    if high < diff.mde_absolute:
        return Decision(
            KEEP,
            f"the challenger is not better by the minimum detectable effect: {observed} lies "
            f"below +{diff.mde_absolute:.4f} ({config.mde:.0%} of the champion's rate)",
        )
    return Decision(
        CONTINUE,
        f"not conclusive yet: {observed} contains 0 and reaches +{diff.mde_absolute:.4f} "
        f"(the MDE); users now {champion.users} champion, {challenger.users} challenger{plan}",
    )


def evaluate(
    champion: RatioMetric, challenger: RatioMetric, *, config: ExperimentConfig
) -> Evaluation:
    """The difference, the SRM check, the planned sample and the decision for two arms."""
    diff = difference(champion, challenger, config=config)
    srm = sample_ratio_mismatch(
        champion.users, challenger.users, share=config.share, srm_alpha=config.srm_alpha
    )
    planned = planned_users_per_arm(champion, challenger, config=config)
    decision = decide(champion, challenger, diff, srm, config=config, planned=planned)
    return Evaluation(diff, srm, planned, decision)


def _experiment_impressions(impressions: pl.DataFrame, experiment: str) -> pl.DataFrame:
    return impressions.filter(
        (pl.col("experiment") == experiment) & pl.col("arm").is_in([CHAMPION, CHALLENGER])
    )


def _feedback(feedback: pl.DataFrame) -> pl.DataFrame:
    """The columns attribution needs, typed (an all-null column reads as dtype Null)."""
    return feedback.select(
        pl.col("impression_id").cast(pl.String),
        pl.col("movie_id").cast(pl.Int64),
        pl.col("event").cast(pl.String),
    )


def user_outcomes(
    impressions: pl.DataFrame, feedback: pl.DataFrame, *, experiment: str
) -> pl.DataFrame:
    """Per ``arm`` and ``user_key`` of ``experiment``: ``impressions``, ``clicks`` (impressions
    with at least one attributed click: two clicks on one answer count once) and ``likes``
    (likewise). An event is attributed when its impression is known and shows its movie
    (:func:`recommender.monitoring.online.attribute`). Impressions without an arm are left out.
    """
    shown = _experiment_impressions(impressions, experiment)
    events = attribute(shown, _feedback(feedback))
    answered = impression_outcomes(events.filter(pl.col("rank").is_not_null()))
    return (
        shown.select("impression_id", "arm", "user_key")
        .join(answered, on="impression_id", how="left")
        .group_by("arm", "user_key")
        .agg(
            pl.len().cast(pl.Int64).alias("impressions"),
            pl.col("clicked").fill_null(False).sum().cast(pl.Int64).alias("clicks"),
            pl.col("liked").fill_null(False).sum().cast(pl.Int64).alias("likes"),
        )
        .sort("arm", "user_key")
    )


def arm_metric(outcomes: pl.DataFrame, arm: str) -> RatioMetric:
    """The click rate of one arm of :func:`user_outcomes` as a :class:`RatioMetric`."""
    rows = outcomes.filter(pl.col("arm") == arm)
    return ratio_metric(rows["clicks"].to_numpy(), rows["impressions"].to_numpy())


def arm_summary(
    outcomes: pl.DataFrame, metric: RatioMetric, *, arm: str, model_version: str | None
) -> dict[str, object]:
    """One arm of the report: counts, click and like rates with Wilson 95 % intervals
    (descriptive: they treat impressions as independent) and the click rate's delta-method
    variance (the one the test uses)."""
    rows = outcomes.filter(pl.col("arm") == arm)
    shown, likes = int(rows["impressions"].sum()), int(rows["likes"].sum())
    clicks = int(metric.clicks)
    return {
        "model_version": model_version,
        "impressions": shown,
        "users": metric.users,
        "clicks": clicks,
        "likes": likes,
        "click_rate": metric.rate,
        "click_rate_ci": wilson_interval(clicks, shown),
        "click_rate_variance": metric.variance,
        "like_rate": likes / shown if shown else None,
        "like_rate_ci": wilson_interval(likes, shown),
    }


def _model_versions(impressions: pl.DataFrame, experiment: str) -> dict[str, str]:
    """The most common model version per arm (ties: the smallest)."""
    counts = (
        _experiment_impressions(impressions, experiment)
        .group_by("arm", "model_version")
        .len()
        .sort("arm", "len", "model_version", descending=[False, True, False])
    )
    return {arm: version for arm, version, _ in counts.unique("arm", keep="first").iter_rows()}


def analyze(
    impressions: pl.DataFrame,
    feedback: pl.DataFrame,
    *,
    experiment: str,
    config: ExperimentConfig,
) -> dict[str, object]:
    """The experiment's report as one JSON-serialisable dict: per arm (model version, counts,
    rates with intervals), the difference with its always-valid and fixed-horizon intervals, the
    SRM check, the planned users per arm, and the decision with its reason."""
    outcomes = user_outcomes(impressions, feedback, experiment=experiment)
    versions = _model_versions(impressions, experiment)
    metrics = {arm: arm_metric(outcomes, arm) for arm in (CHAMPION, CHALLENGER)}
    result = evaluate(metrics[CHAMPION], metrics[CHALLENGER], config=config)
    return {
        "experiment": experiment,
        "config": {field.name: getattr(config, field.name) for field in fields(config)},
        "arms": {
            arm: arm_summary(outcomes, metric, arm=arm, model_version=versions.get(arm))
            for arm, metric in metrics.items()
        },
        "difference": asdict(result.difference),
        "srm": asdict(result.srm),
        "planned_users_per_arm": result.planned_users_per_arm,
        "decision": result.decision.decision,
        "reason": result.decision.reason,
    }


def shadow_agreement(
    impressions: pl.DataFrame,
    *,
    experiment: str,
    k: int,
    feedback: pl.DataFrame | None = None,
) -> dict[str, object]:
    """How the shadow challenger's lists compare with the served ones, on the same requests.

    Over the impressions of ``experiment`` that carry ``shadow_movie_ids`` (A = served list,
    B = shadow list, both in rank order):

    - ``overlap_at_k``: mean of |A_k ∩ B_k| / k over the top-k of each;
    - ``rank_biased_overlap``: mean RBO at depth k, Σ_{d=1..k} w_d · |A_d ∩ B_d| / d with
      w_d = (1 − p)·p^(d−1) / (1 − p^k), p = 0.9 (Webber, Moffat, Zobel 2010, truncated and
      normalised so identical lists give 1 and disjoint ones 0). Chosen over Spearman's rho or
      the footrule because top-k lists of two models are rarely permutations of each other: RBO
      needs no shared item set and weights the top ranks, the ones users see and click;
    - ``served_share_in_both`` / ``shadow_share_in_both``: mean share of each full list that the
      other list also holds;
    - with ``feedback``: ``clicks`` (distinct clicked movies attributed to these impressions) and
      ``clicked_in_shadow_share``, the share of them the shadow list also held (None without
      clicks).

    Means are None when no request was compared.
    """
    if k < 1:
        raise ValueError(f"k must be >= 1, got {k}")
    pairs = impressions.filter(
        (pl.col("experiment") == experiment) & pl.col("shadow_movie_ids").is_not_null()
    )
    served, shadow = pl.col("movie_ids"), pl.col("shadow_movie_ids")

    def common(depth: int) -> pl.Expr:
        return served.list.head(depth).list.set_intersection(shadow.list.head(depth)).list.len()

    p = RBO_PERSISTENCE
    norm = (1 - p) / (1 - p**k)
    rbo = pl.sum_horizontal([norm * p ** (d - 1) * common(d) / d for d in range(1, k + 1)])
    both = served.list.set_intersection(shadow).list.len()
    scored = pairs.select(
        (common(k) / k).alias("overlap_at_k"),
        rbo.alias("rank_biased_overlap"),
        _share(both, served.list.len()).alias("served_share_in_both"),
        _share(both, shadow.list.len()).alias("shadow_share_in_both"),
    )
    versions = Counter(v for v in pairs["shadow_version"].to_list() if v is not None)
    report: dict[str, object] = {
        "experiment": experiment,
        "k": k,
        "shadow_version": versions.most_common(1)[0][0] if versions else None,
        "requests": pairs.height,
        "rank_measure": f"rank-biased overlap at depth k, p = {p}",
        **{name: _mean(scored[name]) for name in scored.columns},
    }
    if feedback is not None:
        report.update(_clicks_in_shadow(pairs, feedback))
    return report


def _clicks_in_shadow(pairs: pl.DataFrame, feedback: pl.DataFrame) -> dict[str, object]:
    clicked = (
        attribute(pairs, _feedback(feedback))
        .filter(pl.col("rank").is_not_null() & (pl.col("event") == "click"))
        .select("impression_id", "movie_id")
        .unique()
        .join(pairs.select("impression_id", "shadow_movie_ids"), on="impression_id")
        .select(pl.col("shadow_movie_ids").list.contains(pl.col("movie_id")).alias("in_shadow"))
    )
    return {
        "clicks": clicked.height,
        "clicked_in_shadow_share": _mean(clicked["in_shadow"]) if clicked.height else None,
    }


def shadow_list_quality(
    impressions: pl.DataFrame, *, experiment: str, popularity: pl.DataFrame
) -> dict[str, dict[str, float]]:
    """The served and the shadow lists' beyond-accuracy figures on the same requests (those of
    ``experiment`` with a shadow list): distinct movies shown, novelty and average popularity
    (:mod:`recommender.monitoring.beyond_accuracy`, ``popularity`` from
    :func:`~recommender.monitoring.beyond_accuracy.item_popularity` of the training data)."""
    pairs = impressions.filter(
        (pl.col("experiment") == experiment) & pl.col("shadow_movie_ids").is_not_null()
    ).with_row_index("user_id")
    quality = {}
    for side, column in (("served", "movie_ids"), ("shadow", "shadow_movie_ids")):
        lists = (
            pairs.select("user_id", pl.col(column).alias("movie_id"))
            .with_columns(pl.int_ranges(1, pl.col("movie_id").list.len() + 1).alias("rank"))
            .explode("movie_id", "rank")
            .drop_nulls("movie_id")
        )
        quality[side] = {
            "distinct_movies": float(lists.get_column("movie_id").n_unique()),
            "novelty": novelty(lists, popularity),
            "average_popularity": average_popularity(lists, popularity),
        }
    return quality


SHADOW_REASON = (
    "shadow mode: every user saw the champion, so no feedback on the challenger's lists exists "
    "to decide on; the report compares the lists (set MOVIEREC_EXPERIMENT_MODE=ab to decide)"
)


def experiment_report(
    impressions: pl.DataFrame,
    feedback: pl.DataFrame,
    *,
    experiment: str,
    mode: str,
    config: ExperimentConfig,
    k: int,
    popularity: pl.DataFrame,
) -> dict[str, object]:
    """What the monitoring flow reports on a running experiment: :func:`analyze` and the
    ``mode``; in shadow mode also :func:`shadow_agreement` and :func:`shadow_list_quality`,
    and the decision is ``continue`` (shadow mode never decides)."""
    report = {"mode": mode, **analyze(impressions, feedback, experiment=experiment, config=config)}
    if mode == "shadow":
        report["shadow"] = {
            **shadow_agreement(impressions, experiment=experiment, k=k, feedback=feedback),
            "lists": shadow_list_quality(impressions, experiment=experiment, popularity=popularity),
        }
        report["decision"], report["reason"] = CONTINUE, SHADOW_REASON
    return report


@dataclass(frozen=True)
class Reading:
    """The two arms' click rates as the report would see them at the end of ``hour``."""

    hour: int
    champion: RatioMetric
    challenger: RatioMetric


def simulate_readings(
    rng: np.random.Generator,
    *,
    users: int,
    share: int,
    click_rate_a: float,
    click_rate_b: float,
    readings: int,
    impressions_per_user_mean: float,
    heterogeneity: float,
    return_hours: float = 24.0,
) -> list[Reading]:
    """Synthetic users of one experiment, read at the end of every hour.

    Each of ``users`` arrives at a uniform time within the ``readings`` hours and goes to the
    challenger with probability share/100 (as the hash does). A user has a geometric number of
    impressions (mean ``impressions_per_user_mean``, at least one) at uniform times within
    ``return_hours`` of arriving (those after the last reading are never seen) and a personal
    click probability drawn from a Beta distribution with mean ``click_rate_a`` (champion) or
    ``click_rate_b`` (challenger) and intra-user correlation ``heterogeneity`` = 1/(a + b + 1)
    (0: every user clicks with the arm's rate). Each impression is clicked with the user's
    probability. Reading h counts the impressions before hour h, per user, so each reading has
    the per-user sums the analysis would have, cheaply.
    """
    if users < 1 or readings < 1:
        raise ValueError(f"users and readings must be >= 1, got {users} and {readings}")
    if not 0 <= share <= 100:
        raise ValueError(f"share must be within 0..100, got {share}")
    if not (0 < click_rate_a < 1 and 0 < click_rate_b < 1):
        raise ValueError("click_rate_a and click_rate_b must be within (0, 1)")
    if impressions_per_user_mean < 1:
        raise ValueError(f"impressions_per_user_mean must be >= 1, got {impressions_per_user_mean}")
    if not 0 <= heterogeneity < 1:
        raise ValueError(f"heterogeneity must be within [0, 1), got {heterogeneity}")
    arm = (rng.random(users) < share / 100).astype(np.int64)  # 1: challenger
    mean_rate = np.where(arm == 1, click_rate_b, click_rate_a)
    if heterogeneity > 0:
        concentration = 1 / heterogeneity - 1
        rate = rng.beta(mean_rate * concentration, (1 - mean_rate) * concentration)
    else:
        rate = mean_rate
    counts = rng.geometric(1 / impressions_per_user_mean, size=users)
    owner = np.repeat(np.arange(users), counts)
    hour = (
        rng.uniform(0, readings, size=users)[owner] + rng.uniform(0, return_hours, owner.size)
    ).astype(np.int64)
    clicked = (rng.random(owner.size) < rate[owner]).astype(np.float64)
    seen = hour < readings
    order = np.argsort(hour[seen], kind="stable")
    owner, clicked, hour = owner[seen][order], clicked[seen][order], hour[seen][order]
    ends = np.searchsorted(hour, np.arange(1, readings + 1))
    x = np.zeros(users)
    y = np.zeros(users)
    # Per arm: n, ΣX, ΣY, ΣX², ΣY², ΣXY, updated from the users each hour touches only.
    sums = np.zeros((6, 2))
    result = []
    start = 0
    for h, end in enumerate(ends, start=1):
        touched, index = np.unique(owner[start:end], return_inverse=True)
        x0, y0 = x[touched], y[touched]
        x1 = x0 + np.bincount(index, weights=clicked[start:end], minlength=touched.size)
        y1 = y0 + np.bincount(index, minlength=touched.size)
        x[touched], y[touched] = x1, y1
        start = end
        changes = ((y0 == 0), x1 - x0, y1 - y0, x1 * x1 - x0 * x0, y1 * y1 - y0 * y0)
        for row, change in enumerate((*changes, x1 * y1 - x0 * y0)):
            sums[row] += np.bincount(arm[touched], weights=change, minlength=2)
        champion, challenger = (
            ratio_from_sums(
                users=round(sums[0, i]),
                clicks=sums[1, i],
                impressions=sums[2, i],
                clicks_sq=sums[3, i],
                impressions_sq=sums[4, i],
                cross=sums[5, i],
            )
            for i in (0, 1)
        )
        result.append(Reading(h, champion, challenger))
    return result


def _share(part: pl.Expr, whole: pl.Expr) -> pl.Expr:
    """part / whole, null for an empty list (left out of the mean)."""
    return pl.when(whole > 0).then(part / whole)


def _mean(column: pl.Series) -> float | None:
    value = column.mean()
    return None if value is None else float(value)  # type: ignore[arg-type]


def _num(value: float | None) -> str:
    return "undefined" if value is None else f"{value:.4f}"


def _percent(value: float | None) -> str:
    return "undefined" if value is None else f"{value:+.1%}"
