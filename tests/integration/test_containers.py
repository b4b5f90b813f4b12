"""The images `make image` builds, run as containers: the Bento serves, the project image trains.

Both images are built once per module by ``make image`` itself (Docker's layer cache makes a
rebuild take seconds). The Bento packages the session's sample model (model_version "1", the
champion the serving tests use). Every container's traffic stays on loopback: the Bento's port
is published on 127.0.0.1 only; the MLflow server and the flows share the host's network with
every server bound to 127.0.0.1.

Locally the module skips when no Docker engine answers; in CI (``CI=true``,
``MOVIEREC_REQUIRE_CONTAINERS=1``) that is a failure.
"""

from __future__ import annotations

import os
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
import yaml

from recommender.data.feedback import read_events
from support.containers import (
    Images,
    build_images,
    containers_required,
    docker,
    engine_available,
    image_size_mb,
    remove_container,
    wait_ready,
)
from support.servers import HOST, ServingEnv, free_port

pytestmark = [pytest.mark.integration, pytest.mark.slow]

ROOT = Path(__file__).resolve().parents[2]
# Image budgets (MB): what the runtime needs, without compilers.
MAX_BENTO_MB = 800
MAX_PROJECT_MB = 900
READY_WITHIN_S = 30
FLOW_ENV = {
    "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
    "PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS": "120",
    "MOVIEREC_TUNING_TRIALS": "2",
}


def _bento_uid() -> int:
    """The uid k8s/base/bento.yaml runs the Bento's pod as."""
    [deployment] = [
        obj
        for obj in yaml.safe_load_all((ROOT / "k8s" / "base" / "bento.yaml").read_text())
        if obj["kind"] == "Deployment"
    ]
    return int(deployment["spec"]["template"]["spec"]["securityContext"]["runAsUser"])


def _volume(path: Path, uid: int) -> Path:
    """A host directory the container's ``uid`` can write (kubelet's fsGroup does this in k8s)."""
    path.mkdir(parents=True)
    if os.geteuid() == 0:
        os.chown(path, uid, uid)
    else:
        path.chmod(0o777)
    return path


@pytest.fixture(scope="module")
def images(serving_env: ServingEnv, tmp_path_factory: pytest.TempPathFactory) -> Images:
    if not engine_available():
        if containers_required():
            pytest.fail("a Docker engine is required (CI=true or MOVIEREC_REQUIRE_CONTAINERS=1)")
        pytest.skip("no Docker engine answers `docker info`")
    env = {**os.environ, **serving_env.env, "MOVIEREC_BENTO_MODEL_TAG": serving_env.model_tag}
    log = tmp_path_factory.mktemp("make-image") / "make-image.log"
    return build_images(tag="pytest", env=env, log=log)


class Container:
    """One ``docker run -d`` container, removed with its volumes' data left on the host."""

    def __init__(self, image: str, *args: str, name_prefix: str) -> None:
        self.name = f"{name_prefix}-{uuid.uuid4().hex[:8]}"
        self.image = image
        self.args = args

    def run(self, *command: str) -> None:
        docker("run", "--detach", "--name", self.name, *self.args, self.image, *command)

    def remove(self) -> None:
        remove_container(self.name)


@pytest.fixture(scope="module")
def bento(
    images: Images, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[tuple[Container, int, Path, float]]:
    """The Bento container with a data volume: (container, port, data dir, seconds to ready)."""
    data = _volume(tmp_path_factory.mktemp("bento") / "data", _bento_uid())
    port = free_port()
    container = Container(
        images.bento,
        "--publish",
        f"{HOST}:{port}:3000",
        "--volume",
        f"{data}:/data",
        "--env",
        "MOVIEREC_DATA_DIR=/data",
        name_prefix="movierec-bento",
    )
    start = time.monotonic()
    try:
        container.run()
        wait_ready(container.name, f"http://{HOST}:{port}/readyz", timeout=120)
        yield container, port, data, time.monotonic() - start
    finally:
        container.remove()


def test_image_sizes_are_within_budget(images: Images, capsys: pytest.CaptureFixture[str]) -> None:
    sizes = {
        images.bento: image_size_mb(images.bento),
        images.project: image_size_mb(images.project),
    }
    with capsys.disabled():
        for image, size in sizes.items():
            print(f"\n{image}: {size:.0f} MB", end="")
    assert sizes[images.bento] <= MAX_BENTO_MB
    assert sizes[images.project] <= MAX_PROJECT_MB


def test_the_bento_is_ready_soon_after_docker_run(
    bento: tuple[Container, int, Path, float],
) -> None:
    assert bento[3] <= READY_WITHIN_S


def test_the_bento_recommends_with_the_champion(
    bento: tuple[Container, int, Path, float], serving_env: ServingEnv
) -> None:
    _, port, _, _ = bento
    answer = httpx.post(f"http://{HOST}:{port}/recommend", json={"user_id": 1, "k": 5}, timeout=30)
    assert answer.status_code == 200, answer.text
    body = answer.json()
    assert body["model_version"] == "1"  # serving_env's champion
    assert body["fallback"] is False
    assert len(body["movies"]) == 5


def test_the_bento_serves_the_page(bento: tuple[Container, int, Path, float]) -> None:
    _, port, _, _ = bento
    page = httpx.get(f"http://{HOST}:{port}/", timeout=30)
    assert page.status_code == 200
    assert page.text == (ROOT / "frontend" / "dist" / "index.html").read_text()


def test_the_bento_runs_as_the_manifests_non_root_user(
    bento: tuple[Container, int, Path, float],
) -> None:
    container = bento[0]
    uid = docker("exec", container.name, "id", "-u")
    assert int(uid) == _bento_uid() != 0


def test_accepted_feedback_stays_on_the_volume_across_a_restart(
    bento: tuple[Container, int, Path, float],
) -> None:
    container, port, data, _ = bento
    log = data / "raw" / "feedback" / "events.jsonl"
    sent = []
    for movie_id in (1, 2):
        if sent:  # the second event goes to the restarted container
            docker("restart", container.name, timeout=90)
            wait_ready(container.name, f"http://{HOST}:{port}/readyz", timeout=120)
        answer = httpx.post(
            f"http://{HOST}:{port}/feedback",
            json={"user_id": 7, "movie_id": movie_id, "event": "like"},
            timeout=30,
        )
        assert answer.status_code == 200, answer.text
        sent.append(answer.json())
    stored = read_events(log)
    assert stored.events.to_dicts() == sent and stored.rejected.is_empty()


def test_the_project_image_runs_the_data_and_training_flows_against_mlflow(
    images: Images, tmp_path: Path
) -> None:
    uid = int(docker("image", "inspect", "--format", "{{.Config.User}}", images.project))
    data = _volume(tmp_path / "data", uid)
    mlflow_dir = _volume(tmp_path / "mlflow", uid)
    mlflow_port = free_port()
    flow = f"movierec-flow-{uuid.uuid4().hex[:8]}"  # the flow runs' container, one at a time
    mlflow = Container(
        images.project, "--network", "host", "--volume", f"{mlflow_dir}:/mlflow",
        name_prefix="movierec-mlflow",
    )  # fmt: skip
    try:
        mlflow.run(
            "mlflow", "server", "--host", HOST, "--port", str(mlflow_port), "--workers", "1",
            "--backend-store-uri", "sqlite:////mlflow/mlflow.db",
            "--artifacts-destination", "/mlflow/artifacts",
        )  # fmt: skip
        wait_ready(mlflow.name, f"http://{HOST}:{mlflow_port}/health", timeout=120)
        flow_env = {**FLOW_ENV, "MLFLOW_TRACKING_URI": f"http://{HOST}:{mlflow_port}"}
        run_args = ["run", "--rm", "--name", flow, "--network", "host"]
        run_args += ["--volume", f"{data}:/data"]
        run_args += ["--env", "MOVIEREC_DATA_DIR=/data"]
        for name, value in flow_env.items():
            run_args += ["--env", f"{name}={value}"]
        docker(*run_args, images.project, "movierec", "data", "--no-crawl", timeout=600)
        assert (data / "processed" / "interactions.parquet").is_file()
        docker(*run_args, images.project, "movierec", "train", timeout=900)
        versions = httpx.get(
            f"http://{HOST}:{mlflow_port}/api/2.0/mlflow/registered-models/alias",
            params={"name": "movie-recommender", "alias": "champion"},
            timeout=30,
        )
        assert versions.status_code == 200, versions.text
        assert versions.json()["model_version"]["version"] == "1"
    finally:
        remove_container(flow)  # still there only when a flow run timed out
        mlflow.remove()
