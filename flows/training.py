"""The training flow: processed data -> features -> store -> tune/train -> evaluate -> MLflow."""

from __future__ import annotations

from typing import Any, Literal

from prefect import flow

from recommender.modeling.protocol import SplitKind
from recommender.settings import get_settings
from tasks import training


@flow(name="training", log_prints=True)
def training_flow(
    split: SplitKind | None = None,
    test_fraction: float | None = None,
    seed: int | None = None,
    k: int | None = None,
    trials: int | None = None,
    min_rating: float | None = None,
    feature_version: str | None = None,
    model: Literal["als", "popularity"] = "als",
) -> dict[str, Any]:
    """Train, evaluate, log and register a model; the gate (offline promotion) or an online
    experiment (``MOVIEREC_PROMOTION=online``, docs/experiments.md) decides on ``champion``.

    First the run reconciles: runs killed mid-log are failed, leftovers of a killed packaging
    removed, and the champion packaged again if the BentoML store's latest is not it. A model
    the gate passes is packaged first and takes ``champion`` last (docs/promotion.md).

    Every parameter left unset takes its value from the settings (``MOVIEREC_SPLIT``,
    ``MOVIEREC_TEST_FRACTION``, ``MOVIEREC_SEED``, ``MOVIEREC_K``, ``MOVIEREC_TUNING_TRIALS``,
    ``MOVIEREC_MIN_RATING``, ``MOVIEREC_FEATURE_VERSION``).

    Args:
        split: How interactions are split into train and test (and validation).
        test_fraction: The share of each user's (or movie's) interactions held out.
        seed: Seeds splits, search and model initialisation.
        k: The cut-off of the metrics and the promotion gate.
        trials: ALS configurations tried on the validation split.
        min_rating: Count only ratings at least this as interactions.
        feature_version: Train on this stored feature version instead of building features.
        model: ``als`` (tuned) or ``popularity``, the most-popular baseline in the same served
            form (its validation ndcg is the baseline's on the same validation split).

    Returns:
        The MLflow run id, model version, feature version, metrics and the gate's decision.
    """
    settings = get_settings()
    protocol = settings.evaluation_protocol.with_options(
        split=split,
        test_fraction=test_fraction,
        seed=seed,
        k=k,
        trials=trials,
        min_rating=min_rating,
    )
    feature_version = feature_version or settings.feature_version
    tracking_uri, store_root = settings.mlflow_uri, settings.features_dir
    name = settings.registered_model_name
    # Before any work: an unreachable server fails fast.
    training.connect_tracking(
        tracking_uri, settings.mlflow_experiment, settings.mlflow_artifacts_dir
    )
    # Before training: repair what a killed or failed earlier run left (convention 17).
    training.reconcile_serving(
        tracking_uri,
        settings.mlflow_experiment,
        name,
        settings.catalog_table,
        bento_model_tag=settings.bento_model_tag,
        stale_run_hours=settings.stale_run_hours,
    )
    if feature_version:
        feature_set = training.read_features(store_root, feature_version)
    else:
        tables, manifest = training.load_processed(settings.processed_dir)
        feature_set = training.build_and_store_features(
            store_root, tables["interactions"], tables["movies"], manifest
        )
    interactions = feature_set.tables["interactions"]
    report = training.evaluate(interactions, protocol)
    model_dir = settings.models_dir / feature_set.version
    if model == "popularity":
        model_dir = training.train_popularity(
            interactions, feature_set.tables["movie_features"], report.best_config, model_dir
        )
        validation_ndcg = report.tuning.popularity_validation_ndcg
    else:
        model_dir = training.train_final(
            interactions,
            feature_set.tables["movie_features"],
            report.best_config,
            model_dir,
            seed=protocol.seed,
            use_gpu=settings.use_gpu,
        )
        validation_ndcg = report.validation_ndcg
    run_id, model_uri = training.log_run(
        report,
        model_dir,
        feature_set,
        store_root,
        {**protocol.to_params(), "env": settings.env, "model": model},
        validation_ndcg,
    )
    online = settings.promotion == "online"
    superseded = training.running_challenger(tracking_uri, name) if online else None
    decision = training.register_challenger(
        tracking_uri,
        name,
        model_uri,
        run_id,
        validation_ndcg,
        feature_set.version,
        k=protocol.k,
        margin=settings.promotion_margin,
    )
    training.publish_training_report(report, decision)
    bento_tag = None
    experiment = online and decision.champion_version is not None
    if (
        experiment or decision.promoted
    ):  # package first; champion moves (or the experiment starts) last
        bento_tag = training.package_and_promote(
            tracking_uri,
            model_dir,
            settings.catalog_table,
            run_id,
            decision,
            feature_set.version,
            bento_model_tag=settings.bento_model_tag,
            online=experiment,
            superseded=superseded,
        )
    if experiment:
        print(
            f"Online promotion: v{decision.version} is the challenger of an experiment against "
            f"champion v{decision.champion_version} (Bento {bento_tag}); serve it with "
            "MOVIEREC_EXPERIMENT_MODE=ab or shadow, and `movierec monitor` decides."
        )
    elif decision.promoted:
        print(f"Built Bento {bento_tag} with the new champion (bentoml serve {bento_tag}).")
    als = report.to_dict()["models"]["als"]
    print(
        f"Feature version {feature_set.version} in {store_root}; MLflow run {run_id}; "
        f"{decision.registered_model} v{decision.version}: "
        f"{'champion' if decision.promoted and not experiment else 'challenger'} "
        f"({decision.reason}) Test ndcg@{report.k} of ALS {als['ndcg']:.4f}, validation "
        f"ndcg@{report.k} of the {model} model {validation_ndcg:.4f}."
    )
    return {
        "run_id": run_id,
        "model_uri": model_uri,
        "model_dir": str(model_dir),
        "feature_version": feature_set.version,
        "metrics": report.to_dict()["models"],
        "decision": decision.to_dict(),
        "bento_tag": bento_tag,
        "experiment_started": experiment,
    }
