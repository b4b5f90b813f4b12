"""Tasks of the training flow: thin shells over ``recommender``."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import polars as pl
from prefect import task
from prefect.artifacts import create_markdown_artifact, create_table_artifact
from prefect.cache_policies import NO_CACHE

from bentos import store
from recommender.data import storage
from recommender.features import build as features
from recommender.features.store import FeatureSet, FeatureStore, FeatureVersionNotFoundError
from recommender.modeling import als, evaluation
from recommender.modeling.protocol import EvaluationProtocol
from recommender.tracking import registry, runs


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
    """A stored feature set version (the ``feature_version`` parameter)."""
    try:
        return FeatureStore(store_root).read(features.FEATURE_SET, version)
    except FeatureVersionNotFoundError as exc:
        raise FeatureVersionNotFoundError(
            f"feature_version (MOVIEREC_FEATURE_VERSION, --feature-version): {exc}"
        ) from exc


@task(cache_policy=NO_CACHE)
def evaluate(
    interactions: pl.DataFrame, protocol: EvaluationProtocol
) -> evaluation.EvaluationReport:
    """Tune ALS on a validation split of the training part, score it and the baselines on test."""
    return evaluation.evaluate_models(interactions, protocol, dataset=features.FEATURE_SET)


@task(cache_policy=NO_CACHE)
def train_final(
    interactions: pl.DataFrame,
    movies: pl.DataFrame,
    config: als.ALSConfig,
    directory: Path,
    *,
    seed: int,
    use_gpu: bool,
) -> Path:
    """Fit the chosen configuration on all interactions and save it to ``directory``."""
    model = als.train_als(
        interactions, config=config, movies=movies, random_state=seed, use_gpu=use_gpu
    )
    return model.save(directory)


@task(cache_policy=NO_CACHE)
def train_popularity(
    interactions: pl.DataFrame, movies: pl.DataFrame, config: als.ALSConfig, directory: Path
) -> Path:
    """The popularity baseline as a servable model on all interactions, saved to ``directory``."""
    return als.train_popularity(interactions, config=config, movies=movies).save(directory)


@task(cache_policy=NO_CACHE)
def connect_tracking(uri: str, experiment: str, artifact_root: Path) -> None:
    """Point MLflow at the tracking store; fails at once when a server is down."""
    runs.connect(uri, experiment=experiment, artifact_root=artifact_root)


@task(cache_policy=NO_CACHE)
def log_run(
    report: evaluation.EvaluationReport,
    model_dir: Path,
    feature_set: FeatureSet,
    store_root: Path,
    params: dict[str, Any],
    validation_ndcg: float,
) -> tuple[str, str]:
    """Log params, metrics, evaluation, plots, inputs and the pyfunc model to MLflow."""
    return runs.log_training_run(
        report=report,
        model_dir=model_dir,
        feature_version=feature_set.version,
        features=feature_set.tables["interactions"],
        feature_path=FeatureStore(store_root).directory(feature_set.name, feature_set.version),
        data_manifest=feature_set.metadata["source_manifest"],
        params=params,
        validation_ndcg=validation_ndcg,
    )


@task(cache_policy=NO_CACHE)
def register_challenger(
    tracking_uri: str,
    name: str,
    model_uri: str,
    run_id: str,
    validation_ndcg: float,
    feature_version: str,
    *,
    k: int,
    margin: float,
) -> registry.PromotionDecision:
    """Register the model as challenger; the gate decides whether it is to become champion."""
    return registry.register_challenger(
        runs.client(tracking_uri),
        model_uri=model_uri,
        run_id=run_id,
        name=name,
        validation_ndcg=validation_ndcg,
        k=k,
        margin=margin,
        tags={"feature_version": feature_version},
    )


@task(cache_policy=NO_CACHE)
def reconcile_serving(
    tracking_uri: str,
    experiment: str,
    name: str,
    catalog: Path,
    *,
    bento_model_tag: str,
    stale_run_hours: float,
) -> str | None:
    """Fail runs killed mid-log, clean killed packaging, package the champion if not served."""
    client = runs.client(tracking_uri)
    failed = runs.fail_stale_runs(client, experiment, max_age_hours=stale_run_hours)
    removed, bento_tag = store.reconcile_serving(
        client, name, catalog=catalog, model_tag=bento_model_tag
    )
    print(
        f"Reconciled: {len(failed)} stale run(s) failed, {len(removed)} leftover(s) removed, "
        f"champion {'repackaged as ' + bento_tag if bento_tag else 'already served'}."
    )
    return bento_tag


@task(cache_policy=NO_CACHE)
def package_and_promote(
    tracking_uri: str,
    model_dir: Path,
    catalog: Path,
    run_id: str,
    decision: registry.PromotionDecision,
    feature_version: str,
    *,
    bento_model_tag: str,
    online: bool,
    superseded: str | None,
) -> str:
    """Import the challenger into BentoML, build the Bento, then move ``champion`` to it (or,
    ``online``, start its experiment)."""
    return store.package_and_promote(
        runs.client(tracking_uri),
        decision,
        run_id=run_id,
        feature_version=feature_version,
        model_dir=model_dir,
        catalog=catalog,
        model_tag=bento_model_tag,
        online=online,
        superseded=superseded,
    )


@task(cache_policy=NO_CACHE)
def running_challenger(tracking_uri: str, name: str) -> str | None:
    """The version under online experiment, if one runs."""
    version = registry.running_challenger(runs.client(tracking_uri), name)
    return None if version is None else str(version.version)


@task(cache_policy=NO_CACHE)
def rollback(
    tracking_uri: str, name: str, catalog: Path, *, bento_model_tag: str
) -> dict[str, str]:
    """Package the previous champion and give it the alias back."""
    current, previous, bento_tag = store.rollback(
        runs.client(tracking_uri), name, catalog=catalog, model_tag=bento_model_tag
    )
    return {"from_version": current, "to_version": previous, "bento_tag": bento_tag}


@task
def publish_training_report(
    report: evaluation.EvaluationReport, decision: registry.PromotionDecision
) -> None:
    """The test metrics as a table artifact and the gate's decision as markdown."""
    create_table_artifact(
        runs.evaluation_table(report).to_dicts(),
        key="training-metrics",
        description=f"Test metrics at k={report.k} ({report.split}, seed {report.seed})",
    )
    create_markdown_artifact(decision.markdown(), key="promotion-decision")
