"""Promotion survives ``kill -9`` at every step and packaging failures (convention 17).

Real ``movierec train`` subprocesses on one deployment (SQLite MLflow, a BentoML home of its
own) are killed the moment a step's effect is visible (a run in MLflow, a registered version,
a model or Bento in the store, the alias moved); nothing in the code under test knows about the
test. The next run must leave the registry's ``champion`` and the store's latest model and
Bento naming the same version.

To have a challenger the gate promotes in every run, the runs alternate ``--k``: a champion
trained with another k logged no ``val_ndcg_at_<k>`` to compare with, so the gate promotes;
with the same k and the same data the metric ties, so it does not.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path

import pytest

from support.promotion import NAME, Deployment, Started, kill_when, taste_groups_zip, wait_for

pytestmark = [pytest.mark.integration, pytest.mark.slow]

TRAIN = ("train", "--trials", "1")
K5, K10 = (*TRAIN, "--k", "5"), (*TRAIN, "--k", "10")


@pytest.fixture
def deployment(prefect_harness: None, tmp_path: Path) -> Iterator[Deployment]:
    """Processed data and a champion v1 (k=5), packaged; flows use the session's Prefect server."""
    from prefect.settings import PREFECT_API_URL

    deployment = Deployment(tmp_path, prefect_api_url=PREFECT_API_URL.value())
    code, output = deployment.run(
        "data", "--no-crawl", "--ratings", str(taste_groups_zip(tmp_path / "ml-100k.zip"))
    )
    assert code == 0, output
    code, output = deployment.run(*K5)
    assert code == 0, output
    assert deployment.champion() == deployment.served_version("models") == "1"
    yield deployment


def _reconciled(started: Started) -> bool:
    """The run has reconciled (and not yet trained: its new version comes seconds later)."""
    return "Reconciled:" in started.output()


def _agree(deployment: Deployment, version: str) -> None:
    assert deployment.champion() == version
    assert deployment.served_version("models") == version
    assert deployment.served_version("bentos") == version


def test_a_kill_at_any_promotion_step_is_repaired_by_the_next_run(deployment: Deployment) -> None:
    # Killed while logging: the run is left RUNNING.
    killed = deployment.start(*K10)
    kill_when(killed, lambda: bool(deployment.runs("RUNNING")), interval=0.02)
    stale = deployment.runs("RUNNING")
    assert len(stale) == 1

    # Killed after registering v2, before packaging it.
    killed = deployment.start(*K10)
    kill_when(killed, lambda: deployment.versions() == 2, interval=0.02)
    assert set(stale) <= set(deployment.runs("FAILED"))  # the run's reconcile failed it
    _agree(deployment, "1")  # nothing to repair

    # Killed after importing v3, while building its Bento: the store's latest model is v3.
    killed = deployment.start(*K10)
    kill_when(
        killed,
        lambda: (
            deployment.served_version("models") == "3"
            and any((deployment.bentoml_home / "tmp").glob("bentoml_bento_*"))
        ),
    )
    assert deployment.champion() == "1"
    leftovers = list((deployment.bentoml_home / "tmp").glob("bentoml_bento_*"))

    # Killed after building v4's Bento, before the alias moved: a competing MLflow writer
    # holds the run's next write (it follows the build at once) until the kill.
    killed = deployment.start(*K10)
    wait_for(killed, lambda: _reconciled(killed), interval=0.02)
    _agree(deployment, "1")  # the reconcile at the start of the run repackaged v1 ...
    assert not any(path.exists() for path in leftovers)  # ... and removed the build's tmp dir
    wait_for(killed, lambda: deployment.served_version("models") == "4")
    with deployment.mlflow_writes_held():
        kill_when(killed, lambda: deployment.served_version("bentos") == "4")
    assert deployment.champion() == "1"
    assert deployment.served_version("models") == "4"

    # Killed after moving the alias to v5 (the last step).
    killed = deployment.start(*K10)
    wait_for(killed, lambda: _reconciled(killed), interval=0.02)
    _agree(deployment, "1")
    kill_when(killed, lambda: deployment.champion() == "5", interval=0.01)

    # A run whose challenger v6 does not beat champion v5 (same k, same data): nothing is
    # promoted, and everything names v5.
    code, output = deployment.run(*K10)
    assert code == 0, output
    assert "v6: challenger" in output
    _agree(deployment, "5")
    assert deployment.runs("RUNNING") == []


def test_a_packaging_failure_leaves_the_champion_where_it_was(deployment: Deployment) -> None:
    # The catalog moves on without movie 2; a run on v1's (pinned) feature version still
    # knows movie 2, so its model cannot be served with this catalog.
    client = deployment.client()
    features = client.get_run(client.get_model_version(NAME, "1").run_id).data.params
    without_2 = taste_groups_zip(deployment.root / "without-2.zip", without=2)
    assert deployment.run("data", "--no-crawl", "--ratings", str(without_2))[0] == 0

    # the gate passes v2: the champion logged no val_ndcg_at_10 to beat
    code, output = deployment.run(*K10, "--feature-version", features["feature_version"])

    assert code == 2
    _agree(deployment, "1")
    assert (
        "v2 passed the promotion gate but packaging it for serving failed (catalog lacks "
        "1 movie(s) the model recommends, e.g. [2]); champion stays v1." in output
    )
    assert str(client.get_model_version_by_alias(NAME, "challenger").version) == "2"
    assert client.get_model_version(NAME, "2").tags["promoted"] == "false"
    run = client.get_run(client.get_model_version(NAME, "2").run_id)
    assert run.data.tags["promotion.promoted"] == "false"
    assert "catalog lacks" in run.data.tags["promotion.reason"]


def test_a_kill_at_any_step_of_an_online_promotion_is_repaired(deployment: Deployment) -> None:
    online = replace(deployment, settings={"MOVIEREC_PROMOTION": "online"})

    # Killed after importing v2 as the challenger, before its experiment was recorded: the
    # next run removes it (no experiment runs) and starts its own, v3's.
    killed = online.start(*K10)
    kill_when(killed, lambda: online.challenger()[0] == "2")
    code, output = online.run(*K10)
    assert code == 0, output
    assert "v3 is the challenger of an experiment against champion v1" in output
    _agree(online, "1")
    assert online.challenger() == ("3", "3")

    # Promotion killed after importing v3 as the champion's model: the reconcile puts v1 back
    # and the experiment still runs, with v3 as the challenger.
    killed = online.start_step("end-experiment", "promote")
    kill_when(killed, lambda: online.served_version("models") == "3")
    assert online.champion() == "1"
    code, output = online.run_step("reconcile")
    assert code == 0, output
    _agree(online, "1")
    assert online.challenger() == ("3", "3")

    # Killed after moving champion (the last step, before the outcome tag): v3 is served alone.
    killed = online.start_step("end-experiment", "promote")
    kill_when(killed, lambda: online.champion() == "3", interval=0.01)
    code, output = online.run_step("reconcile")
    assert code == 0, output
    _agree(online, "3")
    assert online.challenger() == (None, None)

    # Rollback, killed after packaging v1: v3 stays champion and served; the next one finishes.
    killed = online.start("rollback")
    with online.mlflow_writes_held():  # its next write, the alias, waits until the kill
        kill_when(killed, lambda: online.served_version("bentos") == "1")
    assert online.champion() == "3"
    code, output = online.run_step("reconcile")
    assert code == 0, output
    _agree(online, "3")
    code, output = online.run("rollback")
    assert code == 0, output
    assert "champion v3 -> v1" in output
    _agree(online, "1")
