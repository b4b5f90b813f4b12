"""The closed loop on real components: the trained champion served by ``bentoml serve``, a
scripted client that clicks and likes what it was shown, and the monitoring flow counting
exactly what the client did, per model version."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import bentoml
import httpx
import pytest

from recommender.serving.impressions import read_impressions
from recommender.settings import PROJECT_ROOT
from support.servers import free_port, running_server

pytestmark = [pytest.mark.integration, pytest.mark.slow]


@pytest.fixture
def data_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("MOVIEREC_DATA_DIR", str(tmp_path / "data"))
    monkeypatch.setenv("MOVIEREC_TUNING_TRIALS", "1")
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    return tmp_path / "data"


def _serve(data_dir: Path, model_tag: str, log: Path):  # noqa: ANN202
    port = free_port()
    env = {
        **os.environ,
        "MOVIEREC_DATA_DIR": str(data_dir),
        "MOVIEREC_BENTO_MODEL_TAG": model_tag,
        "MOVIEREC_FRONTEND_DIST": str(data_dir / "no-page"),
        "MOVIEREC_FEEDBACK_RATE_PER_MINUTE": "0",
    }
    command = [sys.executable, "-m", "bentoml", "serve", "bentos.service:MovieRecommender"]
    command += ["--host", "127.0.0.1", "--port", str(port)]
    return running_server(command, port=port, env=env, cwd=PROJECT_ROOT, log=log)


def test_the_report_counts_what_the_users_did_with_what_they_were_shown(
    prefect_harness: None, data_dir: Path, tmp_path: Path
) -> None:
    from flows.data_pipeline import data_pipeline
    from flows.monitoring import monitoring_flow
    from flows.training import training_flow

    data_pipeline(crawl=False)
    trained = training_flow()
    [model] = [  # the champion as packaged (the session's store holds other tests' models)
        m
        for m in bentoml.models.list("movie-recommender")
        if m.info.labels.get("run_id") == trained["run_id"]
    ]

    users = range(1, 21)
    clicked = [u for u in users if u % 2 == 0]
    liked = [u for u in users if u % 3 == 0]
    with (
        _serve(data_dir, str(model.tag), tmp_path / "serve.log") as url,
        httpx.Client(base_url=url, timeout=30) as client,
    ):

        def post(path: str, body: dict[str, object]) -> dict[str, object]:
            answer = client.post(path, json=body)
            assert answer.status_code == 200, answer.text
            return answer.json()

        def feedback(user: int, movie: int, event: str, answer: dict[str, object]) -> None:
            body = {"user_id": user, "movie_id": movie, "event": event}
            post("/feedback", {**body, "impression_id": answer["impression_id"]})

        shown = {}
        for user in users:
            answer = post("/recommend", {"user_id": user, "k": 10})
            assert answer["model_version"] == trained["decision"]["version"]
            shown[user] = answer
            movies = [m["movie_id"] for m in answer["movies"]]
            if user in clicked:
                feedback(user, movies[0], "click", answer)
                feedback(user, movies[0], "click", answer)  # counts once
            if user in liked:
                feedback(user, movies[2], "like", answer)
        popular = [post("/popular", {"k": 5, "session_id": "visitor-7"}) for _ in range(2)]
        feedback(7_000_000_001, popular[0]["movies"][4]["movie_id"], "click", popular[0])
        post("/feedback", {"user_id": 1, "movie_id": 1, "event": "view"})  # no impression
        not_shown = next(
            m["movie_id"]
            for m in popular[1]["movies"]
            if m["movie_id"] not in {x["movie_id"] for x in shown[1]["movies"]}
        )
        feedback(1, not_shown, "click", shown[1])  # not in that answer
        bad = client.post(
            "/feedback",
            json={
                "user_id": 1,
                "movie_id": 1,
                "event": "click",
                "impression_id": "../../etc/passwd",
            },
        )
        assert bad.status_code == 400 and "impression_id" in bad.json()["error"]
    # (the server has stopped: its workers wrote their queued impressions on the way out)

    impressions = read_impressions(data_dir / "raw" / "impressions" / "impressions.jsonl")
    assert impressions.height == 22
    first = impressions.filter(impressions["impression_id"] == shown[1]["impression_id"]).row(
        0, named=True
    )
    assert first["user_key"] == "1" and first["endpoint"] == "recommend"
    assert first["movie_ids"] == [m["movie_id"] for m in shown[1]["movies"]]
    assert set(impressions.filter(impressions["endpoint"] == "popular")["user_key"]) == {
        "s:visitor-7"
    }

    report = monitoring_flow()
    groups = {g["endpoint"]: g for g in report["online"]["groups"]}
    recommend, popular_group = groups["recommend"], groups["popular"]
    assert recommend["model_version"] == trained["decision"]["version"]
    assert recommend["impressions"] == 20 and recommend["users"] == 20
    assert recommend["click_rate"] == len(clicked) / 20
    assert recommend["like_rate"] == len(liked) / 20
    assert recommend["positive_rate_per_user"] == len(set(clicked) | set(liked)) / 20
    assert recommend["click_ranks"] == {"1": len(clicked) * 2}
    low, high = recommend["click_rate_ci"]
    assert low < recommend["click_rate"] < high
    assert popular_group["impressions"] == 2 and popular_group["users"] == 1
    assert popular_group["click_rate"] == 0.5 and popular_group["click_ranks"] == {"5": 1}
    assert report["online"]["without_impression"] == 1
    assert report["online"]["unknown_impression_or_movie"] == 1
