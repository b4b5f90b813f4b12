"""The training flow: processed data -> features -> store -> tune/train -> evaluate -> MLflow."""

from __future__ import annotations

from typing import Any

from prefect import flow

from recommender.features import FEATURE_SET
from recommender.settings import get_settings
from tasks import training


@flow(name="training", log_prints=True)
def training_flow() -> dict[str, Any]:
    """Train, evaluate, log and register a model; the gate decides on ``champion``.

    Returns:
        The MLflow run id, model version, feature version, metrics and the gate's decision.
    """
    settings = get_settings()
    training.connect_tracking(settings)  # before any work: an unreachable server fails fast
    store_root = settings.data_dir / "features"
    if settings.feature_version:
        feature_set = training.read_features(store_root, settings.feature_version)
    else:
        tables, manifest = training.load_processed(settings.processed_dir)
        feature_set = training.build_and_store_features(
            store_root, tables["interactions"], tables["movies"], manifest
        )
    interactions = feature_set.tables["interactions"]
    report = training.evaluate(interactions, settings)
    model_dir = training.train_final(
        interactions,
        feature_set.tables["movie_features"],
        report.best_config,
        settings,
        settings.data_dir / "models" / feature_set.version,
    )
    run_id, model_uri = training.log_run(
        report,
        model_dir,
        feature_set,
        store_root / FEATURE_SET / feature_set.version,
        {
            "split": settings.split,
            "test_fraction": settings.test_fraction,
            "seed": settings.seed,
            "tuning_trials": settings.tuning_trials,
            "env": settings.env,
        },
    )
    decision = training.register_and_promote(
        settings, model_uri, run_id, report.validation_ndcg, feature_set.version
    )
    training.publish_training_report(report, decision)
    bento_tag = None
    if decision.promoted:
        bento_tag = training.package_champion(
            settings, model_dir, run_id, decision, feature_set.version
        )
        print(f"Built Bento {bento_tag} with the new champion (bentoml serve {bento_tag}).")
    als = report.to_dict()["models"]["als"]
    print(
        f"Feature version {feature_set.version} in {store_root}; MLflow run {run_id}; "
        f"{decision.registered_model} v{decision.version}: "
        f"{'champion' if decision.promoted else 'challenger'} ({decision.reason}) "
        f"Test ndcg@{report.k} {als['ndcg']:.4f}, validation ndcg@{report.k} "
        f"{report.validation_ndcg:.4f}."
    )
    return {
        "run_id": run_id,
        "model_uri": model_uri,
        "model_dir": str(model_dir),
        "feature_version": feature_set.version,
        "metrics": report.to_dict()["models"],
        "decision": decision.to_dict(),
        "bento_tag": bento_tag,
    }
