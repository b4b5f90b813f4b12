"""Tasks of the monitoring flow: thin shells over ``recommender.monitoring``."""

from __future__ import annotations

from datetime import datetime
from pathlib import Path
from typing import Any

import polars as pl
from prefect import task
from prefect.artifacts import create_markdown_artifact, create_table_artifact
from prefect.cache_policies import NO_CACHE
from prefect.events import emit_event

from bentos import store
from recommender.data import feedback, storage
from recommender.experiments import analysis
from recommender.features import build as features
from recommender.features.store import FeatureStore
from recommender.monitoring import beyond_accuracy, drift, online, report
from recommender.serving.impressions import read_impressions
from recommender.tracking import registry, runs

TRACKING_RETRIES: dict[str, Any] = {"retries": 2, "retry_delay_seconds": [5, 15]}


@task(**TRACKING_RETRIES, cache_policy=NO_CACHE)
def champion_lineage(tracking_uri: str, experiment: str, name: str) -> dict[str, str]:
    """The champion's version, run and the feature version it was trained on."""
    return registry.champion_lineage(runs.connect(tracking_uri, experiment=experiment), name)


@task(cache_policy=NO_CACHE)
def reference_features(store_root: Path, version: str) -> dict[str, pl.DataFrame]:
    """The feature tables the champion was trained on."""
    return FeatureStore(store_root).read(features.FEATURE_SET, version).tables


@task(cache_policy=NO_CACHE)
def current_features(processed_dir: Path) -> dict[str, pl.DataFrame]:
    """The feature tables of the current processed data (built, not stored)."""
    tables, _ = storage.read_tables(processed_dir, ("movies", "interactions"))
    return features.build_feature_tables(tables["interactions"], tables["movies"])


@task(cache_policy=NO_CACHE)
def measure_drift(
    reference: dict[str, pl.DataFrame], current: dict[str, pl.DataFrame], psi_threshold: float
) -> drift.DriftReport:
    """Every feature column's drift and the new users and movies."""
    return drift.feature_drift(reference, current, psi_threshold=psi_threshold)


@task(cache_policy=NO_CACHE)
def list_quality(
    predictions_file: Path, interactions: pl.DataFrame, movies: pl.DataFrame
) -> beyond_accuracy.ListQuality:
    """Beyond-accuracy quality of one model version's batch predictions (k: their length)."""
    predictions = pl.read_parquet(predictions_file)
    return beyond_accuracy.list_quality(
        predictions, interactions=interactions, movies=movies, k=_length(predictions)
    )


@task(cache_policy=NO_CACHE)
def overlap(champion_file: Path, previous_file: Path) -> float:
    """overlap@k of two versions' batch predictions, k being the champion's list length."""
    champion = pl.read_parquet(champion_file)
    return beyond_accuracy.overlap_at_k(
        champion, pl.read_parquet(previous_file), k=_length(champion)
    )


def _length(predictions: pl.DataFrame) -> int:
    return int(predictions.get_column("rank").max() or 1)  # type: ignore[arg-type]


@task(cache_policy=NO_CACHE)
def read_online(impression_log: Path, feedback_log: Path) -> tuple[pl.DataFrame, pl.DataFrame]:
    """The impression log and the feedback events."""
    return read_impressions(impression_log), feedback.read_events(feedback_log).events


@task(cache_policy=NO_CACHE)
def measure_online(impressions: pl.DataFrame, events: pl.DataFrame) -> dict[str, Any]:
    """Online quality per model version and endpoint, from the impressions and the feedback
    that names them."""
    return online.online_quality(impressions, events)


@task(**TRACKING_RETRIES, cache_policy=NO_CACHE)
def running_experiment(tracking_uri: str, name: str) -> dict[str, str] | None:
    """The champion and challenger versions of the online experiment that runs, if one does."""
    client = runs.client(tracking_uri)
    challenger = registry.running_challenger(client, name)
    if challenger is None:
        return None
    champion = registry.champion_lineage(client, name)["version"]
    return {"champion": champion, "challenger": str(challenger.version)}


@task(cache_policy=NO_CACHE)
def analyze_experiment(
    impressions: pl.DataFrame,
    events: pl.DataFrame,
    *,
    experiment: str,
    mode: str,
    config: analysis.ExperimentConfig,
    k: int,
    interactions: pl.DataFrame,
) -> dict[str, Any]:
    """Per-arm online quality, the difference, SRM and the decision (shadow: agreement)."""
    return analysis.experiment_report(
        impressions,
        events,
        experiment=experiment,
        mode=mode,
        config=config,
        k=k,
        popularity=beyond_accuracy.item_popularity(interactions),
    )


@task(**TRACKING_RETRIES, cache_policy=NO_CACHE)
def end_experiment(
    tracking_uri: str,
    name: str,
    challenger: str,
    catalog: Path,
    *,
    promote: bool,
    bento_model_tag: str,
) -> str:
    """Act on the decision through the resumable sequence (reconciled first); what was done."""
    client = runs.client(tracking_uri)
    store.reconcile_serving(client, name, catalog=catalog, model_tag=bento_model_tag)
    version = client.get_model_version(name, challenger)
    try:
        bento_tag = store.end_experiment(
            client, name, version, promote=promote, model_tag=bento_model_tag
        )
    except store.ExperimentEndedError as exc:  # superseded since the analysis: not an error
        return f"none: {exc}"
    emit_event(
        event=report.EXPERIMENT_PROMOTED if promote else report.EXPERIMENT_KEPT,
        resource=report.event_resource(name),
        payload={"challenger": challenger, "bento_tag": bento_tag},
    )
    verb = "promoted" if promote else "kept the champion over"
    return f"{verb} v{challenger}; Bento {bento_tag} (redeploy or restart the service to serve it)"


@task(cache_policy=NO_CACHE)
def decide_events(
    monitoring_report: dict[str, Any], thresholds: report.Thresholds, state_file: Path
) -> list[dict[str, Any]]:
    """The retraining events the report calls for, with the cooldown applied."""
    return report.retraining_events(
        monitoring_report,
        thresholds,
        last_emitted=report.last_emitted(state_file),
        now=datetime.now().astimezone(),
    )


@task(cache_policy=NO_CACHE)
def emit_events(events: list[dict[str, Any]], name: str, state_file: Path) -> None:
    """Send the events not held back by the cooldown to Prefect and remember when."""
    for event in events:
        if event["emitted"]:
            emit_event(
                event=event["event"], resource=report.event_resource(name), payload=event["payload"]
            )
    report.remember_emitted(state_file, events, datetime.now().astimezone())


@task(cache_policy=NO_CACHE)
def write_report(monitoring_report: dict[str, Any], directory: Path) -> dict[str, Path]:
    """``report.json`` and ``report.html``."""
    return report.write_report(monitoring_report, directory)


@task(**TRACKING_RETRIES, cache_policy=NO_CACHE)
def log_report(
    tracking_uri: str,
    experiment: str,
    artifact_root: Path,
    monitoring_report: dict[str, Any],
    files: dict[str, Path],
) -> str:
    """An MLflow run in the monitoring experiment: figures as metrics, files as artifacts."""
    runs.connect(tracking_uri, experiment=experiment, artifact_root=artifact_root)
    champion = monitoring_report["champion"]
    return runs.log_monitoring_run(
        metrics=report.flat_metrics(monitoring_report),
        params={
            "champion_version": champion["version"],
            "champion_run_id": champion["run_id"],
            "feature_version": champion["feature_version"],
        },
        files=list(files.values()),
    )


@task(cache_policy=NO_CACHE)
def publish(monitoring_report: dict[str, Any]) -> None:
    """The summary and the drift table as Prefect artifacts."""
    create_markdown_artifact(report.markdown_summary(monitoring_report), key="monitoring-summary")
    create_table_artifact(report.drift_table(monitoring_report), key="monitoring-drift")
