"""Put trained models into the BentoML model store and build the Bento, both offline.

:func:`import_model` stores a model, :func:`build_bento` packages the service with the model
the service loads (``Settings.bento_model_tag``, by default ``movie-recommender:latest``) as
``bentofile.yaml`` describes; ``$BENTOML_HOME`` (default ``~/bentoml``) holds both stores. The
served-model format is :mod:`recommender.serving.bundle`.

Promotion is resumable (convention 17, docs/promotion.md): :func:`package_and_promote` packages
the challenger first and moves the registry's ``champion`` alias last, and
:func:`reconcile_serving`, run at the start of every training run, packages the champion again
whenever the store's latest model or Bento is not the champion, so a run killed (or failed) at
any step leaves nothing that the next run does not repair.
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
from mlflow.tracking import MlflowClient

from recommender.serving.bundle import (
    MODEL_VERSION_LABEL,
    RUN_ID_LABEL,
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
    loads) and, as its own labels, that model's labels updated with ``labels``.

    Returns:
        The Bento's tag, ``name:version``.
    """
    model = bentoml.models.get(model_tag)
    bento = bentoml.bentos.build_bentofile(
        str(bentofile),
        build_ctx=str(bentofile.parent),
        version=version,
        labels={**model.info.labels, **(labels or {})},
    )
    return str(bento.tag)


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
    are touched. (A model is staged in the system's temporary directory, shared with other
    processes that may be importing right now: that is left to the system's cleaner.)

    Returns:
        The paths removed.
    """
    model_name = bentoml.Tag.from_taglike(model_tag).name
    bento_name = _bento_name(bentofile)
    home = Path(BentoMLContainer.bentoml_home.get())
    leftovers = [
        *(home / "tmp").glob(f"bentoml_bento_{bento_name}*"),
        *(
            entry
            for entry in (home / "models" / model_name).glob("*")
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
) -> str:
    """Import the model (it becomes the store's latest) and build the Bento; returns its tag.

    When the build fails the imported model is deleted again, so the store's latest model is
    what it was before.
    """
    imported = import_model(model_dir, catalog, labels=labels, metadata=metadata)
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
) -> str:
    """Package the challenger the gate passed, then move ``champion`` to it; returns the Bento tag.

    Raises:
        PackagingError: The model could not be imported or the Bento not built (e.g. the
            catalog lacks a movie the model recommends); ``champion`` stays where it was and
            the run and version are tagged with the reason.
    """
    labels = lineage_labels(
        model_version=decision.version, run_id=run_id, feature_version=feature_version
    )
    with promotion_lock():
        try:
            bento_tag = package(
                model_dir,
                catalog,
                labels=labels,
                metadata={"validation_ndcg": decision.challenger_ndcg},
                model_tag=model_tag,
            )
        except (BentoMLException, OSError, ValueError) as exc:
            reason = registry.record_packaging_failure(client, decision, run_id, exc)
            raise PackagingError(reason) from exc
        client.set_tag(run_id, "bento_tag", bento_tag)
        registry.promote(client, decision, run_id)  # last: the champion is servable by now
    return bento_tag


def reconcile_serving(
    client: MlflowClient, name: str, *, catalog: Path, model_tag: str
) -> tuple[list[Path], str | None]:
    """Make the store's latest model and Bento the registry's champion again, if they are not.

    Removes the leftovers of a killed import or build (:func:`clean_leftovers`), then compares
    the lineage labels (model version and run id) of the model the service loads and of the
    latest Bento with the ``champion`` version. On a mismatch the champion's model is fetched
    from the registry and packaged anew: the newest import is BentoML's ``latest`` (by creation
    time), so the store names the champion again.

    Returns:
        The leftovers removed, and the tag of the Bento built (None when nothing was packaged).
    """
    with promotion_lock():
        removed = clean_leftovers(model_tag=model_tag)
        champion = registry.champion_version(client, name)
        if champion is None:
            return removed, None
        wanted = {MODEL_VERSION_LABEL: str(champion.version), RUN_ID_LABEL: champion.run_id}
        if all(
            {key: labels.get(key) for key in wanted} == wanted
            for labels in served_labels(model_tag=model_tag)
        ):
            return removed, None
        with tempfile.TemporaryDirectory(prefix="movierec-champion-") as scratch:
            bento_tag = package(
                registry.download_model_dir(champion, Path(scratch)),
                catalog,
                labels=lineage_labels(
                    model_version=champion.version,
                    run_id=champion.run_id or "",
                    feature_version=champion.tags.get("feature_version", ""),
                ),
                metadata={"reconciled": True},
                model_tag=model_tag,
            )
    client.set_tag(champion.run_id, "bento_tag", bento_tag)
    return removed, bento_tag
