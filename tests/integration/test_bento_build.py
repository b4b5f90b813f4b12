"""`bentos.store.build_bento` builds the Bento offline, with its Dockerfile and the model."""

from __future__ import annotations

import os
import re
import subprocess
import sys
import tarfile
from pathlib import Path

import httpx
import pytest
import yaml

from recommender.settings import PROJECT_ROOT
from support.servers import ServingEnv, environment, free_port, running_server

pytestmark = [
    pytest.mark.integration,
    pytest.mark.slow,
]


@pytest.fixture(scope="module")
def bento(serving_env: ServingEnv) -> Path:
    """The built Bento's directory under the temporary BENTOML_HOME."""
    with environment(serving_env.env):
        from bentos.store import build_bento

        tag = build_bento(model_tag=serving_env.model_tag, labels={"stage": "test"})
    name, version = tag.split(":")
    assert name == "movie-recommender"
    return Path(serving_env.env["BENTOML_HOME"]) / "bentos" / name / version


def test_the_dockerfile_runs_python_3_11_single_threaded_blas_on_port_3000(bento: Path) -> None:
    dockerfile = (bento / "env" / "docker" / "Dockerfile").read_text()
    # The base is a build argument (make image BASE_IMAGE=...), python:3.11-slim by default.
    assert re.search(r"^ARG BASE_IMAGE=python:3\.11-slim\nFROM \$\{BASE_IMAGE\}", dockerfile, re.M)
    assert "build-essential" not in dockerfile  # the runtime needs no compiler
    assert re.search(r"^ENV OPENBLAS_NUM_THREADS=", dockerfile, re.MULTILINE)
    assert "ARG OPENBLAS_NUM_THREADS=1" in dockerfile
    assert re.search(r"^EXPOSE 3000$", dockerfile, re.MULTILINE)
    assert "libgomp1" in dockerfile  # implicit's OpenMP runtime


def test_the_container_runs_as_the_non_root_user_the_manifests_expect(bento: Path) -> None:
    dockerfile = (bento / "env" / "docker" / "Dockerfile").read_text()
    users = re.findall(r"^USER (\S+)$", dockerfile, re.MULTILINE)
    assert users and users[-1] not in ("root", "0")
    uid = re.search(r"^ARG BENTO_USER_UID=(\d+)$", dockerfile, re.MULTILINE)
    assert uid is not None
    assert f"runAsUser: {uid.group(1)}" in (PROJECT_ROOT / "k8s/base/bento.yaml").read_text()


def test_the_bento_pins_the_runtime_packages_of_uv_lock(bento: Path) -> None:
    requirements = (bento / "env" / "python" / "requirements.txt").read_text().split()
    lock = (PROJECT_ROOT / "uv.lock").read_text()
    for name in ("bentoml", "implicit", "numpy", "scipy", "polars", "pydantic"):
        pinned = next(line for line in requirements if line.startswith(f"{name}=="))
        version = pinned.split("==")[1]
        assert f'name = "{name}"\nversion = "{version}"' in lock
    assert not any(line.startswith(("prefect", "mlflow")) for line in requirements)


def test_the_bento_records_the_model_and_its_lineage(bento: Path, serving_env: ServingEnv) -> None:
    info = yaml.safe_load((bento / "bento.yaml").read_text())
    assert info["services"][0]["models"][0]["tag"] == serving_env.model_tag
    lineage = {"model_version": "1", "run_id": "run-abc", "feature_version": "fv-1"}
    assert (lineage | {"project": "movierec", "stage": "test"}).items() <= info["labels"].items()
    assert {"name": "BENTOML_DO_NOT_TRACK", "value": "true", "stage": "all"} in info["envs"]


def test_the_bento_holds_the_code_and_the_built_page_when_there_is_one(bento: Path) -> None:
    src = bento / "src"
    for path in ("bentos/service.py", "recommender/serving/api.py", "k8s/overlays/prod/prod.yaml"):
        assert (src / path).is_file(), path
    assert not (src / "tests").exists() and not (src / "var").exists()
    # the include pattern matches nothing until `npm run build` has made frontend/dist
    assert _files(src / "frontend" / "dist") == _files(PROJECT_ROOT / "frontend" / "dist")


def _files(directory: Path) -> set[Path]:
    """The files under ``directory`` (relative), none when it does not exist."""
    return {path.relative_to(directory) for path in directory.rglob("*") if path.is_file()}


def test_during_an_experiment_the_bento_carries_the_challenger_too(
    serving_env: ServingEnv, tmp_path: Path
) -> None:
    with environment(serving_env.env):
        from bentos.store import build_bento, remove_challengers
        from recommender.serving.bundle import challenger_tag
        from support.sample_model import import_sample

        name = challenger_tag(serving_env.model_tag).split(":")[0]
        challenger, _ = import_sample(tmp_path / "trained", model_version="2", name=name)
        try:
            tag = build_bento(model_tag=serving_env.model_tag)
            exported = _export(tag, tmp_path / "exported", serving_env)
        finally:
            assert remove_challengers(serving_env.model_tag) == 1
        alone = _bento_info(build_bento(model_tag=serving_env.model_tag), serving_env)
    with_both = _bento_info(tag, serving_env)
    assert {m["tag"] for m in with_both["models"]} == {challenger}
    assert with_both["services"][0]["models"][0]["tag"] == serving_env.model_tag
    assert with_both["labels"]["challenger_version"] == "2"
    assert with_both["labels"]["model_version"] == "1"
    assert not alone.get("models") and "challenger_version" not in alone["labels"]

    # As in its container: the exported Bento served from its own files, with an empty
    # BentoML home, answers from both models (share 99: nearly every user sees the challenger).
    port = free_port()
    env = {
        **os.environ,
        **serving_env.env,
        "BENTOML_HOME": str(tmp_path / "empty-home"),
        "MOVIEREC_EXPERIMENT_MODE": "ab",
        "MOVIEREC_EXPERIMENT_SHARE": "99",
    }
    command = [sys.executable, "-m", "bentoml", "serve", str(exported), "--port", str(port)]
    with running_server(
        command, port=port, env=env, cwd=tmp_path, log=tmp_path / "serve.log"
    ) as url:
        answers = [
            httpx.post(f"{url}/recommend", json={"user_id": user, "k": 3}).json()
            for user in range(1, 21)
        ]
    assert {a["experiment"] for a in answers} == {"v1-vs-v2"}
    assert {(a["arm"], a["model_version"]) for a in answers} >= {("challenger", "2")}


def _export(tag: str, target: Path, serving_env: ServingEnv) -> Path:
    """``bentoml export`` of ``tag``, unpacked into ``target`` (what a container holds)."""
    archive = target.with_suffix(".bento")
    subprocess.run(
        [sys.executable, "-m", "bentoml", "export", tag, str(archive)],
        env={**os.environ, **serving_env.env},
        check=True,
        capture_output=True,
    )
    target.mkdir()
    with tarfile.open(archive) as bento:
        bento.extractall(target, filter="data")
    return target


def _bento_info(tag: str, serving_env: ServingEnv) -> dict:
    name, version = tag.split(":")
    home = Path(serving_env.env["BENTOML_HOME"]) / "bentos" / name / version
    return yaml.safe_load((home / "bento.yaml").read_text())
