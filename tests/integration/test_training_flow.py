"""The training flow end to end against a real MLflow tracking store (SQLite) and Prefect."""

from __future__ import annotations

import socket
from pathlib import Path

import bentoml
import mlflow
import numpy as np
import pandas as pd
import polars as pl
import pytest
from mlflow.tracking import MlflowClient

from recommender.features.store import FeatureVersionNotFoundError
from recommender.settings import EMBEDDED_MOVIELENS
from recommender.tracking.registry import NoChampionError
from recommender.tracking.runs import TrackingUnavailableError

pytestmark = [pytest.mark.integration, pytest.mark.slow]

SECRET = "0123456789abcdef0123456789abcdef"


@pytest.fixture
def data_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("MOVIEREC_DATA_DIR", str(tmp_path / "data"))
    monkeypatch.setenv("MOVIEREC_TUNING_TRIALS", "3")
    monkeypatch.setenv("TMDB_API_KEY", SECRET)  # must not reach MLflow
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    monkeypatch.delenv("MOVIEREC_FEATURE_VERSION", raising=False)
    return tmp_path / "data"


def _noisy_copy(target: Path) -> Path:
    """The embedded dataset with every rating's movie replaced by a random one: a worse model."""
    target.mkdir()
    for name in ("movies.csv", "links.csv"):
        (target / name).write_bytes((EMBEDDED_MOVIELENS / name).read_bytes())
    ratings = pl.read_csv(EMBEDDED_MOVIELENS / "ratings.csv")
    rng = np.random.default_rng(0)
    movies = ratings["movieId"].unique().to_numpy()
    noisy = ratings.with_columns(movieId=pl.Series(rng.choice(movies, ratings.height)))
    noisy.unique(["userId", "movieId"], keep="first", maintain_order=True).write_csv(
        target / "ratings.csv"
    )
    return target


def test_first_model_becomes_champion_and_a_worse_one_does_not(
    prefect_harness: None, data_dir: Path, tmp_path: Path
) -> None:
    from flows.batch_prediction import batch_prediction_flow
    from flows.data_pipeline import data_pipeline
    from flows.training import training_flow

    data_pipeline(crawl=False)
    first = training_flow()
    assert first["decision"]["promoted"] is True
    bento = bentoml.bentos.get(first["bento_tag"])  # the champion was packaged as a Bento
    assert bento.info.labels["model_version"] == "1"
    assert bento.info.labels["run_id"] == first["run_id"]
    assert first["metrics"]["als"]["ndcg"] > first["metrics"]["popularity"]["ndcg"]

    data_pipeline(ratings=str(_noisy_copy(tmp_path / "noisy")), crawl=False)
    second = training_flow()
    assert second["decision"]["promoted"] is False
    assert "does not beat" in second["decision"]["reason"]
    assert second["feature_version"] != first["feature_version"]
    assert second["bento_tag"] is None  # no promotion, no new Bento

    client = MlflowClient()
    champion = client.get_model_version_by_alias("movie-recommender", "champion")
    challenger = client.get_model_version_by_alias("movie-recommender", "challenger")
    assert (str(champion.version), str(challenger.version)) == ("1", "2")
    assert champion.run_id == first["run_id"]

    run = client.get_run(first["run_id"])
    assert run.data.params["feature_version"] == first["feature_version"]
    assert run.data.metrics["val_ndcg_at_10"] == pytest.approx(first["decision"]["challenger_ndcg"])
    assert run.data.tags["promotion.promoted"] == "true"
    assert run.data.tags["bento_tag"] == first["bento_tag"]
    assert [d.dataset.digest for d in run.inputs.dataset_inputs] == [first["feature_version"]]
    assert not any(SECRET in str(value) for value in run.data.params.values())
    artifacts = {a.path for a in client.list_artifacts(first["run_id"], "evaluation")}
    assert {"evaluation/metrics_at_k.png", "evaluation/report.json"} <= artifacts

    model = mlflow.pyfunc.load_model("models:/movie-recommender@champion")
    top = model.predict(pd.DataFrame({"user_id": [1, 2]}), params={"k": 5})
    assert top.groupby("user_id").size().to_dict() == {1: 5, 2: 5}
    assert not top["fallback"].any()

    # batch predictions come from the champion (v1), not the newer challenger
    manifest = batch_prediction_flow(k=3)
    predictions = pl.read_parquet(data_dir / "predictions" / "1" / "predictions.parquet")
    assert manifest["sources"][0]["version"] == "1"
    assert manifest["users"] == 610 == predictions["user_id"].n_unique()
    assert predictions.height == 610 * 3
    first_user = predictions.filter(user_id=1).sort("rank")
    assert first_user["movie_id"].to_list() == top[top.user_id == 1]["movie_id"].head(3).tolist()


def test_unreachable_tracking_server_fails_before_any_work(
    prefect_harness: None, data_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from flows.training import training_flow

    with socket.socket() as sock:  # a loopback port nobody listens on
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"http://127.0.0.1:{port}")
    with pytest.raises(TrackingUnavailableError, match="fix MLFLOW_TRACKING_URI"):
        training_flow()
    assert not (data_dir / "features").exists()


def test_batch_prediction_without_a_champion_says_to_train_first(
    prefect_harness: None, data_dir: Path
) -> None:
    from flows.batch_prediction import batch_prediction_flow

    with pytest.raises(NoChampionError, match="run the training flow"):
        batch_prediction_flow()


def test_unknown_feature_version_names_the_setting(
    prefect_harness: None, data_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from flows.training import training_flow

    monkeypatch.setenv("MOVIEREC_FEATURE_VERSION", "feedfacecafebeef")
    with pytest.raises(
        FeatureVersionNotFoundError,
        match=r"MOVIEREC_FEATURE_VERSION, --feature-version\): .*no version",
    ):
        training_flow()
