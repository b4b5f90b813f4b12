"""The monitoring flow against a real MLflow store (SQLite) and Prefect server: reports, MLflow
metrics, and retraining events that reach Prefect once per cooldown."""

from __future__ import annotations

import json
import shutil
import time
from pathlib import Path

import pytest
from mlflow.tracking import MlflowClient

from tests.datasets import generous_copy

pytestmark = [pytest.mark.integration, pytest.mark.slow]


@pytest.fixture
def data_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("MOVIEREC_DATA_DIR", str(tmp_path / "data"))
    monkeypatch.setenv("MOVIEREC_TUNING_TRIALS", "1")
    monkeypatch.setenv("MOVIEREC_RETRAIN_FEEDBACK_INTERACTIONS", "1000000")
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    return tmp_path / "data"


def _drift_events(since: float) -> list[object]:
    from prefect.client.orchestration import get_client
    from prefect.events.filters import EventFilter, EventNameFilter

    deadline = time.monotonic() + 30
    while True:
        with get_client(sync_client=True) as client:
            page = client.read_events(
                EventFilter(event=EventNameFilter(name=["movierec.drift.detected"])), limit=50
            )
        events = [e for e in page.events if e.occurred.timestamp() >= since]
        if events or time.monotonic() > deadline:
            return events
        time.sleep(0.5)


def test_drift_is_reported_logged_and_emitted_once_per_cooldown(
    prefect_harness: None, data_dir: Path, tmp_path: Path
) -> None:
    from flows.data_pipeline import data_pipeline
    from flows.monitoring import monitoring_flow
    from flows.training import training_flow

    data_pipeline(crawl=False)
    trained = training_flow()
    assert trained["decision"]["promoted"]

    quiet = monitoring_flow()
    assert quiet["champion"]["feature_version"] == trained["feature_version"]
    assert quiet["data_drift"]["drifted"] == []
    assert max(c["psi"] for c in quiet["data_drift"]["columns"]) < 1e-9
    assert quiet["events"] == []
    # The champion had no batch predictions: the flow made them, and measured them.
    assert (data_dir / "predictions" / "1" / "predictions.parquet").is_file()
    assert quiet["recommendations"]["champion"]["users"] == 610
    assert "previous" not in quiet["recommendations"]

    started = time.time()
    data_pipeline(ratings=str(generous_copy(tmp_path / "generous")), crawl=False)
    # An older version's lists, as if v0 had been champion before.
    (data_dir / "predictions" / "0").mkdir()
    shutil.copy(
        data_dir / "predictions" / "1" / "predictions.parquet",
        data_dir / "predictions" / "0" / "predictions.parquet",
    )
    drifted = monitoring_flow()
    assert {"interactions.rating", "user_features.rating_mean"} <= set(
        drifted["data_drift"]["drifted"]
    )
    current_shares = drifted["rating_distribution"]["current"]
    assert current_shares.pop("5.0") == 1.0 and set(current_shares.values()) == {0.0}
    assert drifted["recommendations"]["overlap_at_k"] == pytest.approx(1.0)
    assert [(e["event"], e["emitted"]) for e in drifted["events"]] == [
        ("movierec.drift.detected", True)
    ]
    (event,) = _drift_events(started)
    assert "interactions.rating" in event.payload["drifted"]
    assert event.resource.id == "movierec.model.movie-recommender"

    again = monitoring_flow()  # the same drift within the cooldown: reported, not emitted
    assert [(e["event"], e["emitted"]) for e in again["events"]] == [
        ("movierec.drift.detected", False)
    ]
    assert len(_drift_events(started)) == 1

    reports = sorted((data_dir / "monitoring").glob("*/report.json"))
    assert len(reports) == 3
    assert json.loads(reports[-1].read_text())["data_drift"]["drifted"]
    assert "<img" in reports[-1].with_name("report.html").read_text()

    client = MlflowClient()
    experiment = client.get_experiment_by_name("monitoring")
    runs = client.search_runs([experiment.experiment_id], order_by=["attributes.start_time ASC"])
    assert len(runs) == 3
    assert runs[0].data.metrics["drifted_columns"] == 0
    assert runs[1].data.metrics["psi.interactions.rating"] >= 0.2
    assert runs[1].data.params["champion_version"] == "1"
    artifacts = {a.path for a in client.list_artifacts(runs[1].info.run_id, "report")}
    assert artifacts == {"report/report.json", "report/report.html"}
