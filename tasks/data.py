"""Tasks of the data flow: thin shells over ``recommender``; retries live in the decorators."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pandera.polars as pa
import polars as pl
from prefect import Task, task
from prefect.artifacts import create_markdown_artifact
from prefect.cache_policies import NO_CACHE
from prefect.client.schemas.objects import State, TaskRun

from recommender.data import catalog, feedback, ingest, movielens, schemas, storage, tmdb
from recommender.data.crawler import is_transient


def _transient_failure(task: Task[..., Any], task_run: TaskRun, state: State[Any]) -> bool:
    """Retry only what can succeed on retry: a malformed file or a failed validation cannot."""
    try:
        state.result()
    except Exception as exc:  # noqa: BLE001 (the failure itself, classified, not swallowed)
        return is_transient(exc)
    return False


NETWORK_RETRIES: dict[str, Any] = {
    "retries": 3,
    "retry_delay_seconds": [2, 5, 15],
    "retry_condition_fn": _transient_failure,
}


@task(**NETWORK_RETRIES, cache_policy=NO_CACHE)
def load_movielens(source: str, cache_dir: Path) -> movielens.MovieLensData:
    """Read a MovieLens directory, zip or URL."""
    return movielens.load_movielens(source, cache_dir=cache_dir)


@task(**NETWORK_RETRIES, cache_policy=NO_CACHE)
def crawl_tmdb(
    out_dir: Path, config: tmdb.CrawlConfig, pages: int | None, movie_ids: list[int]
) -> tmdb.CrawlReport:
    """Crawl TMDB into ``out_dir`` (resuming)."""
    return tmdb.crawl_tmdb(out_dir, config, pages=pages, movie_ids=movie_ids)


@task(cache_policy=NO_CACHE)
def load_tmdb_details(tmdb_dir: Path) -> pl.DataFrame:
    """The crawled TMDB movie details (empty when nothing was crawled)."""
    return tmdb.load_tmdb_details(tmdb_dir)


@task(cache_policy=NO_CACHE)
def read_feedback(path: Path) -> feedback.EventLog:
    """The served feedback events."""
    return feedback.read_events(path)


@task(cache_policy=NO_CACHE)
def validate_table(
    df: pl.DataFrame,
    schema: type[pa.DataFrameModel],
    name: str,
    max_rejected_fraction: float,
    processed_dir: Path,
) -> schemas.ValidationResult:
    """Validate one table; rejected rows go to its quarantine table."""
    return ingest.validate_table(
        df,
        schema,
        name=name,
        max_rejected_fraction=max_rejected_fraction,
        processed_dir=processed_dir,
    )


@task(cache_policy=NO_CACHE)
def validate_feedback(
    log: feedback.EventLog, max_rejected_fraction: float, processed_dir: Path
) -> schemas.ValidationResult:
    """Validate the feedback events and count unparseable lines as rejected."""
    return ingest.validate_feedback(
        log, max_rejected_fraction=max_rejected_fraction, processed_dir=processed_dir
    )


@task(cache_policy=NO_CACHE)
def quarantine_orphans(
    ratings: schemas.ValidationResult,
    movies: schemas.ValidationResult,
    source: str,
    max_rejected_fraction: float,
    processed_dir: Path,
) -> schemas.ValidationResult:
    """Quarantine ratings of movies the validated movies lack; no ratings at all is an error."""
    return ingest.quarantine_orphans(
        ratings,
        movies.valid.get_column("movie_id"),
        source=source,
        max_rejected_fraction=max_rejected_fraction,
        processed_dir=processed_dir,
    )


@task(cache_policy=NO_CACHE)
def admit_feedback_users(
    feedback_result: schemas.ValidationResult,
    ratings: schemas.ValidationResult,
    interactions_table: Path,
    min_movies: int,
    max_new_fraction: float,
    processed_dir: Path,
) -> schemas.ValidationResult:
    """Hold back feedback-only users below the minimum activity, and new ones past the cap."""
    return ingest.admit_feedback_users(
        feedback_result,
        ratings.valid.get_column("user_id"),
        ingest.previous_users(interactions_table),
        min_movies=min_movies,
        max_new_fraction=max_new_fraction,
        processed_dir=processed_dir,
    )


@task(cache_policy=NO_CACHE)
def build_catalog(movies: pl.DataFrame, links: pl.DataFrame, details: pl.DataFrame) -> pl.DataFrame:
    """Join MovieLens movies and links with the TMDB details."""
    return catalog.build_catalog(movies, links, details if details.height else None)


@task(cache_policy=NO_CACHE)
def combine_interactions(ratings: pl.DataFrame, events: pl.DataFrame) -> pl.DataFrame:
    """MovieLens ratings plus positive feedback events."""
    return ingest.combine_interactions(ratings, events)


@task(cache_policy=NO_CACHE)
def new_generation(generations_dir: Path) -> Path:
    """A fresh directory for this run's processed and quarantine tables."""
    return storage.new_generation(generations_dir)


@task(cache_policy=NO_CACHE)
def write_processed(
    tables: dict[str, pl.DataFrame],
    generation: Path,
    link: Path,
    sources: list[dict[str, Any]],
    validation: list[dict[str, Any]],
) -> dict[str, Any]:
    """Write the processed tables and their manifest into ``generation``, then publish it as
    ``link`` (an atomic swap: readers see the previous tables or these, never a mix)."""
    manifest = storage.write_tables(
        tables, generation, sources=sources, extra={"validation": validation}
    )
    storage.publish_generation(generation, link)
    return manifest


@task
def publish_validation_summary(results: list[schemas.ValidationResult]) -> None:
    """The validation summary as a Prefect markdown artifact."""
    create_markdown_artifact(
        "# Validation summary\n\n" + schemas.validation_summary_markdown(results),
        key="validation-summary",
        description="Rows in, valid and quarantined per table",
    )
