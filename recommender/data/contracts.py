"""The column contracts: every table's column names and dtypes, defined once.

Writers build their frames with these schemas, readers select by them, the pandera models in
:mod:`recommender.data.schemas` take their dtypes from them (and add the value checks), and the
test builders use them too. A table's columns appear in this order.
"""

from __future__ import annotations

import polars as pl

MOVIES = pl.Schema(
    {
        "movie_id": pl.Int64,
        "title": pl.String,
        "year": pl.Int32,
        "genres": pl.List(pl.String),
    }
)
"""MovieLens movies (one row per movie; ``genres`` empty when none are listed)."""

LINKS = pl.Schema({"movie_id": pl.Int64, "imdb_id": pl.String, "tmdb_id": pl.Int64})
"""MovieLens links (``imdb_id`` keeps its leading zeros)."""

TMDB_DETAILS = pl.Schema(
    {
        "tmdb_id": pl.Int64,
        "tmdb_title": pl.String,
        "poster_path": pl.String,
        "overview": pl.String,
        "popularity": pl.Float64,
        "vote_average": pl.Float64,
        "vote_count": pl.Int64,
        "release_date": pl.String,
    }
)
"""TMDB movie details, one row per crawled movie."""

CATALOG = pl.Schema(
    {
        **MOVIES,
        "imdb_id": LINKS["imdb_id"],
        "tmdb_id": LINKS["tmdb_id"],
        **{
            name: dtype
            for name, dtype in TMDB_DETAILS.items()
            if name not in ("tmdb_id", "tmdb_title")
        },
    }
)
"""The served catalog: movies with their links and TMDB details."""

RATINGS = pl.Schema(
    {
        "user_id": pl.Int64,
        "movie_id": pl.Int64,
        "rating": pl.Float64,
        "timestamp": pl.Int64,
    }
)
"""MovieLens ratings (0.5..5.0, unix seconds)."""

INTERACTIONS = pl.Schema({**RATINGS, "source": pl.String})
"""Training interactions: ratings and positive feedback events, ``source`` naming which."""

IMPRESSION_ID_PATTERN = r"^[0-9a-f]{28}$"
"""An impression id: 12 hex digits of milliseconds since the epoch, then 16 random ones."""

FEEDBACK = pl.Schema(
    {
        "user_id": pl.Int64,
        "movie_id": pl.Int64,
        "event": pl.String,
        "value": pl.Float64,
        "timestamp": pl.Float64,
        "impression_id": pl.String,
    }
)
"""Feedback events as the service logs them (``impression_id``: the answer the movie was
shown in, when the client says)."""

REJECTED_LINES = pl.Schema({"line": pl.Int64, "text": pl.String, "reason": pl.String})
"""Lines of a JSONL log that are not valid records (their 1-based number, text and reason)."""

PREDICTIONS = pl.Schema(
    {
        "user_id": pl.Int64,
        "rank": pl.Int32,
        "movie_id": pl.Int64,
        "score": pl.Float64,
        "fallback": pl.Boolean,
    }
)
"""Batch predictions in long format, one row per (user, rank)."""
