"""A/A experiments read every hour: does the decision promote a challenger that is no better?

Simulates experiments with ``simulate_readings`` (no HTTP): users arrive over ``--readings``
hours, a geometric number of impressions each (mean ``--impressions-per-user``), a personal click
probability from a Beta distribution (mean ``--click-rate``, intra-user correlation
``--heterogeneity``), a 10 % and a 50 % share. At every hourly reading the analysis runs
(``evaluate``: the mSPRT always-valid interval, SRM, ``decide``), as the hourly monitoring report
would. Prints, per share:

* the false-promotion rate: A/A experiments that reached ``promote`` at ANY reading, with its
  Wilson 95 % interval, against the configured alpha (PASS when the rate is <= alpha);
* the decisions at the last reading (``keep champion``, ``continue``);
* for contrast, a naive fixed-horizon 95 % interval read at every reading (lower bound > 0
  counts as a promotion; either bound past 0 as "significant");
* the power of the real test when the challenger's click rate is truly ``--lift`` higher.

    uv run python benchmarks/experiment_aa.py
    uv run python benchmarks/experiment_aa.py --experiments 1000 --seed 3
"""

from __future__ import annotations

import argparse
import time
from dataclasses import dataclass, field

import numpy as np

from recommender.experiments.analysis import (
    KEEP,
    PROMOTE,
    ExperimentConfig,
    evaluate,
    simulate_readings,
)
from recommender.monitoring.online import wilson_interval

SHARES = (10, 50)


@dataclass
class Tally:
    """Counts over the simulated experiments of one setting."""

    experiments: int = 0
    promoted: int = 0
    naive_promoted: int = 0
    naive_significant: int = 0
    final_keep: int = 0
    final_continue: int = 0
    promoted_hours: list[int] = field(default_factory=list)


def run(rng: np.random.Generator, args: argparse.Namespace, *, share: int, lift: float) -> Tally:
    """``args.experiments`` experiments at ``share`` with the challenger's rate × (1 + lift)."""
    config = ExperimentConfig(share=share, alpha=args.alpha, mde=args.mde)
    tally = Tally()
    for _ in range(args.experiments):
        readings = simulate_readings(
            rng,
            users=args.users,
            share=share,
            click_rate_a=args.click_rate,
            click_rate_b=args.click_rate * (1 + lift),
            readings=args.readings,
            impressions_per_user_mean=args.impressions_per_user,
            heterogeneity=args.heterogeneity,
        )
        promoted_at = None
        naive_promoted = naive_significant = False
        decision = None
        for reading in readings:
            result = evaluate(reading.champion, reading.challenger, config=config)
            decision = result.decision.decision
            if decision == PROMOTE and promoted_at is None:
                promoted_at = reading.hour
            fixed = result.difference.fixed_horizon_ci
            enough = min(reading.champion.users, reading.challenger.users) >= config.min_users
            if fixed is not None and enough:
                naive_promoted |= fixed[0] > 0
                naive_significant |= fixed[0] > 0 or fixed[1] < 0
        tally.experiments += 1
        tally.promoted += promoted_at is not None
        tally.naive_promoted += naive_promoted
        tally.naive_significant += naive_significant
        tally.final_keep += decision == KEEP
        tally.final_continue += decision not in (KEEP, PROMOTE)
        if promoted_at is not None:
            tally.promoted_hours.append(promoted_at)
    return tally


def rate(count: int, total: int) -> str:
    low, high = wilson_interval(count, total)
    return f"{count / total:.1%} [{low:.1%}, {high:.1%}]"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--experiments", type=int, default=200)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--users", type=int, default=20_000, help="users per experiment")
    parser.add_argument("--readings", type=int, default=72, help="hourly readings")
    parser.add_argument("--click-rate", type=float, default=0.08)
    parser.add_argument("--impressions-per-user", type=float, default=5.0)
    parser.add_argument("--heterogeneity", type=float, default=0.15)
    parser.add_argument("--alpha", type=float, default=0.05)
    parser.add_argument("--mde", type=float, default=0.10)
    parser.add_argument("--lift", type=float, default=0.15, help="true lift for the power")
    args = parser.parse_args()
    rng = np.random.default_rng(args.seed)
    started = time.perf_counter()
    print(
        f"{args.experiments} experiments per setting, {args.users:,} users each over "
        f"{args.readings} hourly readings, {args.impressions_per_user:g} impressions per user "
        f"(mean), click rate {args.click_rate:g}, heterogeneity (intra-user correlation) "
        f"{args.heterogeneity:g}, alpha {args.alpha:g}, MDE {args.mde:.0%}, seed {args.seed}"
    )
    verdicts = []
    for share in SHARES:
        aa = run(rng, args, share=share, lift=0.0)
        n = aa.experiments
        passed = aa.promoted / n <= args.alpha
        verdicts.append(passed)
        print(f"\nA/A, {share} % to the challenger:")
        print(f"  false promotions (promote at any reading): {rate(aa.promoted, n)}")
        print(
            f"  at the last reading: keep champion {rate(aa.final_keep, n)}, "
            f"continue {rate(aa.final_continue, n)}"
        )
        print(
            f"  naive fixed-horizon 95 % read hourly: promotes {rate(aa.naive_promoted, n)}, "
            f"significant either way {rate(aa.naive_significant, n)}"
        )
        print(
            f"  {'PASS' if passed else 'FAIL'}: false promotions {aa.promoted / n:.1%} "
            f"<= alpha {args.alpha:.0%}"
        )
        ab = run(rng, args, share=share, lift=args.lift)
        when = f"{np.median(ab.promoted_hours):.0f}" if ab.promoted_hours else "none"
        print(
            f"  power for a true {args.lift:+.0%} lift: promote at some reading "
            f"{rate(ab.promoted, ab.experiments)} (median hour {when}); keep champion at the "
            f"end {rate(ab.final_keep, ab.experiments)}"
        )
    elapsed = time.perf_counter() - started
    print(f"\n{'PASS' if all(verdicts) else 'FAIL'} ({elapsed:.1f} s)")


if __name__ == "__main__":
    main()
