"""MLflow tracking: connecting to the store and logging a training run.

The embedded default is a SQLite tracking store under ``<data_dir>/mlflow`` with a local
artifact root beside it (``Settings.mlflow_uri``); ``MLFLOW_TRACKING_URI`` points at a real
``mlflow server`` instead. The registry and the promotion gate are in
:mod:`recommender.tracking.registry`.
"""

from __future__ import annotations

import importlib.metadata
import os
import socket
import time
import warnings
from pathlib import Path
from typing import Any

import mlflow
import polars as pl
import requests
from matplotlib.figure import Figure
from mlflow.data.dataset_source import DatasetSource
from mlflow.data.dataset_source_registry import get_registered_sources
from mlflow.models import ModelSignature
from mlflow.tracking import MlflowClient
from mlflow.types import ColSpec, ParamSchema, ParamSpec, Schema

from recommender.modeling.evaluation import EvaluationReport

MODEL_CODE = Path(__file__).with_name("pyfunc.py")
PACKAGE_DIR = (
    Path(__file__).resolve().parent.parent
)  # the recommender package travels with the model
PYFUNC_SIGNATURE = ModelSignature(
    inputs=Schema([ColSpec("long", "user_id")]),
    outputs=Schema(
        [
            ColSpec("long", "user_id"),
            ColSpec("long", "rank"),
            ColSpec("long", "movie_id"),
            ColSpec("double", "score"),
            ColSpec("boolean", "fallback"),
        ]
    ),
    params=ParamSchema([ParamSpec("k", "long", 10)]),
)
MODEL_DIR_ARTIFACT = "model_dir"  # the pyfunc's artifact holding the saved recommender
# Who runs a training run: how the next run tells a run killed mid-log from a concurrent one.
HOST_TAG, PID_TAG = "movierec.host", "movierec.pid"
_MLFLOW_ADVICE = (".*An input example was not provided", ".*Add type hints to the `predict`")
_REQUIREMENTS = ("implicit", "numpy", "scipy", "polars", "pandas", "pyarrow", "mlflow")


class TrackingUnavailableError(ConnectionError):
    """The MLflow tracking server cannot be reached."""


def connect(uri: str, *, experiment: str, artifact_root: Path | None = None) -> MlflowClient:
    """Point MLflow at the tracking store ``uri``, select ``experiment`` and return a client.

    Args:
        uri: An ``http(s)://`` tracking server or a ``sqlite:///`` file (``Settings.mlflow_uri``).
        experiment: The experiment to log to; created when missing.
        artifact_root: Where a new experiment of a local store keeps its artifacts (a server
            chooses its own).

    Raises:
        TrackingUnavailableError: An http(s) tracking server does not answer its health check.
    """
    remote = uri.startswith(("http://", "https://"))
    if remote:
        try:
            requests.get(f"{uri.rstrip('/')}/health", timeout=5).raise_for_status()
        except requests.RequestException as exc:
            raise TrackingUnavailableError(
                f"the MLflow tracking server at {uri} is unreachable ({exc}); start it or fix "
                "MLFLOW_TRACKING_URI"
            ) from exc
    elif uri.startswith("sqlite:///"):
        Path(uri.removeprefix("sqlite:///")).parent.mkdir(parents=True, exist_ok=True)
    mlflow.set_tracking_uri(uri)
    client = MlflowClient(uri)
    if client.get_experiment_by_name(experiment) is None:
        location = None if remote or artifact_root is None else artifact_root.resolve().as_uri()
        client.create_experiment(experiment, artifact_location=location)
    mlflow.set_experiment(experiment)
    return client


def metrics_figure(report: EvaluationReport) -> Figure:
    """Precision, recall and NDCG against k for every evaluated model."""
    curves = report.to_dict()["curves"]
    ks = curves["k"]
    figure = Figure(figsize=(12, 3.6), layout="constrained")
    for axis, metric in zip(figure.subplots(1, 3), ("precision", "recall", "ndcg"), strict=True):
        for model in report.models:
            axis.plot(ks, curves[model][metric], marker=".", label=model)
        axis.axvline(report.k, color="grey", linewidth=0.5)
        axis.set(title=f"{metric}@k", xlabel="k")
        axis.grid(alpha=0.3)
    figure.axes[0].legend()
    return figure


def _local_source(path: Path) -> DatasetSource:
    # MLflow 3.17 registers its local-file source class twice, so resolving a plain path warns
    # that it is ambiguous; pick the class directly.
    source_class = next(
        cls for cls in get_registered_sources() if cls._get_source_type() == "local"
    )
    return source_class(str(path))


def _pip_requirements() -> list[str]:
    return [f"{name}=={importlib.metadata.version(name)}" for name in _REQUIREMENTS]


def log_training_run(
    *,
    report: EvaluationReport,
    model_dir: Path,
    feature_version: str,
    features: pl.DataFrame,
    feature_path: Path,
    data_manifest: dict[str, Any],
    params: dict[str, Any],
    validation_ndcg: float | None = None,
) -> tuple[str, str]:
    """Log one training run: params, metrics, evaluation, plots, inputs and the pyfunc model.

    Args:
        report: The evaluation (tuning on validation, scores on test).
        model_dir: The saved :class:`~recommender.modeling.als.ALSRecommender` trained for serving.
        feature_version: The feature store version the model was trained on.
        features: The interaction features (only their schema and size are logged).
        feature_path: Where the feature version lives.
        data_manifest: The processed data manifest the features were built from.
        params: Further run parameters (split, seed, trials, ...). Never pass secrets.
        validation_ndcg: The logged model's validation ndcg@k (``val_ndcg_at_<k>``, what the
            promotion gate compares); default: the tuned ALS configuration's.

    Returns:
        ``(run_id, model_uri)`` of the logged run and model.
    """
    k = report.k
    owner = {HOST_TAG: socket.gethostname(), PID_TAG: str(os.getpid())}
    with mlflow.start_run(run_name=f"als-{feature_version}", tags=owner) as run:
        mlflow.log_params(
            {
                **params,
                **{f"als_{key}": value for key, value in report.best_config.to_dict().items()},
                "k": k,
                "feature_version": feature_version,
                "data_content_hash": data_manifest.get("content_hash", ""),
            }
        )
        validation = report.validation_ndcg if validation_ndcg is None else validation_ndcg
        metrics = {f"val_ndcg_at_{k}": validation}
        for model, scores in report.to_dict()["models"].items():
            for metric in ("precision", "recall", "ndcg", "map", "coverage"):
                metrics[f"test_{model}_{metric}_at_{k}"] = scores[metric]
        mlflow.log_metrics(metrics)
        mlflow.log_dict(report.to_dict(), "evaluation/report.json")
        mlflow.log_text(evaluation_table(report).write_csv(), "evaluation/metrics.csv")
        mlflow.log_figure(metrics_figure(report), "evaluation/metrics_at_k.png")
        mlflow.log_dict(data_manifest, "data/manifest.json")
        mlflow.log_input(
            mlflow.data.from_polars(
                features.head(0),
                source=_local_source(feature_path),
                name="features",
                digest=feature_version,
            ),
            context="training",
        )
        with warnings.catch_warnings():
            # MLflow advises an input example and type hints on predict; the explicit
            # signature covers both (and its example handling trips over pandas 3).
            for advice in _MLFLOW_ADVICE:
                warnings.filterwarnings("ignore", message=advice, category=UserWarning)
            info = mlflow.pyfunc.log_model(
                name="model",
                python_model=str(MODEL_CODE),
                artifacts={MODEL_DIR_ARTIFACT: str(model_dir)},
                code_paths=[str(PACKAGE_DIR)],
                signature=PYFUNC_SIGNATURE,
                pip_requirements=_pip_requirements(),
            )
    return run.info.run_id, info.model_uri


def _process_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # it exists, under another user
        return True
    return True


def fail_stale_runs(client: MlflowClient, experiment: str, *, max_age_hours: float) -> list[str]:
    """Mark the experiment's ``RUNNING`` runs whose process is gone ``FAILED``; returns their ids.

    A run is stale when it was started on this host (tag ``movierec.host``) by a process
    (``movierec.pid``) that no longer exists, e.g. a training run killed while it logged.
    A run started elsewhere (another pod) cannot be checked that way: it is stale once it has
    been running longer than ``max_age_hours``, far longer than any training run takes. A
    running process is never touched, so a concurrent training run keeps its run. (A pid reused
    by a new process keeps a dead run ``RUNNING`` until it reaches the age limit.)
    """
    found = client.get_experiment_by_name(experiment)
    if found is None:
        return []
    host = socket.gethostname()
    cutoff_ms = (time.time() - max_age_hours * 3600) * 1000
    stale = []
    for run in client.search_runs(
        [found.experiment_id], filter_string="attributes.status = 'RUNNING'", max_results=1000
    ):
        tags = run.data.tags
        pid = tags.get(PID_TAG, "")
        same_host = tags.get(HOST_TAG) == host and pid.isdigit()
        if not _process_alive(int(pid)) if same_host else run.info.start_time < cutoff_ms:
            client.set_terminated(run.info.run_id, status="FAILED")
            stale.append(run.info.run_id)
    return stale


def evaluation_table(report: EvaluationReport) -> pl.DataFrame:
    """One row per model: precision, recall, ndcg, map and coverage at k."""
    rows = [
        {
            "model": model,
            **{m: scores[m] for m in ("precision", "recall", "ndcg", "map", "coverage")},
        }
        for model, scores in report.to_dict()["models"].items()
    ]
    return pl.DataFrame(rows)


def client(uri: str) -> MlflowClient:
    """A client of the tracking store ``uri`` that :func:`connect` already set up; MLflow's
    module-level calls (``mlflow.register_model``) go to the same store."""
    mlflow.set_tracking_uri(uri)
    return MlflowClient(uri)


def log_monitoring_run(
    *, metrics: dict[str, float], params: dict[str, str], files: list[Path]
) -> str:
    """Log one monitoring run (to the experiment :func:`connect` selected): the report's
    figures as metrics, what was monitored as params, and the report files as artifacts.

    Returns:
        The run id.
    """
    with mlflow.start_run(run_name=f"monitoring-v{params.get('champion_version', '')}") as run:
        mlflow.log_params(params)
        mlflow.log_metrics(metrics)
        for path in files:
            mlflow.log_artifact(str(path), artifact_path="report")
    return run.info.run_id
