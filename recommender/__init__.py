"""The domain library: all logic as plain typed Python, grouped by lifecycle stage.

``data`` (crawl, load, validate, logs) -> ``features`` (polars features, feature store) ->
``modeling`` (ALS, metrics, splits, tuning, evaluation) -> ``tracking`` (MLflow runs and
registry) -> ``serving`` (the API's logic); ``settings`` holds the configuration. Nothing here
imports Prefect or BentoML.
"""
