"""The data flow: crawl TMDB (when credentials exist), ingest, validate, write processed tables."""

from __future__ import annotations

from dataclasses import asdict
from typing import Any

from prefect import flow, get_run_logger

from recommender.schemas import LinksSchema, MoviesSchema, RatingsSchema, TmdbDetailsSchema
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

    ml = data.load_movielens(
        ratings or settings.ratings_source, settings.data_dir / "cache" / "movielens"
    )
    if crawl and settings.has_tmdb_credentials:
        tmdb_ids = ml.links.get_column("tmdb_id").drop_nulls().unique().sort().to_list()
        report = data.crawl_tmdb(pages, tmdb_ids)
        logger.info("TMDB crawl: %s", asdict(report))
    elif crawl:
        logger.warning(
            "Skipping the TMDB crawl: no credentials. Set TMDB_API_KEY (v3) or TMDB_API_TOKEN "
            "(v4) to add posters and details; the catalog uses what was crawled before."
        )
    else:
        logger.info("Skipping the TMDB crawl (--no-crawl).")

    movies = data.validate_table(ml.movies, MoviesSchema, "movies", limit, processed)
    links = data.validate_table(ml.links, LinksSchema, "links", limit, processed)
    details = data.validate_table(
        data.load_tmdb_details(settings.raw_dir),
        TmdbDetailsSchema,
        "tmdb_details",
        limit,
        processed,
    )
    ratings_result = data.validate_table(ml.ratings, RatingsSchema, "ratings", limit, processed)
    feedback = data.validate_feedback(data.read_feedback(settings.feedback_log), limit, processed)
    results = [movies, links, details, ratings_result, feedback]
    data.publish_validation_summary(results)

    catalog = data.build_catalog(movies.valid, links.valid, details.valid)
    interactions = data.combine_interactions(ratings_result.valid, feedback.valid)
    sources = [
        {"kind": "movielens", **asdict(ml.source)},
        {"kind": "tmdb", "path": str(settings.raw_dir / "tmdb"), "movies": details.valid.height},
        {"kind": "feedback", "path": str(settings.feedback_log), "events": feedback.valid.height},
    ]
    manifest = data.write_processed(
        {"movies": catalog, "interactions": interactions},
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
