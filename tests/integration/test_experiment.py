"""An online experiment end to end, on real components: models trained on the training part of
a MovieLens split, served side by side by ``bentoml serve``, a simulated audience (``movierec
simulate``) whose clicks follow its held-out movies, and the monitoring flow deciding, then
acting through the promotion sequence.

One registry lives through the scenarios, as it would in production:

1. champion = the popularity baseline (v1), challenger = tuned ALS (v2): ALS is promoted;
2. champion = ALS (v2), challenger = the popularity baseline (v3): the champion is kept, and,
   before that, the same data read with a share the service did not use is flagged as a
   sample-ratio mismatch (and decides nothing);
3. A/A: ALS (v2) against the same training again (v4): not promoted;
4. ``rollback``: champion goes back from v2 to v1, packaged first.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import bentoml
import pytest

from recommender.settings import PROJECT_ROOT, REGISTERED_MODEL_NAME
from support.servers import free_port, running_server

pytestmark = [pytest.mark.integration, pytest.mark.slow]

SHARE = "50"
REQUESTS = 2000


@pytest.fixture
def scenario(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """The settings of every step: online promotion and an ab experiment with a 50 % share."""
    for name, value in {
        "MOVIEREC_DATA_DIR": str(tmp_path / "data"),
        "MOVIEREC_TUNING_TRIALS": "1",
        "MOVIEREC_PROMOTION": "online",
        "MOVIEREC_EXPERIMENT_MODE": "ab",
        "MOVIEREC_EXPERIMENT_SHARE": SHARE,
    }.items():
        monkeypatch.setenv(name, value)
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    yield tmp_path
    # The session's BentoML store is shared with other tests: leave no challenger behind.
    from bentos.store import remove_challengers

    remove_challengers(f"{REGISTERED_MODEL_NAME}:latest")


def _stored_tag(version: str) -> str:
    """The BentoML tag of the newest stored champion model of registry ``version`` (the
    session's store holds other tests' models too; this test's imports are newer)."""
    models = [
        m
        for m in bentoml.models.list(REGISTERED_MODEL_NAME)
        if m.info.labels.get("model_version") == version
    ]
    return str(max(models, key=lambda m: m.info.creation_time).tag)


@contextmanager
def _serving(data_dir: Path, champion: str, log: Path) -> Iterator[str]:
    port = free_port()
    env = {
        **os.environ,
        "MOVIEREC_BENTO_MODEL_TAG": _stored_tag(champion),
        "MOVIEREC_FRONTEND_DIST": str(data_dir / "no-page"),
        # The simulated users are told apart by X-Forwarded-For, as behind the Ingress.
        "MOVIEREC_TRUSTED_PROXY_HOPS": "1",
    }
    command = [sys.executable, "-m", "bentoml", "serve", "bentos.service:MovieRecommender"]
    command += ["--host", "127.0.0.1", "--port", str(port)]
    with running_server(command, port=port, env=env, cwd=PROJECT_ROOT, log=log) as url:
        yield url


def _simulate(url: str, seed: int) -> dict[str, Any]:
    done = subprocess.run(
        [sys.executable, "-m", "flows.cli", "simulate", "--url", url, "--json"]
        + ["--requests", str(REQUESTS), "--seconds", "240", "--seed", str(seed)],
        capture_output=True,
        text=True,
        cwd=PROJECT_ROOT,
        timeout=300,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout.strip().splitlines()[-1])


def _experiment(champion: str, challenger: str, tmp: Path, seed: int) -> dict[str, Any]:
    """Serve the running experiment, let the audience use it, return what it did."""
    with _serving(tmp / "data", champion, tmp / f"serve-{challenger}.log") as url:
        result = _simulate(url, seed)
    assert result["requests"] == REQUESTS and result["errors"] == 0
    assert set(result["answers_per_model_version"]) == {champion, challenger}
    return result


def _registry() -> tuple[str, str | None]:
    from mlflow import MlflowClient

    from recommender.settings import get_settings
    from recommender.tracking import registry

    client = MlflowClient(get_settings().mlflow_uri)
    champion = registry.champion_version(client, REGISTERED_MODEL_NAME)
    challenger = registry.running_challenger(client, REGISTERED_MODEL_NAME)
    assert champion is not None
    return str(champion.version), None if challenger is None else str(challenger.version)


def _stored_challengers() -> list[str]:
    try:
        return [str(m.tag) for m in bentoml.models.list(f"{REGISTERED_MODEL_NAME}-challenger")]
    except bentoml.exceptions.NotFound:
        return []


def _served_bento() -> dict[str, str]:
    return dict(bentoml.bentos.get(f"{REGISTERED_MODEL_NAME}:latest").info.labels)


def test_the_experiment_promotes_the_better_model_keeps_the_champion_and_rolls_back(
    prefect_harness: None, scenario: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from flows.cli import main
    from flows.data_pipeline import data_pipeline
    from flows.monitoring import monitoring_flow
    from flows.rollback import rollback_flow
    from flows.training import training_flow

    train_part = scenario / "movielens-train"
    assert main(["simulate", "--write-training-part", str(train_part)]) == 0
    data_pipeline(ratings=str(train_part), crawl=False)

    # 1. popularity (champion) against ALS (challenger): ALS is promoted
    first = training_flow(model="popularity")
    assert first["decision"]["promoted"] and not first["experiment_started"]
    second = training_flow()
    assert second["experiment_started"] and _registry() == ("1", "2")
    assert _served_bento()["challenger_version"] == "2"
    audience = _experiment("1", "2", scenario, seed=1)
    assert audience["clicks"] > 0
    report = monitoring_flow()["experiment"]
    assert report["experiment"] == "v1-vs-v2" and report["decision"] == "promote", report
    assert report["arms"]["challenger"]["click_rate"] > report["arms"]["champion"]["click_rate"]
    assert not report["srm"]["flagged"]
    assert _registry() == ("2", None)
    assert _served_bento()["model_version"] == "2"
    assert "challenger_version" not in _served_bento()
    assert not _stored_challengers()

    # 2. ALS (champion) against popularity (challenger): the champion is kept
    assert training_flow(model="popularity")["experiment_started"]
    _experiment("2", "3", scenario, seed=2)
    # ... read as if the service split 20/80 while it split 50/50: a broken split, flagged
    monkeypatch.setenv("MOVIEREC_EXPERIMENT_SHARE", "20")
    broken = monitoring_flow()["experiment"]
    assert broken["srm"]["flagged"] and broken["srm"]["p_value"] < 0.001
    assert broken["decision"] == "continue" and broken["action"] is None
    assert _registry() == ("2", "3")
    monkeypatch.setenv("MOVIEREC_EXPERIMENT_SHARE", SHARE)
    kept = monitoring_flow()["experiment"]
    assert kept["decision"] == "keep champion", kept
    assert _registry() == ("2", None) and _served_bento()["model_version"] == "2"
    assert not _stored_challengers()

    # 3. A/A: the same training again as the challenger is not promoted
    assert training_flow()["experiment_started"]
    _experiment("2", "4", scenario, seed=3)
    same = monitoring_flow()["experiment"]
    assert same["decision"] != "promote", same
    assert _registry()[0] == "2"

    # 4. rollback: back to the version v2 replaced, packaged first
    rolled = rollback_flow()
    assert (rolled["from_version"], rolled["to_version"]) == ("2", "1")
    assert _registry() == ("1", None)
    assert _served_bento()["model_version"] == "1"
    assert bentoml.models.get(f"{REGISTERED_MODEL_NAME}:latest").info.labels["model_version"] == "1"
