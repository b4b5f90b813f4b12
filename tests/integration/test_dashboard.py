"""The Grafana dashboard asks only for metrics the running service exports."""

from __future__ import annotations

import json
import os
import re
import sys
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from recommender.settings import PROJECT_ROOT
from support.servers import HOST, ServingEnv, free_port, running_server

pytestmark = pytest.mark.integration

DASHBOARD = PROJECT_ROOT / "k8s" / "base" / "dashboards" / "movierec.json"
# A metric name in PromQL: an identifier followed by a selector, a range or a grouping.
METRIC = re.compile(r"\b(movierec_[a-z_]+)\s*[{\[)]")


@pytest.fixture(scope="module")
def production_url(
    serving_env: ServingEnv, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[str]:
    """``bentoml serve`` with the production defaults (the shared test server turns the
    feedback rate limit off, and with it the limit's metric)."""
    env = {**os.environ, **serving_env.env}
    env.pop("MOVIEREC_FEEDBACK_RATE_PER_MINUTE")
    port = free_port()
    command = [sys.executable, "-m", "bentoml", "serve", "bentos.service:MovieRecommender"]
    command += ["--host", HOST, "--port", str(port)]
    log = Path(tmp_path_factory.mktemp("dashboard")) / "serve.log"
    with running_server(command, port=port, env=env, cwd=PROJECT_ROOT, log=log) as url:
        yield url


def _expressions() -> list[str]:
    dashboard = json.loads(DASHBOARD.read_text())
    return [target["expr"] for panel in dashboard["panels"] for target in panel["targets"]]


def test_every_metric_the_dashboard_queries_is_exported(production_url: str) -> None:
    with httpx.Client(base_url=production_url, timeout=30) as client:
        # One request of each kind, so that every labelled series has been created once.
        answer = client.post("/recommend", json={"user_id": 1, "k": 3}).json()
        movie = answer["movies"][0]["movie_id"]
        feedback = {"user_id": 1, "movie_id": movie, "event": "click"}
        assert client.post("/feedback", json=feedback).status_code == 200
        exported = client.get("/metrics").text
    families = set(re.findall(r"^# TYPE (\S+) ", exported, re.MULTILINE))
    series = {line.split("{")[0].split(" ")[0] for line in exported.splitlines() if line[:1] != "#"}
    wanted = {name for expr in _expressions() for name in METRIC.findall(expr)}
    assert len(wanted) >= 6, wanted  # the parse found the dashboard's metrics
    missing = sorted(name for name in wanted if name not in series and name not in families)
    assert not missing, f"the dashboard queries metrics the service does not export: {missing}"


def test_dashboard_labels_come_from_the_exported_label_sets(production_url: str) -> None:
    exported = httpx.get(f"{production_url}/metrics", timeout=30).text
    labels = set(re.findall(r"[{,]([a-z_]+)=\"", exported))
    used = {
        label
        for expr in _expressions()
        for clause in re.findall(r"by \(([^)]*)\)", expr)
        for label in (part.strip() for part in clause.split(","))
        if label != "le"
    }
    assert used <= labels, sorted(used - labels)
