"""The data flow end to end under a real (temporary) Prefect server."""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import polars as pl
import pytest

from recommender.data.feedback import FeedbackEvent, append_events
from recommender.data.ingest import OVER_NEW_USER_CAP, TOO_FEW_MOVIES
from recommender.data.schemas import TooManyRejectedError
from recommender.data.storage import read_tables
from recommender.settings import EMBEDDED_MOVIELENS, PROJECT_ROOT
from support.fake_tmdb import FakeTMDB

pytestmark = pytest.mark.integration


def _dataset(directory: Path, tmdb_ids: list[int]) -> Path:
    """Three movies linked to the given TMDB ids and six ratings, one of them out of range."""
    directory.mkdir()
    (directory / "movies.csv").write_text(
        "movieId,title,genres\n1,Alpha (1999),Drama\n2,Beta (2001),Comedy|Drama\n3,Gamma,"
        "(no genres listed)\n"
    )
    links = "".join(f"{i},{1000000 + i:07d},{t}\n" for i, t in enumerate(tmdb_ids, start=1))
    (directory / "links.csv").write_text("movieId,imdbId,tmdbId\n" + links)
    (directory / "ratings.csv").write_text(
        "userId,movieId,rating,timestamp\n1,1,4.0,100\n1,2,3.0,101\n2,1,5.0,102\n"
        "2,3,2.5,103\n3,2,4.5,104\n3,3,9.0,105\n"
    )
    return directory


@pytest.fixture
def admit_small_users(monkeypatch: pytest.MonkeyPatch) -> None:
    """Admit the feedback-only users of these tests, who know the three movies of the catalog."""
    monkeypatch.setenv("MOVIEREC_FEEDBACK_MIN_USER_MOVIES", "3")
    monkeypatch.setenv("MOVIEREC_FEEDBACK_MAX_NEW_USER_FRACTION", "1")


def _artifact_keys() -> set[str]:
    from prefect.client.orchestration import get_client

    async def read() -> set[str]:
        async with get_client() as client:
            return {artifact.key for artifact in await client.read_artifacts() if artifact.key}

    return asyncio.run(read())


def test_data_flow_writes_processed_tables_with_crawled_details(
    prefect_harness: None, admit_small_users: None, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from flows.data_pipeline import data_pipeline

    with FakeTMDB(movies=30) as tmdb:
        popular = tmdb.list_ids("/movie/popular", 1)
        dataset = _dataset(tmp_path / "ml", [popular[0], popular[1], 999_999])
        data_dir = tmp_path / "data"
        monkeypatch.setenv("MOVIEREC_DATA_DIR", str(data_dir))
        monkeypatch.setenv("MOVIEREC_TMDB_BASE_URL", tmdb.base_url)
        monkeypatch.setenv("TMDB_API_KEY", tmdb.api_key)
        monkeypatch.setenv("MOVIEREC_CRAWL_RATE_LIMIT", "500")
        monkeypatch.setenv("MOVIEREC_MAX_REJECTED_FRACTION", "0.5")
        feedback_log = data_dir / "raw" / "feedback" / "events.jsonl"
        append_events(
            feedback_log,
            [
                FeedbackEvent(user_id=4, movie_id=1, event="like", timestamp=200.0),
                FeedbackEvent(user_id=4, movie_id=2, event="dislike", timestamp=201.0),
                FeedbackEvent(user_id=4, movie_id=3, event="rating", value=4.0, timestamp=202.0),
            ],
        )
        with feedback_log.open("a") as handle:
            handle.write("not json\n")

        manifest = data_pipeline(ratings=str(dataset), pages=1)

    processed = data_dir / "processed"
    assert json.loads((processed / "manifest.json").read_text()) == manifest
    movies = pl.read_parquet(processed / "movies.parquet").sort("movie_id")
    assert movies["movie_id"].to_list() == [1, 2, 3]  # movie 3 has no TMDB details but stays
    assert movies["poster_path"][0] == tmdb.movies[popular[0]]["poster_path"]
    assert movies["poster_path"][2] is None
    assert (data_dir / "raw" / "tmdb").is_dir()

    interactions = pl.read_parquet(processed / "interactions.parquet")
    assert interactions.height == 5 + 2  # the 9.0 rating is quarantined; dislike is no interaction
    assert sorted(interactions.filter(source="feedback")["rating"].to_list()) == [4.0, 5.0]
    quarantine = pl.read_parquet(processed / "quarantine" / "ratings.parquet")
    assert quarantine["rating"].to_list() == [9.0]
    assert quarantine["reason"].to_list() == ["rating: in_range(0.5, 5.0)"]
    assert pl.read_parquet(processed / "quarantine" / "feedback_lines.parquet").height == 1

    assert manifest["tables"]["interactions"]["rows"] == interactions.height
    assert {source["kind"] for source in manifest["sources"]} == {"movielens", "tmdb", "feedback"}
    assert manifest["content_hash"]
    assert "validation-summary" in _artifact_keys()
    key_leaks = [
        p for p in data_dir.rglob("*") if p.is_file() and tmdb.api_key.encode() in p.read_bytes()
    ]
    assert key_leaks == []


def test_data_flow_fails_loudly_when_too_many_rows_are_rejected(
    prefect_harness: None, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from flows.data_pipeline import data_pipeline

    dataset = _dataset(tmp_path / "ml", [11, 18, 25])
    monkeypatch.setenv("MOVIEREC_DATA_DIR", str(tmp_path / "data"))
    monkeypatch.delenv("TMDB_API_KEY", raising=False)
    monkeypatch.delenv("TMDB_API_TOKEN", raising=False)
    with pytest.raises(TooManyRejectedError, match="ratings: 1 of 6 rows"):
        data_pipeline(ratings=str(dataset), crawl=False)
    # The failed run's generation holds its quarantine; it was never published.
    (generation,) = (tmp_path / "data" / "processed-generations").iterdir()
    quarantine = generation / "quarantine" / "ratings.parquet"
    assert pl.read_parquet(quarantine)["rating"].to_list() == [9.0]
    assert not (tmp_path / "data" / "processed").exists()


def test_a_poisoned_feedback_line_is_quarantined_and_the_flow_goes_on(
    prefect_harness: None, admit_small_users: None, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from flows.data_pipeline import data_pipeline

    dataset = _dataset(tmp_path / "ml", [11, 18, 25])
    (dataset / "ratings.csv").write_text(
        "userId,movieId,rating,timestamp\n1,1,4.0,100\n1,2,3.0,101\n2,1,5.0,102\n"
    )
    log = tmp_path / "data" / "raw" / "feedback" / "events.jsonl"
    log.parent.mkdir(parents=True)
    # Accepted by the API before timestamps were bounded; it broke every data run after it.
    good = [
        json.dumps({"user_id": 5, "movie_id": m, "event": "like", "timestamp": 1_700_000_000.0})
        for m in (1, 2, 3)
    ]
    poison = '{"user_id":1,"movie_id":1,"event":"like","timestamp":1e19}'
    log.write_text("\n".join([*good[:2], poison, *good[2:]]) + "\n" + "\n".join(good * 40) + "\n")
    monkeypatch.setenv("MOVIEREC_DATA_DIR", str(tmp_path / "data"))
    monkeypatch.delenv("TMDB_API_KEY", raising=False)
    monkeypatch.delenv("TMDB_API_TOKEN", raising=False)

    manifest = data_pipeline(ratings=str(dataset), crawl=False)

    assert manifest["tables"]["interactions"]["rows"] == 3 + 3  # 41 identical likes count once
    quarantine = tmp_path / "data" / "processed" / "quarantine" / "feedback_lines.parquet"
    assert pl.read_parquet(quarantine)["line"].to_list() == [3]


@pytest.mark.parametrize(
    ("ratings", "error"),
    [
        ("userId,movieId,rating,timestamp\n", "holds no ratings"),
        ("userId,movieId,rating,timestamp\n1,77,4.0,100\n2,78,3.0,101\n", "2 of 2 rows"),
    ],
    ids=["header-only", "all-orphans"],
)
def test_ratings_that_cannot_be_right_fail_the_run_and_keep_the_previous_tables(
    prefect_harness: None,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    ratings: str,
    error: str,
) -> None:
    from flows.data_pipeline import data_pipeline

    monkeypatch.setenv("MOVIEREC_DATA_DIR", str(tmp_path / "data"))
    monkeypatch.delenv("TMDB_API_KEY", raising=False)
    monkeypatch.delenv("TMDB_API_TOKEN", raising=False)
    good = _dataset(tmp_path / "good", [11, 18, 25])
    (good / "ratings.csv").write_text("userId,movieId,rating,timestamp\n1,1,4.0,100\n")
    before = data_pipeline(ratings=str(good), crawl=False)
    bad = _dataset(tmp_path / "bad", [11, 18, 25])
    (bad / "ratings.csv").write_text(ratings)

    with pytest.raises(ValueError, match=error):
        data_pipeline(ratings=str(bad), crawl=False)

    processed = tmp_path / "data" / "processed"
    assert json.loads((processed / "manifest.json").read_text()) == before
    assert pl.read_parquet(processed / "interactions.parquet")["movie_id"].to_list() == [1]


def _files_named(root: Path, name: str) -> set[tuple[str, int]]:
    """(path, inode) of every file called ``name`` under ``root``: a file renamed into place
    shows up as a new inode at an old path."""
    found = set()
    for directory, _, files in os.walk(root):
        if name in files:
            try:
                found.add((directory, os.stat(Path(directory) / name).st_ino))
            except FileNotFoundError:  # removed while we looked
                pass
    return found


def _published(data_dir: Path) -> tuple[str, int]:
    """The processed tables readers see: their content hash and interaction count. Raises if
    they are not one whole generation (a table that does not match the manifest)."""
    tables, manifest = read_tables(data_dir / "processed", ("movies", "interactions"))
    return manifest["content_hash"], tables["interactions"].height


@pytest.mark.slow
def test_a_data_run_killed_while_writing_leaves_the_old_tables_or_the_new_never_a_mix(
    prefect_harness: None, tmp_path: Path
) -> None:
    from prefect.settings import PREFECT_API_URL

    data_dir, old_source = tmp_path / "data", tmp_path / "old"
    old_source.mkdir()
    for name in ("movies.csv", "links.csv"):
        shutil.copy(EMBEDDED_MOVIELENS / name, old_source / name)
    ratings = (EMBEDDED_MOVIELENS / "ratings.csv").read_text().splitlines(keepends=True)
    (old_source / "ratings.csv").write_text("".join(ratings[:50_001]))
    env = {
        "PATH": "/usr/bin:/bin",
        "MOVIEREC_DATA_DIR": str(data_dir),
        "PREFECT_API_URL": str(PREFECT_API_URL.value()),
    }

    def start(source: Path) -> subprocess.Popen[bytes]:
        command = [sys.executable, "-m", "flows.cli", "data", "--no-crawl", "--ratings"]
        with (tmp_path / "run.log").open("ab") as log:  # the child keeps its own descriptor
            return subprocess.Popen(
                [*command, str(source)], cwd=PROJECT_ROOT, env=env, stdout=log, stderr=log
            )

    assert start(old_source).wait(timeout=300) == 0
    old = _published(data_dir)
    seen = []
    for name in ("movies.parquet", "interactions.parquet", "manifest.json"):
        before = _files_named(data_dir, name)
        run = start(EMBEDDED_MOVIELENS)
        deadline = time.monotonic() + 300
        while not _files_named(data_dir, name) - before:
            assert run.poll() is None, f"the run ended before writing {name}"
            assert time.monotonic() < deadline
            time.sleep(0.001)
        run.kill()
        assert run.wait(timeout=30) < 0
        seen.append(_published(data_dir))

    assert start(EMBEDDED_MOVIELENS).wait(timeout=300) == 0  # the next run completes
    new = _published(data_dir)
    assert new[1] == len(ratings) - 1 and old[1] == 50_000
    assert set(seen) <= {old, new}, (seen, old, new)
    assert seen[0] == old  # killed before the new generation could be complete
    generations = sorted((data_dir / "processed-generations").iterdir())
    assert len(generations) == 2  # the current one and the previous; the killed runs' are gone
    assert (data_dir / "processed").resolve() == generations[-1]


def test_feedback_is_read_across_the_log_segments_and_made_up_users_are_held_back(
    prefect_harness: None, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from flows.data_pipeline import data_pipeline

    dataset = _dataset(tmp_path / "ml", [11, 18, 25])
    (dataset / "ratings.csv").write_text(
        "userId,movieId,rating,timestamp\n1,1,4.0,100\n1,2,3.0,101\n2,1,5.0,102\n"
    )
    data_dir = tmp_path / "data"
    monkeypatch.setenv("MOVIEREC_DATA_DIR", str(data_dir))
    monkeypatch.setenv("MOVIEREC_FEEDBACK_MIN_USER_MOVIES", "3")
    monkeypatch.setenv("MOVIEREC_FEEDBACK_MAX_NEW_USER_FRACTION", "0.5")  # of 2, then 3 users
    monkeypatch.delenv("TMDB_API_KEY", raising=False)
    monkeypatch.delenv("TMDB_API_TOKEN", raising=False)
    log = data_dir / "raw" / "feedback" / "events.jsonl"

    def post(user_id: int, movie_id: int, event: str = "view") -> None:
        append_events(
            log, [FeedbackEvent(user_id=user_id, movie_id=movie_id, event=event)], max_bytes=1024
        )

    post(1, 3, "like")  # a MovieLens user: always counts
    for user_id in range(1_000, 1_050):  # fake users, one view each
        post(user_id, 1)
    for movie_id in (1, 2, 3):  # two new users with three movies each; the cap admits one a run
        post(9, movie_id)
        post(10, movie_id)
    for _ in range(30):
        post(1, 2)  # identical views: one interaction
    assert len(list(log.parent.glob("events.*.jsonl"))) >= 5

    manifest = data_pipeline(ratings=str(dataset), crawl=False)

    processed = data_dir / "processed"
    feedback = pl.read_parquet(processed / "interactions.parquet").filter(source="feedback")
    assert sorted(feedback.select("user_id", "movie_id", "rating").rows()) == [
        (1, 2, 3.0),
        (1, 3, 5.0),
        (9, 1, 3.0),
        (9, 2, 3.0),
        (9, 3, 3.0),
    ]
    summary = next(s for s in manifest["validation"] if s["table"] == "feedback_users")
    assert (summary["new_users"], summary["held_users"], summary["rejected"]) == (1, 51, 53)
    held = pl.read_parquet(processed / "quarantine" / "feedback_users.parquet")
    assert held.group_by("reason").agg(pl.col("user_id").n_unique()).sort("reason").rows() == [
        (TOO_FEW_MOVIES.format(3), 50),
        (OVER_NEW_USER_CAP.format(1), 1),
    ]

    data_pipeline(ratings=str(dataset), crawl=False)  # user 9 is known now: user 10 enters

    users = pl.read_parquet(processed / "interactions.parquet")["user_id"].unique().sort()
    assert users.to_list() == [1, 2, 9, 10]
