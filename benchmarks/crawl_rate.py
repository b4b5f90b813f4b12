"""Crawl rate against the fake TMDB with injected 429s and 5xx: the achieved requests/s against the
limit R (target >= 95 % of R) and the busiest 1-second sliding window the server saw (must be <= R).

    uv run python benchmarks/crawl_rate.py                       # R=200: 500 pages, 10,000 movies
    uv run python benchmarks/crawl_rate.py --rate 40 --pages 50  # TMDB's default limit, ~30 s
    uv run python benchmarks/crawl_rate.py --pages 15 --fault-rate 0.0526 --body-faults
        # one answer in 19 a 200 with a cut-short, non-JSON or dropped body: none may be lost

Exits 1 when either target is missed.
"""

from __future__ import annotations

import argparse
import logging
import math
import tempfile
from pathlib import Path

from pydantic import SecretStr

from recommender.data.crawler import RetryPolicy
from recommender.data.tmdb import TMDBCrawler
from support.fake_tmdb import (
    BAD_GATEWAY,
    DROPPED,
    MALFORMED_JSON,
    NOT_JSON,
    PER_PAGE,
    RATE_LIMITED,
    SERVER_ERROR,
    UNAVAILABLE,
    FakeTMDB,
    max_in_window,
)


def main(argv: list[str] | None = None) -> int:
    """Run the benchmark; return the exit status."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rate", type=float, default=200.0, help="rate limit R, requests/s")
    parser.add_argument("--pages", type=int, default=500, help="popular list pages (1..500)")
    parser.add_argument(
        "--concurrency",
        type=int,
        default=16,
        help="worker threads (spares cover the ones sleeping on Retry-After or backoff)",
    )
    parser.add_argument("--fault-rate", type=float, default=0.03, help="fraction of faults")
    parser.add_argument(
        "--body-faults",
        action="store_true",
        help="faults are 200s with a cut-short, non-JSON or dropped body instead of 429/5xx",
    )
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s: %(message)s")

    faults = [RATE_LIMITED, SERVER_ERROR, BAD_GATEWAY, UNAVAILABLE]
    if args.body_faults:
        faults = [MALFORMED_JSON, NOT_JSON, DROPPED]
    with FakeTMDB(movies=args.pages * PER_PAGE) as fake, tempfile.TemporaryDirectory() as tmp:
        fake.random_faults(faults, rate=args.fault_rate, seed=args.seed)
        crawler = TMDBCrawler(
            out_dir=Path(tmp),
            api_key=SecretStr(fake.api_key),
            base_url=fake.base_url,
            rate_limit=args.rate,
            concurrency=args.concurrency,
            retry=RetryPolicy(max_attempts=8),
            progress_every=10.0,
        )
        report = crawler.crawl(lists=["popular"], pages=args.pages)
        seen = fake.requests

    times = [request.time for request in seen]
    faulted = sum(request.faulted for request in seen)
    achieved = len(times) / report.elapsed_s
    busiest = max_in_window(times)
    limit = math.floor(args.rate)
    rate_ok, window_ok = achieved >= 0.95 * args.rate, busiest <= limit
    print(
        f"\nrate limit R             {args.rate:g} req/s, concurrency {args.concurrency}\n"
        f"crawled                  {report.pages_fetched} pages, {report.movies_fetched} movies, "
        f"{report.failures} failures\n"
        f"movies without details   {args.pages * PER_PAGE - report.movies_fetched}\n"
        f"requests                 {len(times)} ({faulted} answered with an injected fault)\n"
        f"total time               {report.elapsed_s:.1f} s\n"
        f"achieved                 {achieved:.1f} req/s = {achieved / args.rate:.1%} of R "
        f"(target >= 95%: {'ok' if rate_ok else 'MISSED'})\n"
        f"busiest 1 s window       {busiest} requests "
        f"(limit {limit}: {'ok' if window_ok else 'EXCEEDED'})"
    )
    return 0 if rate_ok and window_ok and report.failures == 0 else 1


if __name__ == "__main__":
    raise SystemExit(main())
