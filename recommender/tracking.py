"""MLflow tracking, the model registry and the promotion gate.

The embedded default is a SQLite tracking store under ``<data_dir>/mlflow`` with a local
artifact root beside it; ``MLFLOW_TRACKING_URI`` (setting ``mlflow_tracking_uri``) points at a
real ``mlflow server`` instead. Registry aliases, not the deprecated stages: every registered
version becomes ``challenger``; it takes ``champion`` only through :func:`register_and_promote`.
"""

from __future__ import annotations

import importlib.metadata
import os
import warnings
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import mlflow
import polars as pl
import requests
from matplotlib.figure import Figure
from mlflow.data.dataset_source import DatasetSource
from mlflow.data.dataset_source_registry import get_registered_sources
from mlflow.exceptions import MlflowException
from mlflow.models import ModelSignature
from mlflow.tracking import MlflowClient
from mlflow.types import ColSpec, ParamSchema, ParamSpec, Schema

from recommender.evaluation import EvaluationReport
from recommender.model import ALSRecommender
from recommender.settings import Settings

CHAMPION = "champion"
CHALLENGER = "challenger"
MODEL_CODE = Path(__file__).with_name("mlflow_model.py")
PACKAGE_DIR = Path(__file__).resolve().parent
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
_MLFLOW_ADVICE = (".*An input example was not provided", ".*Add type hints to the `predict`")
_REQUIREMENTS = ("implicit", "numpy", "scipy", "polars", "pandas", "pyarrow", "mlflow")


class TrackingUnavailableError(ConnectionError):
    """The MLflow tracking server cannot be reached."""


@dataclass(frozen=True)
class PromotionDecision:
    """The gate's verdict on a challenger, as logged to MLflow and shown in Prefect."""

    registered_model: str
    version: str
    promoted: bool
    reason: str
    challenger_ndcg: float
    champion_version: str | None
    champion_ndcg: float | None
    margin: float

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    def markdown(self) -> str:
        """A short markdown report of the decision."""
        verdict = "promoted to **champion**" if self.promoted else "kept as **challenger**"
        champion = (
            f"v{self.champion_version} ({self.champion_ndcg:.4f})"
            if self.champion_version is not None and self.champion_ndcg is not None
            else "none"
        )
        return (
            f"# Promotion gate: {self.registered_model} v{self.version} {verdict}\n\n"
            f"| challenger validation ndcg | champion before | margin |\n|---|---|---|\n"
            f"| {self.challenger_ndcg:.4f} | {champion} | {self.margin} |\n\n"
            f"{self.reason}\n"
        )


def tracking_uri(settings: Settings) -> str:
    """The configured tracking URI, or the embedded SQLite store under the data dir."""
    if settings.mlflow_tracking_uri:
        return settings.mlflow_tracking_uri
    return f"sqlite:///{(settings.data_dir / 'mlflow' / 'mlflow.db').resolve()}"


def connect(settings: Settings) -> MlflowClient:
    """Point MLflow at the configured store, select the experiment and return a client.

    Raises:
        TrackingUnavailableError: An http(s) tracking server does not answer its health check.
    """
    uri = tracking_uri(settings)
    os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")
    if uri.startswith(("http://", "https://")):
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
    if client.get_experiment_by_name(settings.mlflow_experiment) is None:
        artifact_location = None
        if not uri.startswith(("http://", "https://")):
            artifact_location = (settings.data_dir / "mlflow" / "artifacts").resolve().as_uri()
        client.create_experiment(settings.mlflow_experiment, artifact_location=artifact_location)
    mlflow.set_experiment(settings.mlflow_experiment)
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
) -> tuple[str, str]:
    """Log one training run: params, metrics, evaluation, plots, inputs and the pyfunc model.

    Args:
        report: The evaluation (tuning on validation, scores on test).
        model_dir: The saved :class:`~recommender.model.ALSRecommender` trained for serving.
        feature_version: The feature store version the model was trained on.
        features: The interaction features (only their schema and size are logged).
        feature_path: Where the feature version lives.
        data_manifest: The processed data manifest the features were built from.
        params: Further run parameters (split, seed, trials, ...). Never pass secrets.

    Returns:
        ``(run_id, model_uri)`` of the logged run and model.
    """
    k = report.k
    with mlflow.start_run(run_name=f"als-{feature_version}") as run:
        mlflow.log_params(
            {
                **params,
                **{f"als_{key}": value for key, value in report.best_config.to_dict().items()},
                "k": k,
                "feature_version": feature_version,
                "data_content_hash": data_manifest.get("content_hash", ""),
            }
        )
        metrics = {f"val_ndcg_at_{k}": report.validation_ndcg}
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
                artifacts={"model_dir": str(model_dir)},
                code_paths=[str(PACKAGE_DIR)],
                signature=PYFUNC_SIGNATURE,
                pip_requirements=_pip_requirements(),
            )
    return run.info.run_id, info.model_uri


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


def _champion(client: MlflowClient, name: str, metric: str) -> tuple[str | None, float | None]:
    try:
        version = client.get_model_version_by_alias(name, CHAMPION)
    except MlflowException as exc:
        if exc.error_code in ("RESOURCE_DOES_NOT_EXIST", "INVALID_PARAMETER_VALUE"):
            return None, None
        raise
    value = client.get_run(version.run_id).data.metrics.get(metric) if version.run_id else None
    return version.version, value


def register_and_promote(
    client: MlflowClient,
    *,
    model_uri: str,
    run_id: str,
    name: str,
    validation_ndcg: float,
    k: int,
    margin: float,
    tags: dict[str, str] | None = None,
) -> PromotionDecision:
    """Register ``model_uri`` as ``challenger`` and let it take ``champion`` if it beats it.

    The challenger is promoted when there is no champion, when the champion has no validation
    ndcg@k to compare with, or when ``validation_ndcg > champion_ndcg + margin``. The decision
    is logged to the run (``promotion/decision.json`` and tags). If any registry call fails
    after the version was created, the version is deleted again, so no half-registered model
    stays behind.
    """
    metric = f"val_ndcg_at_{k}"
    champion_version, champion_ndcg = _champion(client, name, metric)
    version = mlflow.register_model(model_uri, name, tags=tags).version
    try:
        client.set_registered_model_alias(name, CHALLENGER, version)
        if champion_version is None:
            promoted, reason = True, "There was no champion: the first model becomes champion."
        elif champion_ndcg is None:
            promoted, reason = (
                True,
                (f"Champion v{champion_version} logged no {metric} to compare with: promoted."),
            )
        else:
            promoted = validation_ndcg > champion_ndcg + margin
            relation = "beats" if promoted else "does not beat"
            reason = (
                f"Validation ndcg@{k} {validation_ndcg:.4f} {relation} champion "
                f"v{champion_version}'s {champion_ndcg:.4f} by more than the margin {margin}."
            )
        if promoted:
            client.set_registered_model_alias(name, CHAMPION, version)
        decision = PromotionDecision(
            registered_model=name,
            version=str(version),
            promoted=promoted,
            reason=reason,
            challenger_ndcg=validation_ndcg,
            champion_version=champion_version,
            champion_ndcg=champion_ndcg,
            margin=margin,
        )
        client.log_dict(run_id, decision.to_dict(), "promotion/decision.json")
        client.set_tag(run_id, "promotion.promoted", str(promoted).lower())
        client.set_tag(run_id, "promotion.reason", reason)
        client.set_model_version_tag(name, version, "promoted", str(promoted).lower())
    except (MlflowException, OSError, requests.RequestException):
        client.delete_model_version(name, version)
        if champion_version is not None:  # deleting the version took any alias it had
            client.set_registered_model_alias(name, CHAMPION, champion_version)
        raise
    return decision


class NoChampionError(LookupError):
    """The registered model has no ``champion`` alias yet."""


@dataclass(frozen=True)
class Champion:
    """The champion model version and the recommender it wraps."""

    registered_model: str
    version: str
    run_id: str
    model: ALSRecommender


def load_champion(client: MlflowClient, name: str) -> Champion:
    """Load the ``champion`` version of ``name`` from the registry.

    Raises:
        NoChampionError: No version holds the alias (train a model first).
    """
    try:
        version = client.get_model_version_by_alias(name, CHAMPION)
    except MlflowException as exc:
        raise NoChampionError(
            f"registered model {name!r} has no {CHAMPION!r} version at {client.tracking_uri}; "
            "run the training flow (movierec train) first"
        ) from exc
    pyfunc = mlflow.pyfunc.load_model(f"models:/{name}/{version.version}")
    return Champion(
        registered_model=name,
        version=str(version.version),
        run_id=version.run_id or "",
        model=pyfunc.unwrap_python_model().model,
    )
