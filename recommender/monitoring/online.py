"""Online quality per model version: what users did with what each version showed them.

Impressions come from the service's impression log (one row per answer: ``impression_id``,
``timestamp``, ``endpoint``, ``user_key`` (the user id, or ``s:<session id>`` for an anonymous
visitor), ``model_version``, ``fallback``, ``movie_ids`` in rank order); feedback events name
the impression they answer in ``impression_id``. An event is *attributed* when its impression
is known and its movie is in that impression's list, at the rank the list gives it.
"""

from __future__ import annotations

import math

import polars as pl

POSITIVE_EVENTS = ("click", "like")
Z_95 = 1.959963984540054
"""The standard normal quantile of 0.975: two-sided 95 % intervals."""


def wilson_interval(successes: int, trials: int, *, z: float = Z_95) -> tuple[float, float]:
    """The Wilson score interval of a proportion (95 % with the default z):

    (p + z²/2n ± z·sqrt(p(1 − p)/n + z²/4n²)) / (1 + z²/n), with p = successes / n.

    ``(0.0, 1.0)`` for no trials: nothing is known.
    """
    if trials < 0 or not 0 <= successes <= trials:
        raise ValueError(f"need 0 <= successes <= trials, got {successes} of {trials}")
    if trials == 0:
        return 0.0, 1.0
    p = successes / trials
    denominator = 1 + z * z / trials
    centre = p + z * z / (2 * trials)
    spread = z * math.sqrt(p * (1 - p) / trials + z * z / (4 * trials * trials))
    return max(0.0, (centre - spread) / denominator), min(1.0, (centre + spread) / denominator)


def attribute(impressions: pl.DataFrame, feedback: pl.DataFrame) -> pl.DataFrame:
    """Each feedback event with the impression it answers: ``model_version``, ``endpoint`` and
    the movie's ``rank`` (null when the event names no known impression, or a movie the
    impression did not show)."""
    shown = (
        impressions.select("impression_id", "model_version", "endpoint", "movie_ids")
        .with_columns(pl.int_ranges(1, pl.col("movie_ids").list.len() + 1).alias("rank"))
        .explode("movie_ids", "rank")
        .rename({"movie_ids": "movie_id"})
    )
    return feedback.join(shown, on=["impression_id", "movie_id"], how="left")


def impression_outcomes(attributed: pl.DataFrame) -> pl.DataFrame:
    """``impression_id``, ``clicked``, ``liked``, ``positive`` (click or like): whether any of
    the attributed events (:func:`attribute`, rank not null) answering the impression is one."""
    return attributed.group_by("impression_id").agg(
        (pl.col("event") == "click").any().alias("clicked"),
        (pl.col("event") == "like").any().alias("liked"),
        pl.col("event").is_in(POSITIVE_EVENTS).any().alias("positive"),
    )


def online_quality(
    impressions: pl.DataFrame, feedback: pl.DataFrame, *, bucket: str = "1h"
) -> dict[str, object]:
    """Per model version and endpoint: impressions, users, click and like rates with Wilson
    intervals, the positive-feedback rate per user averaged over users, the ranks of clicks,
    and the share of fallback answers; plus the feedback no impression explains.

    A rate is the share of impressions with at least one such event (a user who clicks twice on
    one list counts once). The per-user rate is Gorse's definition: for each user, the share of
    their impressions with a click or like, averaged over users. ``over_time`` has the click
    and like rates per model version for each ``bucket`` (a polars duration such as ``"1h"``)
    of impression time.
    """
    events = attribute(impressions, feedback)
    attributed = events.filter(pl.col("rank").is_not_null())
    per_impression = impression_outcomes(attributed)
    shown = impressions.join(per_impression, on="impression_id", how="left").with_columns(
        pl.col("clicked", "liked", "positive").fill_null(False)
    )
    groups = []
    for (version, endpoint), group in sorted(
        shown.group_by("model_version", "endpoint"), key=lambda item: item[0]
    ):
        n = group.height
        clicks, likes = int(group["clicked"].sum()), int(group["liked"].sum())
        per_user = group.group_by("user_key").agg(pl.col("positive").mean())
        ranks = (
            attributed.filter(
                (pl.col("model_version") == version)
                & (pl.col("endpoint") == endpoint)
                & (pl.col("event") == "click")
            )
            .get_column("rank")
            .value_counts(sort=True)
            .sort("rank")
        )
        groups.append(
            {
                "model_version": version,
                "endpoint": endpoint,
                "impressions": n,
                "users": per_user.height,
                "click_rate": clicks / n,
                "click_rate_ci": wilson_interval(clicks, n),
                "like_rate": likes / n,
                "like_rate_ci": wilson_interval(likes, n),
                "positive_rate_per_user": float(per_user["positive"].mean()),
                "click_ranks": {str(r): int(c) for r, c in ranks.iter_rows()},
                "fallback_share": float(group["fallback"].mean()),
            }
        )
    unexplained = events.filter(pl.col("rank").is_null())
    return {
        "groups": groups,
        "over_time": _over_time(shown, bucket),
        "feedback_events": feedback.height,
        "attributed_events": attributed.height,
        "without_impression": int(unexplained["impression_id"].is_null().sum()),
        "unknown_impression_or_movie": int(unexplained["impression_id"].is_not_null().sum()),
    }


def _over_time(shown: pl.DataFrame, bucket: str) -> list[dict[str, object]]:
    """Click and like rates with their intervals per model version and time bucket."""
    buckets = (
        shown.with_columns(
            pl.from_epoch(pl.col("timestamp"), time_unit="s").dt.truncate(bucket).alias("start")
        )
        .group_by("model_version", "start")
        .agg(
            pl.len().alias("impressions"),
            pl.col("clicked").sum().alias("clicks"),
            pl.col("liked").sum().alias("likes"),
        )
        .sort("model_version", "start")
    )
    return [
        {
            "model_version": row["model_version"],
            "start": row["start"].isoformat(),
            "impressions": row["impressions"],
            "click_rate": row["clicks"] / row["impressions"],
            "click_rate_ci": wilson_interval(row["clicks"], row["impressions"]),
            "like_rate": row["likes"] / row["impressions"],
            "like_rate_ci": wilson_interval(row["likes"], row["impressions"]),
        }
        for row in buckets.iter_rows(named=True)
    ]
