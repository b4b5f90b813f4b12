"""What the HTTP API does without BentoML: the endpoints' logic, the catalog, the served-model
format."""
