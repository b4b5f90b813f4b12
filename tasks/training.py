"""Tasks of the training flow: thin shells over ``recommender``."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import polars as pl
from prefect import task
from prefect.artifacts import create_markdown_artifact, create_table_artifact
from prefect.cache_policies import NO_CACHE

from bentos import store
from recommender import evaluation, features, model, storage, tracking
from recommender.feature_store import FeatureSet, FeatureStore, FeatureVersionNotFoundError
from recommender.settings import Settings


@task(cache_policy=NO_CACHE)
def load_processed(directory: Path) -> tuple[dict[str, pl.DataFrame], dict[str, Any]]:
    """The processed ``movies`` and ``interactions`` tables and their manifest."""
    return storage.read_tables(directory, ("movies", "interactions"))


@task(cache_policy=NO_CACHE)
def build_and_store_features(
    store_root: Path, interactions: pl.DataFrame, movies: pl.DataFrame, manifest: dict[str, Any]
) -> FeatureSet:
    """Build the feature tables and store them as a (content-addressed) version."""
    tables = features.build_feature_tables(interactions, movies)
    return FeatureStore(store_root).write(features.FEATURE_SET, tables, source_manifest=manifest)


@task(cache_policy=NO_CACHE)
def read_features(store_root: Path, version: str) -> FeatureSet:
    """A stored feature set version (``MOVIEREC_FEATURE_VERSION``)."""
    try:
        return FeatureStore(store_root).read(features.FEATURE_SET, version)
    except FeatureVersionNotFoundError as exc:
        raise FeatureVersionNotFoundError(f"MOVIEREC_FEATURE_VERSION: {exc}") from exc


@task(cache_policy=NO_CACHE)
def evaluate(interactions: pl.DataFrame, settings: Settings) -> evaluation.EvaluationReport:
    """Tune ALS on a validation split of the training part, score it and the baselines on test."""
    return evaluation.evaluate_models(
        interactions,
        dataset=features.FEATURE_SET,
        split=settings.split,
        test_fraction=settings.test_fraction,
        seed=settings.seed,
        k=settings.k,
        trials=settings.tuning_trials,
    )


@task(cache_policy=NO_CACHE)
def train_final(
    interactions: pl.DataFrame,
    movies: pl.DataFrame,
    config: model.ALSConfig,
    settings: Settings,
    directory: Path,
) -> Path:
    """Fit the chosen configuration on all interactions and save it to ``directory``."""
    als = model.train_als(
        interactions,
        config=config,
        movies=movies,
        random_state=settings.seed,
        use_gpu=settings.use_gpu,
    )
    return als.save(directory)


@task(cache_policy=NO_CACHE)
def connect_tracking(settings: Settings) -> None:
    """Point MLflow at the configured tracking store; fails at once when a server is down."""
    tracking.connect(settings)


@task(cache_policy=NO_CACHE)
def log_run(
    report: evaluation.EvaluationReport,
    model_dir: Path,
    feature_set: FeatureSet,
    feature_path: Path,
    params: dict[str, Any],
) -> tuple[str, str]:
    """Log params, metrics, evaluation, plots, inputs and the pyfunc model to MLflow."""
    return tracking.log_training_run(
        report=report,
        model_dir=model_dir,
        feature_version=feature_set.version,
        features=feature_set.tables["interactions"],
        feature_path=feature_path,
        data_manifest=feature_set.metadata["source_manifest"],
        params=params,
    )


@task(cache_policy=NO_CACHE)
def register_and_promote(
    settings: Settings, model_uri: str, run_id: str, validation_ndcg: float, feature_version: str
) -> tracking.PromotionDecision:
    """Register the model as challenger; the gate decides whether it becomes champion."""
    return tracking.register_and_promote(
        tracking.connect(settings),
        model_uri=model_uri,
        run_id=run_id,
        name=settings.registered_model_name,
        validation_ndcg=validation_ndcg,
        k=settings.k,
        margin=settings.promotion_margin,
        tags={"feature_version": feature_version},
    )


@task(cache_policy=NO_CACHE)
def package_champion(
    settings: Settings,
    model_dir: Path,
    run_id: str,
    decision: tracking.PromotionDecision,
    feature_version: str,
) -> str:
    """Import the new champion into the BentoML model store, build the Bento and log its tag."""
    store.import_model(
        model_dir,
        settings.processed_dir / "movies.parquet",
        labels={
            "model_version": decision.version,
            "run_id": run_id,
            "feature_version": feature_version,
        },
        metadata={"validation_ndcg": decision.challenger_ndcg},
    )
    bento_tag = store.build_bento()
    tracking.connect(settings).set_tag(run_id, "bento_tag", bento_tag)
    return bento_tag


@task
def publish_training_report(
    report: evaluation.EvaluationReport, decision: tracking.PromotionDecision
) -> None:
    """The test metrics as a table artifact and the gate's decision as markdown."""
    create_table_artifact(
        tracking.evaluation_table(report).to_dicts(),
        key="training-metrics",
        description=f"Test metrics at k={report.k} ({report.split}, seed {report.seed})",
    )
    create_markdown_artifact(decision.markdown(), key="promotion-decision")
