"""The monitoring report: what was measured, the retraining events it calls for, and the files
people read (JSON for machines, HTML with plots for people)."""

from __future__ import annotations

import base64
import html
import io
import json
import re
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import polars as pl
from matplotlib.figure import Figure

from recommender.data.storage import read_json, write_json
from recommender.monitoring.beyond_accuracy import ListQuality
from recommender.monitoring.drift import DriftReport, categorical_counts

DRIFT_EVENT = "movierec.drift.detected"
FEEDBACK_EVENT = "movierec.feedback.accumulated"
EXPERIMENT_PROMOTED = "movierec.experiment.promoted"
EXPERIMENT_KEPT = "movierec.experiment.kept-champion"


def event_resource(registered_model: str) -> dict[str, str]:
    """The Prefect resource the retraining events are about (what prefect.yaml's triggers match)."""
    return {"prefect.resource.id": f"movierec.model.{registered_model}"}


def last_emitted(state_file: Path) -> dict[str, str]:
    """When each retraining event was last emitted (ISO times; empty before the first)."""
    return read_json(state_file) if state_file.is_file() else {}


def remember_emitted(state_file: Path, events: list[dict[str, Any]], now: datetime) -> None:
    """Record ``now`` for the events that were emitted (an atomic rewrite of ``state_file``)."""
    last = last_emitted(state_file)
    last.update({event["event"]: now.isoformat() for event in events if event["emitted"]})
    write_json(last, state_file)


def rating_distribution(reference: pl.DataFrame, current: pl.DataFrame) -> dict[str, Any]:
    """Each side's share of every rating value (as a string key, for JSON)."""
    values, ref, cur = categorical_counts(
        reference.get_column("rating"), current.get_column("rating")
    )
    return {
        side: {
            str(v): float(n / counts.sum()) if counts.sum() else 0.0
            for v, n in zip(values, counts, strict=True)
        }
        for side, counts in (("reference", ref), ("current", cur))
    }


def new_feedback(reference: pl.DataFrame, current: pl.DataFrame) -> dict[str, Any]:
    """Feedback interactions of ``current`` newer than everything in ``reference``: the
    evidence the served model has not learned from yet."""
    since = reference.get_column("timestamp").max()
    fresh = current.filter(pl.col("source") == "feedback")
    if since is not None:
        fresh = fresh.filter(pl.col("timestamp") > since)
    return {
        "since_timestamp": since,
        "interactions": fresh.height,
        "users": fresh.get_column("user_id").n_unique(),
    }


@dataclass(frozen=True)
class Thresholds:
    """When the monitoring flow asks for retraining."""

    psi: float = 0.2
    feedback_interactions: int = 1000
    cooldown: timedelta = timedelta(hours=24)


def retraining_events(
    report: Mapping[str, Any],
    thresholds: Thresholds,
    *,
    last_emitted: Mapping[str, str],
    now: datetime,
) -> list[dict[str, Any]]:
    """The events to emit: :data:`DRIFT_EVENT` when a feature drifted, :data:`FEEDBACK_EVENT`
    when enough new feedback accumulated; an event emitted less than ``cooldown`` ago
    (``last_emitted`` maps event names to ISO times) is held back, so one drift starts one
    retraining, not one per monitoring run."""
    candidates = []
    drifted = report["data_drift"]["drifted"]
    if drifted:
        psi = {f"{c['table']}.{c['column']}": c["psi"] for c in report["data_drift"]["columns"]}
        candidates.append(
            (
                DRIFT_EVENT,
                {
                    "drifted": drifted,
                    "psi": {name: psi[name] for name in drifted},
                    "psi_threshold": thresholds.psi,
                    "new_user_share": report["data_drift"]["new_entities"]["new_user_share"],
                },
            )
        )
    feedback = report["feedback"]
    if feedback["interactions"] >= thresholds.feedback_interactions:
        candidates.append(
            (
                FEEDBACK_EVENT,
                {**feedback, "threshold": thresholds.feedback_interactions},
            )
        )
    events = []
    for name, payload in candidates:
        previous = last_emitted.get(name)
        held = previous is not None and now - datetime.fromisoformat(previous) < thresholds.cooldown
        events.append({"event": name, "payload": payload, "emitted": not held})
    return events


def flat_metrics(report: Mapping[str, Any]) -> dict[str, float]:
    """The report's figures as MLflow metric names and values (charted across runs)."""
    metrics = {f"psi.{c['table']}.{c['column']}": c["psi"] for c in report["data_drift"]["columns"]}
    metrics["drifted_columns"] = float(len(report["data_drift"]["drifted"]))
    for name, value in report["data_drift"]["new_entities"].items():
        metrics[f"new_entities.{name}"] = float(value)
    metrics["feedback.new_interactions"] = float(report["feedback"]["interactions"])
    for label in ("champion", "previous"):
        quality = report["recommendations"].get(label)
        if quality:
            for name in (
                "catalog_coverage",
                "novelty",
                "average_popularity",
                "personalization",
                "intra_list_diversity",
            ):
                metrics[f"{label}.{name}"] = float(quality[name])
    overlap = report["recommendations"].get("overlap_at_k")
    if overlap is not None:
        metrics["overlap_at_k"] = float(overlap)
    for group in report["online"]["groups"]:
        prefix = f"online.v{group['model_version']}.{group['endpoint']}"
        for name in ("impressions", "click_rate", "like_rate", "positive_rate_per_user"):
            metrics[f"{prefix}.{name}"] = float(group[name])
    for name in ("without_impression", "unknown_impression_or_movie"):
        metrics[f"online.feedback_{name}"] = float(report["online"][name])
    experiment = report.get("experiment")
    if experiment:
        figures = {
            **{
                f"experiment.{arm}.{name}": arm_figures[name]
                for arm, arm_figures in experiment["arms"].items()
                for name in ("impressions", "users", "click_rate", "like_rate")
            },
            "experiment.difference": experiment["difference"]["estimate"],
            "experiment.srm_p_value": experiment["srm"]["p_value"],
            **{
                f"experiment.shadow.{name}": experiment.get("shadow", {}).get(name)
                for name in ("overlap_at_k", "rank_biased_overlap")
            },
        }
        metrics.update({name: float(v) for name, v in figures.items() if v is not None})
    return metrics


def experiment_lines(experiment: Mapping[str, Any]) -> list[str]:
    """The experiment's verdict and figures, as markdown list items."""
    lines = [
        f"- experiment **{experiment['experiment']}** ({experiment['mode']}): "
        f"**{experiment['decision']}**: {experiment['reason']}"
    ]
    for arm, figures in experiment["arms"].items():
        low, high = figures["click_rate_ci"]
        lines.append(
            f"- {arm} v{figures['model_version']}: {figures['users']:,} users, "
            f"{figures['impressions']:,} impressions, click rate {_pct(figures['click_rate'])} "
            f"({_pct(low)}-{_pct(high)}), like rate {_pct(figures['like_rate'])}"
        )
    difference, srm = experiment["difference"], experiment["srm"]
    interval = difference["always_valid_ci"] or (None, None)
    lines.append(
        f"- click rate difference {_pct(difference['estimate'], sign=True)} (always-valid "
        f"interval {_pct(interval[0], sign=True)} to {_pct(interval[1], sign=True)}); sample "
        f"ratio p = {srm['p_value']:.3g}" + (" **SAMPLE RATIO MISMATCH**" if srm["flagged"] else "")
    )
    shadow = experiment.get("shadow")
    if shadow:
        lines.append(
            f"- shadow: {shadow['requests']:,} requests ranked by both, overlap@{shadow['k']} "
            f"{_num(shadow['overlap_at_k'])}, rank-biased overlap "
            f"{_num(shadow['rank_biased_overlap'])}; novelty served "
            f"{shadow['lists']['served']['novelty']:.2f} / shadow "
            f"{shadow['lists']['shadow']['novelty']:.2f} bits"
        )
    if experiment.get("action"):
        lines.append(f"- action: {experiment['action']}")
    return lines


def _pct(value: float | None, *, sign: bool = False) -> str:
    return "n/a" if value is None else f"{value:{'+' if sign else ''}.2%}"


def _num(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.3f}"


def markdown_summary(report: Mapping[str, Any]) -> str:
    """A few lines for the Prefect artifact: the verdicts first, then the headline figures."""
    champion = report["champion"]
    drift = report["data_drift"]
    lines = [
        f"# Monitoring of {report['registered_model']} v{champion['version']}",
        "",
        f"- features of {champion['feature_version']} (training) against the current data: "
        + (
            f"**drift** in {', '.join(drift['drifted'])}"
            if drift["drifted"]
            else f"no column reached PSI {drift['psi_threshold']}"
        ),
        f"- new users {drift['new_entities']['new_user_share']:.1%}, new movies "
        f"{drift['new_entities']['new_movie_share']:.1%}; "
        f"new feedback interactions {report['feedback']['interactions']:,}",
    ]
    for group in report["online"]["groups"]:
        low, high = group["click_rate_ci"]
        lines.append(
            f"- online v{group['model_version']} {group['endpoint']}: "
            f"{group['impressions']:,} impressions, click rate {group['click_rate']:.1%} "
            f"({low:.1%}-{high:.1%}), like rate {group['like_rate']:.1%}"
        )
    if report.get("experiment"):
        lines.extend(experiment_lines(report["experiment"]))
    online = report["online"]
    if online["without_impression"] or online["unknown_impression_or_movie"]:
        lines.append(
            f"- feedback not tied to a shown movie: {online['without_impression']:,} without "
            f"an impression, {online['unknown_impression_or_movie']:,} naming an unknown one"
        )
    recs = report["recommendations"]
    if recs.get("champion"):
        c = recs["champion"]
        lines.append(
            f"- champion lists: coverage {c['catalog_coverage']:.3f}, novelty {c['novelty']:.2f} "
            f"bits, popularity {c['average_popularity']:.4f}, personalization "
            f"{c['personalization']:.3f}, diversity {c['intra_list_diversity']:.3f}"
        )
    if recs.get("overlap_at_k") is not None:
        lines.append(
            f"- overlap@{recs['champion']['k']} with v{recs['previous']['version']}: "
            f"{recs['overlap_at_k']:.3f}"
        )
    for event in report["events"]:
        verb = "emitted" if event["emitted"] else "held back (cooldown)"
        lines.append(f"- event `{event['event']}` {verb}")
    return "\n".join(lines)


def drift_table(report: Mapping[str, Any]) -> list[dict[str, Any]]:
    """One row per compared column, for the Prefect table artifact."""
    return [
        {
            "column": f"{c['table']}.{c['column']}",
            "psi": round(c["psi"], 4),
            "test": c["test"],
            "p_value": float(f"{c['p_value']:.3g}"),
            "drifted": c["drifted"],
        }
        for c in report["data_drift"]["columns"]
    ]


def write_report(report: Mapping[str, Any], directory: Path) -> dict[str, Path]:
    """``report.json`` and ``report.html`` in ``directory`` (created); returns both paths."""
    directory.mkdir(parents=True, exist_ok=True)
    paths = {"json": directory / "report.json", "html": directory / "report.html"}
    paths["json"].write_text(json.dumps(report, indent=2, default=str) + "\n")
    paths["html"].write_text(render_html(report))
    return paths


def render_html(report: Mapping[str, Any]) -> str:
    """A self-contained page: the summary, the drift plot and table, the list quality."""
    title, *items = [line for line in markdown_summary(report).splitlines() if line]
    summary = (
        f"<h1>{_inline(title.lstrip('# '))}</h1>\n<ul>\n"
        + "\n".join(f"<li>{_inline(item.removeprefix('- '))}</li>" for item in items)
        + "\n</ul>"
    )
    rows = "\n".join(
        "<tr>" + "".join(f"<td>{html.escape(str(value))}</td>" for value in row.values()) + "</tr>"
        for row in drift_table(report)
    )
    header = "".join(f"<th>{name}</th>" for name in ("column", "PSI", "test", "p-value", "drifted"))
    figures = [_drift_figure(report), _rating_figure(report)]
    if report["online"]["groups"]:
        figures[:0] = [_online_figure(report), _online_over_time_figure(report)]
    if report["recommendations"].get("champion"):
        figures.append(_quality_figure(report))
    images = "\n".join(
        f'<img alt="{alt}" src="data:image/png;base64,{_png(fig)}">' for alt, fig in figures
    )
    return f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>movierec monitoring</title>
<style>body{{font-family:sans-serif;margin:2em;max-width:1100px}}
table{{border-collapse:collapse}}td,th{{border:1px solid #ccc;padding:2px 8px;text-align:right}}
img{{max-width:100%;display:block;margin:1em 0}}</style></head>
<body>
{summary}
{images}
<h2>Drift per column</h2>
<table><tr>{header}</tr>
{rows}
</table>
</body></html>
"""


def _inline(markdown: str) -> str:
    """The summary's inline markdown (``**bold**``, ```code```) as escaped HTML."""
    text = html.escape(markdown)
    text = re.sub(r"\*\*(.+?)\*\*", r"<strong>\1</strong>", text)
    return re.sub(r"`(.+?)`", r"<code>\1</code>", text)


def _drift_figure(report: Mapping[str, Any]) -> tuple[str, Figure]:
    columns = report["data_drift"]["columns"]
    fig = Figure(figsize=(9, 0.28 * len(columns) + 1.2))
    ax = fig.subplots()
    names = [f"{c['table']}.{c['column']}" for c in columns]
    ax.barh(
        names,
        [c["psi"] for c in columns],
        color=["#c0392b" if c["drifted"] else "#4c72b0" for c in columns],
    )
    ax.axvline(
        report["data_drift"]["psi_threshold"], color="black", linestyle="--", label="threshold"
    )
    ax.invert_yaxis()
    ax.set_xlabel("PSI (current against the champion's training features)")
    ax.legend(loc="lower right")
    fig.tight_layout()
    return "PSI per feature", fig


def _online_figure(report: Mapping[str, Any]) -> tuple[str, Figure]:
    groups = report["online"]["groups"]
    fig = Figure(figsize=(9, 0.4 * len(groups) + 1.5))
    ax = fig.subplots()
    labels = [f"v{g['model_version']} {g['endpoint']} (n={g['impressions']})" for g in groups]
    for offset, rate in ((-0.2, "click_rate"), (0.2, "like_rate")):
        values = [g[rate] for g in groups]
        errors = [
            [v - g[f"{rate}_ci"][0] for v, g in zip(values, groups, strict=True)],
            [g[f"{rate}_ci"][1] - v for v, g in zip(values, groups, strict=True)],
        ]
        positions = [i + offset for i in range(len(groups))]
        ax.barh(positions, values, height=0.4, xerr=errors, capsize=3, label=rate.replace("_", " "))
    ax.set_yticks(range(len(groups)), labels)
    ax.invert_yaxis()
    ax.set_xlabel("share of impressions (95 % Wilson interval)")
    ax.legend(loc="lower right")
    fig.tight_layout()
    return "online click and like rates per model version", fig


def _online_over_time_figure(report: Mapping[str, Any]) -> tuple[str, Figure]:
    fig = Figure(figsize=(9, 3))
    ax = fig.subplots()
    buckets = report["online"]["over_time"]
    for version in sorted({b["model_version"] for b in buckets}):
        mine = [b for b in buckets if b["model_version"] == version]
        times = [datetime.fromisoformat(b["start"]) for b in mine]
        rates = [b["click_rate"] for b in mine]
        ax.plot(times, rates, marker="o", label=f"v{version} click rate")
        ax.fill_between(
            times,
            [b["click_rate_ci"][0] for b in mine],
            [b["click_rate_ci"][1] for b in mine],
            alpha=0.2,
        )
    starts = sorted(datetime.fromisoformat(b["start"]) for b in buckets)
    if starts[0] == starts[-1]:  # one bucket: an hour each side, not matplotlib's years
        ax.set_xlim(starts[0] - timedelta(hours=1), starts[0] + timedelta(hours=1))
    ax.set_ylabel("click rate (95 % interval)")
    ax.legend()
    fig.autofmt_xdate()
    fig.tight_layout()
    return "online click rate per model version over time", fig


def _rating_figure(report: Mapping[str, Any]) -> tuple[str, Figure]:
    shares = report["rating_distribution"]
    values = sorted(set(shares["reference"]) | set(shares["current"]), key=float)
    fig = Figure(figsize=(9, 3))
    ax = fig.subplots()
    positions = range(len(values))
    for offset, side in ((-0.2, "reference"), (0.2, "current")):
        ax.bar(
            [p + offset for p in positions],
            [shares[side].get(v, 0.0) for v in values],
            width=0.4,
            label=side,
        )
    ax.set_xticks(list(positions), values)
    ax.set_xlabel("rating")
    ax.set_ylabel("share of interactions")
    ax.legend()
    fig.tight_layout()
    return "rating distribution", fig


def _quality_figure(report: Mapping[str, Any]) -> tuple[str, Figure]:
    recs = report["recommendations"]
    names = ["catalog_coverage", "personalization", "intra_list_diversity", "average_popularity"]
    fig = Figure(figsize=(9, 3))
    ax = fig.subplots()
    sides = [("champion", recs["champion"])]
    if recs.get("previous"):
        sides.append((f"previous (v{recs['previous']['version']})", recs["previous"]))
    for i, (label, quality) in enumerate(sides):
        ax.bar(
            [p + 0.4 * i - 0.2 * (len(sides) - 1) for p in range(len(names))],
            [quality[n] for n in names],
            width=0.4,
            label=label,
        )
    ax.set_xticks(range(len(names)), [n.replace("_", " ") for n in names])
    ax.set_title("beyond-accuracy quality of the lists (popularity: mean share of users)")
    ax.legend()
    fig.tight_layout()
    return "list quality", fig


def _png(figure: Figure) -> str:
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=90)
    return base64.b64encode(buffer.getvalue()).decode("ascii")


def build_report(
    *,
    registered_model: str,
    champion: Mapping[str, str],
    drift: DriftReport,
    reference_interactions: pl.DataFrame,
    current_interactions: pl.DataFrame,
    lists: ListQuality | None,
    previous: tuple[str, ListQuality, float] | None,
    online: Mapping[str, Any],
    created_at: str,
) -> dict[str, Any]:
    """The report as JSON-ready data (``events`` is filled in by :func:`retraining_events`).

    Args:
        champion: ``version``, ``run_id`` and ``feature_version`` of the served model.
        lists: The quality of the champion's batch predictions, when there are any.
        previous: The previous champion's version, the quality of its lists and the overlap@k
            of the two versions' lists.
        online: :func:`recommender.monitoring.online.online_quality` of the served answers.
    """
    recommendations: dict[str, Any] = {"champion": lists.to_dict() if lists else None}
    if previous is not None:
        version, quality, overlap = previous
        recommendations["previous"] = {"version": version, **quality.to_dict()}
        recommendations["overlap_at_k"] = overlap
    return {
        "created_at": created_at,
        "registered_model": registered_model,
        "champion": dict(champion),
        "data_drift": drift.to_dict(),
        "rating_distribution": rating_distribution(reference_interactions, current_interactions),
        "feedback": new_feedback(reference_interactions, current_interactions),
        "recommendations": recommendations,
        "online": dict(online),
        "events": [],
    }


def previous_version(predictions_dir: Path, version: str) -> str | None:
    """The newest model version below ``version`` that has batch predictions (batch predictions
    are made for champions only, so this is the previous champion), or None."""
    older = [
        int(path.parent.name)
        for path in predictions_dir.glob("*/predictions.parquet")
        if path.parent.name.isdigit() and int(path.parent.name) < int(version)
    ]
    return str(max(older)) if older else None
