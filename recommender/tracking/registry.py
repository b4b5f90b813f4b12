"""The MLflow model registry: aliases, the promotion gate and loading the champion.

Registry aliases, not the deprecated stages: every registered version becomes ``challenger``;
it takes ``champion`` only through :func:`register_and_promote`.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

import mlflow
import requests
from mlflow.exceptions import MlflowException
from mlflow.tracking import MlflowClient

from recommender.modeling.als import ALSRecommender

CHAMPION = "champion"
CHALLENGER = "challenger"


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
