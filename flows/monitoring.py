"""The monitoring flow: online quality per model version (impressions and the feedback that
names them), data drift against the champion's training features, beyond-accuracy quality of
the champion's lists against the previous champion's, and the retraining events that follow
(``movierec.drift.detected``, ``movierec.feedback.accumulated``)."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

from prefect import flow

from flows.batch_prediction import batch_prediction_flow
from recommender.experiments.analysis import KEEP, PROMOTE, ExperimentConfig
from recommender.experiments.assignment import experiment_id
from recommender.monitoring import report
from recommender.settings import Settings, get_settings
from tasks import monitoring


@flow(name="monitoring", log_prints=True)
def monitoring_flow(k: int | None = None) -> dict[str, Any]:
    """Measure, write ``<data_dir>/monitoring/<time>/report.{json,html}``, log them to MLflow's
    ``monitoring`` experiment, publish Prefect artifacts and emit the retraining events.

    Args:
        k: The list length of the batch predictions made when the champion has none yet
            (default: ``settings.k``).
    """
    settings = get_settings()
    name = settings.registered_model_name
    champion = monitoring.champion_lineage(settings.mlflow_uri, settings.mlflow_experiment, name)
    reference = monitoring.reference_features(settings.features_dir, champion["feature_version"])
    current = monitoring.current_features(settings.processed_dir)
    drift = monitoring.measure_drift(reference, current, settings.drift_psi_threshold)

    champion_file = settings.predictions_dir / champion["version"] / "predictions.parquet"
    if not champion_file.is_file():
        print(f"No batch predictions of v{champion['version']} yet: making them")
        batch_prediction_flow(k=k)
    catalog = reference["movie_features"]
    lists = monitoring.list_quality(champion_file, reference["interactions"], catalog)
    previous = None
    older = report.previous_version(settings.predictions_dir, champion["version"])
    if older is not None:
        older_file = settings.predictions_dir / older / "predictions.parquet"
        previous = (
            older,
            monitoring.list_quality(older_file, reference["interactions"], catalog),
            monitoring.overlap(champion_file, older_file),
        )

    impressions, events = monitoring.read_online(settings.impression_log, settings.feedback_log)
    online = monitoring.measure_online(impressions, events)
    created = datetime.now().astimezone()
    monitoring_report = report.build_report(
        registered_model=name,
        champion=champion,
        drift=drift,
        reference_interactions=reference["interactions"],
        current_interactions=current["interactions"],
        lists=lists,
        previous=previous,
        online=online,
        created_at=created.isoformat(),
    )
    thresholds = report.Thresholds(
        psi=settings.drift_psi_threshold,
        feedback_interactions=settings.retrain_feedback_interactions,
        cooldown=timedelta(hours=settings.retrain_cooldown_hours),
    )
    running = monitoring.running_experiment(settings.mlflow_uri, name)
    if running is not None and settings.experiment_mode != "off":
        monitoring_report["experiment"] = _experiment(
            settings, running, impressions, events, k, reference["interactions"]
        )
    state = settings.monitoring_events_state
    monitoring_report["events"] = monitoring.decide_events(monitoring_report, thresholds, state)
    directory = settings.monitoring_dir / created.strftime("%Y%m%dT%H%M%S.%f")
    files = monitoring.write_report(monitoring_report, directory)
    monitoring.log_report(
        settings.mlflow_uri,
        settings.monitoring_experiment,
        settings.mlflow_artifacts_dir,
        monitoring_report,
        files,
    )
    monitoring.publish(monitoring_report)
    monitoring.emit_events(monitoring_report["events"], name, state)
    print(report.markdown_summary(monitoring_report))
    print(f"Report: {files['html']}")
    return monitoring_report


def _experiment(
    settings: Settings,
    running: dict[str, str],
    impressions: Any,
    events: Any,
    k: int | None,
    interactions: Any,
) -> dict[str, Any]:
    """Analyse the running experiment; with online promotion, act on a final decision."""
    name = settings.registered_model_name
    result = monitoring.analyze_experiment(
        impressions,
        events,
        experiment=experiment_id(
            running["champion"], running["challenger"], salt=settings.experiment_salt
        ),
        mode=settings.experiment_mode,
        config=ExperimentConfig(
            share=settings.experiment_share,
            alpha=settings.experiment_alpha,
            power=settings.experiment_power,
            mde=settings.experiment_mde,
            min_users=settings.experiment_min_users,
        ),
        k=k or settings.k,
        interactions=interactions,
    )
    result["action"] = None
    if settings.promotion == "online" and result["decision"] in (PROMOTE, KEEP):
        result["action"] = monitoring.end_experiment(
            settings.mlflow_uri,
            name,
            running["challenger"],
            settings.catalog_table,
            promote=result["decision"] == PROMOTE,
            bento_model_tag=settings.bento_model_tag,
        )
    return result
