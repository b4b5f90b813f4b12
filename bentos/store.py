"""Put trained models into the BentoML model store and build the Bento, both offline.

:func:`import_model` stores a model, :func:`build_bento` packages the service with the model
the service loads (``Settings.bento_model_tag``, by default ``movie-recommender:latest``) as
``bentofile.yaml`` describes; ``$BENTOML_HOME`` (default ``~/bentoml``) holds both stores. The
served-model format is :mod:`recommender.serving.bundle`.

Promotion is resumable (convention 17, docs/promotion.md): :func:`package_and_promote` packages
the challenger first and moves the registry's ``champion`` alias (or starts its online
experiment) last, :func:`end_experiment` acts on an experiment's decision in the same order, and
:func:`reconcile_serving`, run at the start of every training run, packages the champion (and
the challenger under experiment) again whenever the store's latest model or Bento is not it,
so a run killed (or failed) at any step leaves nothing that the next run does not repair.
"""

from __future__ import annotations

import fcntl
import shutil
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import bentoml
import yaml
from bentoml._internal.configuration.containers import BentoMLContainer
from bentoml.exceptions import BentoMLException, NotFound
from mlflow.entities.model_registry import ModelVersion
from mlflow.tracking import MlflowClient

from recommender.serving.bundle import (
    CATALOG_FILE,
    MODEL_DIR,
    MODEL_VERSION_LABEL,
    RUN_ID_LABEL,
    challenger_tag,
    check_labels,
    lineage_labels,
    read_bundle,
    write_bundle,
)
from recommender.settings import PROJECT_ROOT, REGISTERED_MODEL_NAME
from recommender.tracking import registry

BENTOFILE = PROJECT_ROOT / "bentofile.yaml"


def import_model(
    model_dir: Path,
    catalog: Path,
    *,
    name: str = REGISTERED_MODEL_NAME,
    labels: dict[str, str],
    metadata: dict[str, Any],
) -> str:
    """Store a saved recommender and its catalog as a new version of BentoML model ``name``.

    The copy is read back the way the service reads it before it is saved, so the store never
    holds a model the service cannot serve.

    Args:
        model_dir: A directory written by ``ALSRecommender.save``.
        catalog: The catalog parquet the model was trained with; it must hold every movie the
            model knows.
        name: The BentoML model name.
        labels: Lineage (``recommender.serving.bundle.lineage_labels``).
        metadata: Anything JSON-like worth keeping with the model, e.g. its metrics.

    Returns:
        The new model's tag, ``name:version``.

    Raises:
        ValueError: A required label is missing, or the catalog lacks a model movie.
        FileNotFoundError: ``model_dir`` or ``catalog`` is missing a file.
    """
    check_labels(labels)
    with bentoml.models.create(name, labels=labels, metadata=metadata) as bento_model:
        target = Path(bento_model.path)
        write_bundle(target, model_dir=model_dir, catalog=catalog)
        read_bundle(target)
    return str(bento_model.tag)


def build_bento(
    *,
    model_tag: str,
    bentofile: Path = BENTOFILE,
    version: str | None = None,
    labels: dict[str, str] | None = None,
) -> str:
    """Build the Bento ``bentofile`` describes (offline: packages are not locked).

    The Bento carries the model ``model_tag`` (``Settings.bento_model_tag``, which the service
    loads), the challenger under experiment when the store holds one
    (:func:`~recommender.serving.bundle.challenger_tag`), and, as its own labels, the champion
    model's labels updated with ``labels`` (plus the challenger's version).

    Returns:
        The Bento's tag, ``name:version``.
    """
    model = bentoml.models.get(model_tag)
    challenger = _challenger(model_tag)
    extra = {CHALLENGER_LABEL: challenger.info.labels[MODEL_VERSION_LABEL]} if challenger else {}
    config = yaml.safe_load(bentofile.read_text())
    if challenger:  # the Bento carries it too (the service refers only to the champion)
        config["models"] = [*config.get("models", []), str(challenger.tag)]
    with tempfile.TemporaryDirectory(prefix="movierec-bentofile-") as scratch:
        build_file = Path(scratch) / "bentofile.yaml"
        build_file.write_text(yaml.safe_dump(config))
        bento = bentoml.bentos.build_bentofile(
            str(build_file),
            build_ctx=str(bentofile.parent),
            version=version,
            labels={**model.info.labels, **extra, **(labels or {})},
        )
    return str(bento.tag)


CHALLENGER_LABEL = "challenger_version"
"""A Bento label: the version of the challenger it carries (absent when it carries none)."""


def _challenger(model_tag: str) -> bentoml.Model | None:
    try:
        return bentoml.models.get(challenger_tag(model_tag))
    except NotFound:
        return None


def remove_challengers(model_tag: str) -> int:
    """Delete every stored version of the challenger model; returns how many."""
    try:
        stored = bentoml.models.list(_model_name(challenger_tag(model_tag)))
    except NotFound:  # no version was ever stored
        return 0
    for model in stored:
        bentoml.models.delete(model.tag)
    return len(stored)


class PackagingError(ValueError):
    """A model passed the promotion gate but could not be packaged; ``champion`` did not move."""


@contextmanager
def promotion_lock() -> Iterator[None]:
    """Hold an exclusive lock on the BentoML home while packaging or cleaning it.

    Training runs sharing a BentoML home wait for each other here, so one run never removes
    another's temporary directories or interleaves its import and build with another's.
    """
    path = Path(BentoMLContainer.bentoml_home.get()) / "movierec-promotion.lock"
    with path.open("a") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)  # released when the file closes, or the process dies
        yield


def _bento_name(bentofile: Path) -> str:
    return str(yaml.safe_load(bentofile.read_text())["name"])


def clean_leftovers(*, model_tag: str, bentofile: Path = BENTOFILE) -> list[Path]:
    """Remove what an import or build killed midway left behind; call under :func:`promotion_lock`.

    BentoML stages a Bento in ``$BENTOML_HOME/tmp/bentoml_bento_<name>*`` and removes it
    when the process exits normally; a store entry (``models/<name>/<version>``,
    ``bentos/<name>/<version>``) is created before its files are copied in, and one without
    its ``model.yaml`` / ``bento.yaml`` breaks BentoML's listing. Only this project's names
    are touched (the champion's and the challenger's models). (A model is staged in the
    system's temporary directory, shared with other
    processes that may be importing right now: that is left to the system's cleaner.)

    Returns:
        The paths removed.
    """
    model_names = (_model_name(model_tag), _model_name(challenger_tag(model_tag)))
    bento_name = _bento_name(bentofile)
    home = Path(BentoMLContainer.bentoml_home.get())
    leftovers = [
        *(home / "tmp").glob(f"bentoml_bento_{bento_name}*"),
        *(
            entry
            for name in model_names
            for entry in (home / "models" / name).glob("*")
            if entry.is_dir() and not (entry / "model.yaml").is_file()
        ),
        *(
            entry
            for entry in (home / "bentos" / bento_name).glob("*")
            if entry.is_dir() and not (entry / "bento.yaml").is_file()
        ),
    ]
    for path in leftovers:
        shutil.rmtree(path, ignore_errors=True)
    return leftovers


def _labels(get: Any, tag: str) -> dict[str, str]:
    try:
        return dict(get(tag).info.labels)
    except NotFound:
        return {}


def served_labels(*, model_tag: str, bentofile: Path = BENTOFILE) -> tuple[dict, dict]:
    """The labels of the model the service loads and of the latest Bento (empty when absent)."""
    bento_tag = f"{_bento_name(bentofile)}:latest"
    return _labels(bentoml.models.get, model_tag), _labels(bentoml.bentos.get, bento_tag)


def package(
    model_dir: Path,
    catalog: Path,
    *,
    labels: dict[str, str],
    metadata: dict[str, Any],
    model_tag: str,
    name: str = REGISTERED_MODEL_NAME,
) -> str:
    """Import the model as BentoML model ``name`` (it becomes that name's latest) and build the
    Bento; returns its tag.

    When the build fails the imported model is deleted again, so the store's latest model is
    what it was before.
    """
    imported = import_model(model_dir, catalog, name=name, labels=labels, metadata=metadata)
    try:
        return build_bento(model_tag=model_tag)
    except (BentoMLException, OSError, ValueError):
        bentoml.models.delete(imported)
        raise


def package_and_promote(
    client: MlflowClient,
    decision: registry.PromotionDecision,
    *,
    run_id: str,
    feature_version: str,
    model_dir: Path,
    catalog: Path,
    model_tag: str,
    online: bool = False,
    superseded: str | None = None,
) -> str:
    """Package the registered challenger, then (last) move ``champion`` to it or, ``online``,
    start its experiment (docs/experiments.md); returns the Bento tag.

    Offline, the model is imported as the champion's BentoML model. Online, it is imported as
    the challenger beside the champion (:func:`~recommender.serving.bundle.challenger_tag`),
    replacing the challenger of an experiment that still runs (version ``superseded``, then
    tagged so), and the version is tagged ``experiment=running``.

    Raises:
        PackagingError: The model could not be imported or the Bento not built (e.g. the
            catalog lacks a movie the model recommends); ``champion`` stays where it was (and
            no experiment starts), and the run and version are tagged with the reason.
    """
    labels = lineage_labels(
        model_version=decision.version, run_id=run_id, feature_version=feature_version
    )
    name = _model_name(challenger_tag(model_tag) if online else model_tag)
    with promotion_lock():
        try:
            if online:
                remove_challengers(model_tag)
            bento_tag = package(
                model_dir,
                catalog,
                labels=labels,
                metadata={"validation_ndcg": decision.challenger_ndcg},
                model_tag=model_tag,
                name=name,
            )
        except (BentoMLException, OSError, ValueError) as exc:
            reason = registry.record_packaging_failure(client, decision, run_id, exc)
            raise PackagingError(reason) from exc
        if superseded is not None:
            registry.end_experiment(
                client, decision.registered_model, superseded, f"superseded by v{decision.version}"
            )
        client.set_tag(run_id, "bento_tag", bento_tag)
        # last: the model is servable by now
        if online:
            registry.start_experiment(client, decision, run_id)
        else:
            registry.promote(client, decision, run_id)
    return bento_tag


def _import_version(
    version: ModelVersion, catalog: Path, *, name: str, metadata: dict[str, Any]
) -> str:
    """Fetch a registered version's model and import it (with ``catalog``) as BentoML ``name``."""
    with tempfile.TemporaryDirectory(prefix="movierec-version-") as scratch:
        return import_model(
            registry.download_model_dir(version, Path(scratch)),
            catalog,
            name=name,
            labels=lineage_labels(
                model_version=version.version,
                run_id=version.run_id or "",
                feature_version=version.tags.get("feature_version", ""),
            ),
            metadata=metadata,
        )


def _model_name(tag: str) -> str:
    return bentoml.Tag.from_taglike(tag).name


def _is_version(labels: dict[str, str], version: ModelVersion | None) -> bool:
    if version is None:
        return not labels
    return (labels.get(MODEL_VERSION_LABEL), labels.get(RUN_ID_LABEL)) == (
        str(version.version),
        version.run_id,
    )


def reconcile_serving(
    client: MlflowClient, name: str, *, catalog: Path, model_tag: str
) -> tuple[list[Path], str | None]:
    """Make the store's latest model and Bento the registry's champion (and the challenger of
    a running experiment) again, if they are not.

    Removes the leftovers of a killed import or build (:func:`clean_leftovers`), then compares
    the lineage labels (model version and run id) of the model the service loads and of the
    latest Bento with the ``champion`` version, and the stored challenger with the version under
    experiment (:func:`~recommender.tracking.registry.running_challenger`; none when no
    experiment runs). On a mismatch the version's model is fetched from the registry and
    imported anew (the newest import is BentoML's ``latest``, by creation time) and the Bento
    rebuilt.

    Returns:
        The leftovers removed, and the tag of the Bento built (None when nothing was packaged).
    """
    with promotion_lock():
        removed = clean_leftovers(model_tag=model_tag)
        champion = registry.champion_version(client, name)
        if champion is None:
            return removed, None
        challenger = registry.running_challenger(client, name)
        model_labels, bento_labels = served_labels(model_tag=model_tag)
        champion_ok = _is_version(model_labels, champion) and _is_version(bento_labels, champion)
        stored_challenger = _challenger(model_tag)
        challenger_ok = _is_version(
            dict(stored_challenger.info.labels) if stored_challenger else {}, challenger
        ) and bento_labels.get(CHALLENGER_LABEL) == (challenger.version if challenger else None)
        if champion_ok and challenger_ok:
            return removed, None
        if not challenger_ok:
            remove_challengers(model_tag)
            if challenger is not None:
                _import_version(
                    challenger,
                    catalog,
                    name=_model_name(challenger_tag(model_tag)),
                    metadata={"reconciled": True},
                )
        if not champion_ok:
            _import_version(
                champion, catalog, name=_model_name(model_tag), metadata={"reconciled": True}
            )
        bento_tag = build_bento(model_tag=model_tag)
    client.set_tag(champion.run_id, "bento_tag", bento_tag)
    return removed, bento_tag


class ExperimentEndedError(LookupError):
    """The experiment to act on no longer runs; nothing was changed."""


def end_experiment(
    client: MlflowClient, name: str, challenger: ModelVersion, *, promote: bool, model_tag: str
) -> str:
    """Act on an experiment's decision; returns the tag of the Bento built.

    ``promote``: the challenger's stored model is imported as the champion's, the challenger
    removed, the Bento rebuilt, and ``champion`` moved last. Otherwise the challenger is removed
    and the Bento rebuilt with the champion alone. Either way the version is tagged with the
    outcome and loses the ``challenger`` alias. A kill at any step leaves what
    :func:`reconcile_serving` repairs: the experiment then still runs.

    Raises:
        ExperimentEndedError: The version's experiment no longer runs (a newer challenger
            superseded it, or it ended meanwhile).
        LookupError: ``promote`` but the store lacks the challenger's model (reconcile first).
    """
    with promotion_lock():
        running = registry.running_challenger(client, name)
        if running is None or str(running.version) != str(challenger.version):
            raise ExperimentEndedError(
                f"the experiment of v{challenger.version} no longer runs (now: "
                f"{'v' + str(running.version) if running else 'none'}); nothing was changed"
            )
        if promote:
            stored = _challenger(model_tag)
            if stored is None or not _is_version(dict(stored.info.labels), challenger):
                raise LookupError(
                    f"the BentoML store does not hold challenger v{challenger.version}; run "
                    "the reconcile (movierec train does) before promoting"
                )
            bundle = Path(stored.path)
            import_model(
                bundle / MODEL_DIR,
                bundle / CATALOG_FILE,
                name=_model_name(model_tag),
                labels=dict(stored.info.labels),
                metadata={"promoted_online": True},
            )
        remove_challengers(model_tag)
        bento_tag = build_bento(model_tag=model_tag)
        if promote:
            registry.move_champion(client, name, challenger.version)
        registry.end_experiment(
            client, name, challenger.version, "promoted" if promote else "kept champion"
        )
    return bento_tag


def rollback(
    client: MlflowClient, name: str, *, catalog: Path, model_tag: str
) -> tuple[str, str, str]:
    """Give ``champion`` back to the version it replaced, packaged first; an experiment that
    runs is ended (its challenger removed).

    Returns:
        The version rolled back from, the version now champion, and the Bento tag.

    Raises:
        NoChampionError: No champion, or it replaced no earlier version.
    """
    current = registry.champion_lineage(client, name)["version"]
    previous = registry.previous_champion(client, name)
    with promotion_lock():
        running = registry.running_challenger(client, name)
        remove_challengers(model_tag)
        _import_version(
            previous, catalog, name=_model_name(model_tag), metadata={"rolled_back_from": current}
        )
        bento_tag = build_bento(model_tag=model_tag)
        if running is not None:
            registry.end_experiment(client, name, running.version, "ended by rollback")
        # Not move_champion: the restored version keeps its own previous_champion, so a second
        # rollback goes one step further back rather than forth again.
        client.set_registered_model_alias(name, registry.CHAMPION, previous.version)
        client.set_model_version_tag(name, current, "rolled_back", "true")
    return current, str(previous.version), bento_tag
