"""The data stage: the TMDB crawler, MovieLens loading, the feedback log, the durable JSONL log
primitive, column contracts, pandera schemas with quarantine, the catalog and table storage."""
