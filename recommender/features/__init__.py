"""Features with polars (the interaction matrix, movie and user features) and the feature store."""
