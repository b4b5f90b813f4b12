"""Support code shared by the tests and the benchmarks (never by the product): a fake TMDB server,
running servers as subprocesses, and a small model on the embedded sample."""
