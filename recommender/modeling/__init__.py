"""The model and its offline evaluation: ALS, metrics, the evaluation protocol, splits, tuning,
baselines and the evaluation report."""
