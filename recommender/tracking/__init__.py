"""MLflow: logging training runs, the registry with its aliases and promotion gate, the pyfunc."""
