"""The data flow: crawl TMDB (when credentials exist), ingest, validate, write processed tables."""

from __future__ import annotations

from dataclasses import asdict
from typing import Any

from prefect import flow, get_run_logger

from recommender.data.schemas import LinksSchema, MoviesSchema, RatingsSchema, TmdbDetailsSchema
from recommender.data.tmdb import CrawlConfig
from recommender.settings import get_settings
from tasks import data


@flow(name="data-pipeline", log_prints=True)
def data_pipeline(
    ratings: str | None = None, pages: int | None = None, crawl: bool = True
) -> dict[str, Any]:
    """Build ``<data_dir>/processed/{movies,interactions}.parquet`` and their manifest.

    Args:
        ratings: MovieLens directory, .zip or http(s) URL (default: ``settings.ratings_source``).
        pages: TMDB list pages per list (default: ``settings.crawl_pages``).
        crawl: Crawl TMDB when credentials exist.

    Returns:
        The manifest of the processed tables.
    """
    logger = get_run_logger()
    settings = get_settings()
    processed, limit = settings.processed_dir, settings.max_rejected_fraction
    # Everything this run writes goes to a new generation, published only if the run succeeds.
    generation = data.new_generation(settings.processed_generations_dir)
    logger.info("This run's tables and quarantine go to %s", generation)

    ml = data.load_movielens(ratings or settings.ratings_source, settings.movielens_cache_dir)
    crawl_run = None
    if crawl and settings.has_tmdb_credentials:
        tmdb_ids = ml.links.get_column("tmdb_id").drop_nulls().unique().sort().to_list()
        config = CrawlConfig(**settings.tmdb_crawl_options())
        crawl_run = data.crawl_tmdb.submit(settings.tmdb_dir, config, pages, tmdb_ids)
    elif crawl:
        logger.warning(
            "Skipping the TMDB crawl: no credentials. Set TMDB_API_KEY (v3) or TMDB_API_TOKEN "
            "(v4) to add posters and details; the catalog uses what was crawled before."
        )
    else:
        logger.info("Skipping the TMDB crawl (--no-crawl).")

    # Submitted: the crawl and the validations run concurrently on the configured task runner
    # (MOVIEREC_TASK_RUNNER: threads, or Dask); only the TMDB details wait for the crawl.
    validations = [
        data.validate_table.submit(ml.movies, MoviesSchema, "movies", limit, generation),
        data.validate_table.submit(ml.links, LinksSchema, "links", limit, generation),
        data.validate_table.submit(ml.ratings, RatingsSchema, "ratings", limit, generation),
        data.validate_feedback.submit(data.read_feedback(settings.feedback_log), limit, generation),
    ]
    if crawl_run is not None:
        logger.info("TMDB crawl: %s", asdict(crawl_run.result()))
    details_run = data.validate_table.submit(
        data.load_tmdb_details(settings.tmdb_dir),
        TmdbDetailsSchema,
        "tmdb_details",
        limit,
        generation,
    )
    movies, links, ratings_result, feedback = (run.result() for run in validations)
    ratings_result = data.quarantine_orphans(
        ratings_result, movies, ml.source.uri, limit, generation
    )
    details = details_run.result()
    feedback_users = data.admit_feedback_users(
        feedback,
        ratings_result,
        settings.interactions_table,
        settings.feedback_min_user_movies,
        settings.feedback_max_new_user_fraction,
        generation,
    )
    results = [movies, links, details, ratings_result, feedback, feedback_users]
    data.publish_validation_summary(results)

    catalog = data.build_catalog(movies.valid, links.valid, details.valid)
    interactions = data.combine_interactions(ratings_result.valid, feedback_users.valid)
    sources = [
        {"kind": "movielens", **asdict(ml.source)},
        {"kind": "tmdb", "path": str(settings.tmdb_dir), "movies": details.valid.height},
        {
            "kind": "feedback",
            "path": str(settings.feedback_log),
            "events": feedback_users.valid.height,
        },
    ]
    manifest = data.write_processed(
        {"movies": catalog, "interactions": interactions},
        generation,
        processed,
        sources,
        [result.summary for result in results],
    )
    print(
        f"Processed data in {processed}: movies.parquet ({catalog.height:,} movies), "
        f"interactions.parquet ({interactions.height:,} interactions), manifest.json "
        f"(content hash {manifest['content_hash'][:12]}); quarantine in {processed / 'quarantine'}"
    )
    return manifest
