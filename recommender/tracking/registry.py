"""The MLflow model registry: aliases, the promotion gate and loading the champion.

Registry aliases, not the deprecated stages: every registered version becomes ``challenger``;
it takes ``champion`` only through :func:`promote`, after :func:`register_challenger`'s gate
passed it and its model was packaged for serving.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import mlflow
import requests
from mlflow.entities.model_registry import ModelVersion
from mlflow.exceptions import MlflowException
from mlflow.tracking import MlflowClient

from recommender.modeling.als import ALSRecommender
from recommender.tracking.runs import MODEL_DIR_ARTIFACT

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
    version = champion_version(client, name)
    if version is None:
        return None, None
    value = client.get_run(version.run_id).data.metrics.get(metric) if version.run_id else None
    return version.version, value


def register_challenger(
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
    """Register ``model_uri`` as ``challenger`` and let the gate decide on ``champion``.

    The challenger is to be promoted when there is no champion, when the champion has no
    validation ndcg@k to compare with, or when ``validation_ndcg > champion_ndcg + margin``.
    The alias ``champion`` does not move here: the caller packages the model first and then
    calls :func:`promote` (convention 17). The decision is logged to the run
    (``promotion/decision.json``). If any registry call fails after the version was created, the
    version is deleted again, so no half-registered model stays behind.
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
        if not promoted:
            _record_outcome(client, decision, run_id, promoted=False, reason=reason)
    except (MlflowException, OSError, requests.RequestException):
        client.delete_model_version(name, version)
        if champion_version is not None:  # deleting the version took any alias it had
            client.set_registered_model_alias(name, CHAMPION, champion_version)
        raise
    return decision


def _record_outcome(
    client: MlflowClient, decision: PromotionDecision, run_id: str, *, promoted: bool, reason: str
) -> None:
    client.set_tag(run_id, "promotion.promoted", str(promoted).lower())
    client.set_tag(run_id, "promotion.reason", reason)
    client.set_model_version_tag(
        decision.registered_model, decision.version, "promoted", str(promoted).lower()
    )


def promote(client: MlflowClient, decision: PromotionDecision, run_id: str) -> None:
    """Move ``champion`` to the decided version (its model is packaged by now) and record it."""
    move_champion(client, decision.registered_model, decision.version)
    _record_outcome(client, decision, run_id, promoted=True, reason=decision.reason)


def record_packaging_failure(
    client: MlflowClient, decision: PromotionDecision, run_id: str, error: Exception
) -> str:
    """Record on the run and the version that the gate passed it but packaging failed.

    ``champion`` stays where it was; the version stays registered as ``challenger``. Returns
    the message recorded.
    """
    champion = f"v{decision.champion_version}" if decision.champion_version else "none"
    reason = (
        f"v{decision.version} passed the promotion gate but packaging it for serving failed "
        f"({error}); champion stays {champion}."
    )
    _record_outcome(client, decision, run_id, promoted=False, reason=reason)
    return reason


def champion_version(client: MlflowClient, name: str) -> ModelVersion | None:
    """The version holding ``champion``, or None when there is none (or no registered model)."""
    try:
        return client.get_model_version_by_alias(name, CHAMPION)
    except MlflowException as exc:
        if exc.error_code in ("RESOURCE_DOES_NOT_EXIST", "INVALID_PARAMETER_VALUE"):
            return None
        raise


def download_model_dir(version: ModelVersion, target: Path) -> Path:
    """Download the saved recommender directory of a registered version under ``target``."""
    local = mlflow.artifacts.download_artifacts(
        artifact_uri=f"models:/{version.name}/{version.version}", dst_path=str(target)
    )
    pyfunc = mlflow.models.Model.load(local).flavors["python_function"]
    return Path(local) / pyfunc["artifacts"][MODEL_DIR_ARTIFACT]["path"]


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
    version = _champion_version(client, name)
    pyfunc = mlflow.pyfunc.load_model(f"models:/{name}/{version.version}")
    return Champion(
        registered_model=name,
        version=str(version.version),
        run_id=version.run_id or "",
        model=pyfunc.unwrap_python_model().model,
    )


def champion_lineage(client: MlflowClient, name: str) -> dict[str, str]:
    """The champion's ``version``, ``run_id`` and the ``feature_version`` it was trained on,
    without loading the model.

    Raises:
        NoChampionError: No version holds the alias (train a model first).
    """
    version = _champion_version(client, name)
    run_id = version.run_id or ""
    params = client.get_run(run_id).data.params if run_id else {}
    return {
        "version": str(version.version),
        "run_id": run_id,
        "feature_version": params.get("feature_version", ""),
    }


def _champion_version(client: MlflowClient, name: str) -> ModelVersion:
    version = champion_version(client, name)
    if version is None:
        raise NoChampionError(
            f"registered model {name!r} has no {CHAMPION!r} version at {client.tracking_uri}; "
            "run the training flow (movierec train) first"
        )
    return version


PREVIOUS_CHAMPION_TAG = "previous_champion"
"""A version tag: the version that was champion when this one took the alias (for rollback)."""


def move_champion(client: MlflowClient, name: str, version: str) -> None:
    """Give ``version`` the ``champion`` alias, remembering on it which version had it."""
    previous = champion_version(client, name)
    if previous is not None and str(previous.version) != str(version):
        client.set_model_version_tag(name, version, PREVIOUS_CHAMPION_TAG, str(previous.version))
    client.set_registered_model_alias(name, CHAMPION, version)


def previous_champion(client: MlflowClient, name: str) -> ModelVersion:
    """The version the current champion took the alias from (what a rollback returns to).

    Raises:
        NoChampionError: There is no champion, or it never replaced another version.
    """
    champion = _champion_version(client, name)
    previous = champion.tags.get(PREVIOUS_CHAMPION_TAG)
    if not previous:
        raise NoChampionError(
            f"champion v{champion.version} of {name!r} replaced no earlier version: there is "
            "nothing to roll back to"
        )
    return client.get_model_version(name, previous)


EXPERIMENT_TAG = "experiment"
"""A version tag: ``running`` while the version is the challenger of an online experiment, then
the outcome (``promoted``, ``kept champion``, ``ended by rollback``)."""
RUNNING = "running"


def start_experiment(client: MlflowClient, decision: PromotionDecision, run_id: str) -> None:
    """Record that the registered challenger now runs against the champion online (its model is
    packaged beside the champion's by now); the monitoring flow decides from here."""
    client.set_model_version_tag(
        decision.registered_model, decision.version, EXPERIMENT_TAG, RUNNING
    )
    client.set_registered_model_alias(decision.registered_model, CHALLENGER, decision.version)
    client.set_tag(run_id, "promotion.mode", "online")
    client.set_tag(
        run_id,
        "promotion.reason",
        f"online promotion: v{decision.version} runs as challenger against champion "
        f"v{decision.champion_version}; the experiment decides (offline gate: {decision.reason})",
    )


def running_challenger(client: MlflowClient, name: str) -> ModelVersion | None:
    """The version under online experiment: the ``challenger`` alias, when that version is
    tagged :data:`RUNNING` and is not the champion; else None."""
    try:
        version = client.get_model_version_by_alias(name, CHALLENGER)
    except MlflowException as exc:
        if exc.error_code in ("RESOURCE_DOES_NOT_EXIST", "INVALID_PARAMETER_VALUE"):
            return None
        raise
    champion = champion_version(client, name)
    if version.tags.get(EXPERIMENT_TAG) != RUNNING:
        return None
    if champion is not None and str(champion.version) == str(version.version):
        return None
    return version


def end_experiment(client: MlflowClient, name: str, version: str, outcome: str) -> None:
    """Tag the challenger with the experiment's ``outcome`` and take its ``challenger`` alias
    (when the alias still points at it: a newer challenger keeps it)."""
    client.set_model_version_tag(name, version, EXPERIMENT_TAG, outcome)
    try:
        holder = client.get_model_version_by_alias(name, CHALLENGER)
    except MlflowException as exc:  # already gone: a rerun after a kill
        if exc.error_code in ("RESOURCE_DOES_NOT_EXIST", "INVALID_PARAMETER_VALUE"):
            return
        raise
    if str(holder.version) == str(version):
        client.delete_registered_model_alias(name, CHALLENGER)
