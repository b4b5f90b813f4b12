"""Fixtures of the service tests: a model trained on the embedded MovieLens sample and imported
into a temporary BentoML home, and the service both in this process and as ``bentoml serve``.

The environment the service reads (``BENTOML_HOME``, ``MOVIEREC_DATA_DIR``, ...) is set only
while a fixture imports or starts it, so the other tests keep their own.
"""

from __future__ import annotations

import os
import sys
import threading
from collections.abc import Iterator

import httpx
import pytest
import uvicorn

from recommender.settings import PROJECT_ROOT
from support.sample_model import import_sample
from support.servers import HOST, ServingEnv, environment, free_port, running_server


@pytest.fixture(scope="session")
def serving_env(tmp_path_factory: pytest.TempPathFactory) -> ServingEnv:
    """ALS trained on the embedded sample (model_version "1"), imported into a fresh store."""
    root = tmp_path_factory.mktemp("serving")
    dist = root / "frontend-dist"
    (dist / "assets").mkdir(parents=True)
    (dist / "index.html").write_text("<!doctype html><title>movierec</title>")
    (dist / "assets" / "app.js").write_text("console.log('movierec')\n")
    env = {
        "BENTOML_HOME": os.environ["BENTOML_HOME"],  # the session's (tests/conftest.py)
        "MOVIEREC_DATA_DIR": str(root / "data"),
        "MOVIEREC_FRONTEND_DIST": str(dist),
        # Every test client is 127.0.0.1; test_rate_limit.py starts its own limited server.
        "MOVIEREC_FEEDBACK_RATE_PER_MINUTE": "0",
    }
    with environment(env):
        tag, _ = import_sample(
            root / "trained",
            model_version="1",
            run_id="run-abc",
            feature_version="fv-1",
            metadata={"validation_ndcg": 0.25},
        )
    return ServingEnv(
        env=env,
        data_dir=root / "data",
        frontend_dist=dist,
        model_tag=tag,
    )


@pytest.fixture(scope="session")
def service_url(serving_env: ServingEnv) -> Iterator[str]:
    """The service's ASGI app in this process, behind uvicorn on a loopback port."""
    with environment(serving_env.env):
        from bentos.service import MovieRecommender

        app = MovieRecommender.to_asgi()
    port = free_port()
    server = uvicorn.Server(uvicorn.Config(app, host=HOST, port=port, log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    try:
        url = f"http://{HOST}:{port}"
        # Started, then ready: the service loads its model in the background.
        while not (server.started and httpx.get(f"{url}/readyz").status_code == 200):
            if not thread.is_alive():
                raise RuntimeError("the in-process service did not start")
            thread.join(0.05)
        yield url
    finally:
        server.should_exit = True
        thread.join()


@pytest.fixture(scope="session")
def served_url(serving_env: ServingEnv, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """``bentoml serve bentos.service:MovieRecommender`` as a subprocess (two workers)."""
    port = free_port()
    command = [sys.executable, "-m", "bentoml", "serve", "bentos.service:MovieRecommender"]
    command += ["--host", HOST, "--port", str(port)]
    log = tmp_path_factory.mktemp("bentoml-serve") / "serve.log"
    env = {**os.environ, **serving_env.env}
    with running_server(command, port=port, env=env, cwd=PROJECT_ROOT, log=log) as url:
        yield url
