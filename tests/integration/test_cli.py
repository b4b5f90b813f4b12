"""The movierec command line as a user runs it: a subprocess, real files, exit codes."""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest

from support.promotion import taste_groups_zip

pytestmark = pytest.mark.integration


def _movierec(*args: str, cwd: Path, **env: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "flows.cli", *args],
        capture_output=True,
        text=True,
        timeout=300,
        cwd=Path(__file__).resolve().parents[2],
        env={"PATH": "/usr/bin:/bin", "MOVIEREC_DATA_DIR": str(cwd), **env},
    )


def _movierec_data(ratings: str, cwd: Path) -> tuple[subprocess.CompletedProcess[str], int]:
    """``movierec data --no-crawl --ratings ratings`` against the session's Prefect server;
    returns the result and how many times the ``load_movielens`` task ran."""
    from prefect.settings import PREFECT_API_URL

    result = _movierec(
        "data", "--no-crawl", "--ratings", ratings, cwd=cwd, PREFECT_API_URL=PREFECT_API_URL.value()
    )
    lines = [
        line for line in (result.stdout + result.stderr).splitlines() if "'load_movielens-" in line
    ]
    # Every attempt but the last ends in "Retry n/3 will start ..."; the last in "Finished in".
    retried = sum(" will start " in line for line in lines)
    return result, retried + sum("Finished in state" in line for line in lines)


@pytest.fixture
def ml100k_zip(tmp_path: Path) -> Path:
    """An ml-100k layout zip: 60 users in two taste groups over 40 movies."""
    return taste_groups_zip(tmp_path / "ml-100k.zip")


def test_evaluate_prints_one_json_object(ml100k_zip: Path, tmp_path: Path) -> None:
    result = _movierec(
        "evaluate",
        "--ratings",
        str(ml100k_zip),
        "--trials",
        "2",
        "--k",
        "5",
        "--json",
        cwd=tmp_path,
    )
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout)
    assert (report["dataset"], report["split"], report["k"]) == ("ml-100k", "random-per-user", 5)
    assert set(report["models"]) == {"als", "popularity", "item_knn"}
    als = report["models"]["als"]
    assert {"precision", "recall", "ndcg", "map", "coverage", "params"} <= set(als)
    # two clean taste groups: ALS must find them, popularity cannot
    assert als["ndcg"] > report["models"]["popularity"]["ndcg"]


def test_evaluate_prints_a_table(ml100k_zip: Path, tmp_path: Path) -> None:
    result = _movierec(
        "evaluate", "--ratings", str(ml100k_zip), "--trials", "1", "--split", "temporal-per-user",
        cwd=tmp_path,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert "ndcg@10" in result.stdout
    assert [line.split()[0] for line in result.stdout.splitlines()[2:5]] == [
        "als",
        "popularity",
        "item_knn",
    ]


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["evaluate", "--ratings", "/nowhere/ml"], "/nowhere/ml"),
        (["evaluate", "--ratings", "x", "--k", "0"], "--k: must be at least 1"),
        (["evaluate", "--ratings", "x", "--test-fraction", "1.5"], "must be between 0 and 1"),
        (["evaluate", "--ratings", "x", "--split", "sideways"], "invalid choice: 'sideways'"),
        (["data", "--pages", "many"], "expected a whole number"),
    ],
)
def test_bad_arguments_say_what_to_fix(args: list[str], message: str, tmp_path: Path) -> None:
    result = _movierec(*args, cwd=tmp_path)
    assert result.returncode == 2
    assert message in result.stderr
    assert "Traceback" not in result.stderr


def test_a_ratings_file_with_bad_rows_names_the_file(tmp_path: Path) -> None:
    bad = tmp_path / "bad"
    bad.mkdir()
    (bad / "movies.csv").write_text("movieId,title,genres\n1,A (1999),Drama\n2,B (2000),Drama\n")
    (bad / "links.csv").write_text("movieId,imdbId,tmdbId\n1,0000001,1\n2,0000002,2\n")
    (bad / "ratings.csv").write_text(
        "userId,movieId,rating,timestamp\nabc,1,4.0,1\n1,2,7.5,2\n2,1,4.0,3\n"
    )
    result = _movierec("evaluate", "--ratings", str(bad), cwd=tmp_path)
    assert result.returncode == 2
    assert f"ratings of {bad}: 2 of 3 rows" in result.stderr
    assert "rating: in_range(0.5, 5.0)" in result.stderr
    assert "Traceback" not in result.stderr


def test_a_malformed_local_ratings_file_fails_at_the_first_attempt(
    prefect_harness: None, tmp_path: Path
) -> None:
    bad = tmp_path / "bad"
    bad.mkdir()
    (bad / "movies.csv").write_text("movieId,title,genres\n1,A (1999),Drama\n")
    (bad / "links.csv").write_text("movieId,imdbId,tmdbId\n1,0000001,1\n")
    (bad / "ratings.csv").write_text("user,item,score\n1,1,4\n")  # not MovieLens columns

    result, attempts = _movierec_data(str(bad), tmp_path / "data")

    assert result.returncode == 2
    assert attempts == 1  # before: 4 attempts over 22 s, each with a traceback
    message = "movierec data: error: " + f"{bad}: ratings.csv lacks the column(s) userId"
    assert result.stderr.strip().splitlines()[-1].startswith(message)


def test_a_download_that_fails_once_is_retried_and_the_run_succeeds(
    prefect_harness: None,
    tmp_path: Path,
    file_server: tuple[str, Path],
    ml_latest_dir: Path,
    make_zip: Callable[..., Path],
) -> None:
    base_url, served = file_server
    make_zip(ml_latest_dir).rename(served / "ml.zip")

    result, attempts = _movierec_data(f"{base_url}/flaky/ml.zip", tmp_path / "data")

    assert result.returncode == 0, result.stderr
    assert attempts == 2  # a 503, then the file
    assert (tmp_path / "data" / "processed" / "manifest.json").is_file()
