"""The ``movierec`` command line: each sub-command runs one flow (or the evaluation).

Flows run in Prefect's ephemeral mode unless ``PREFECT_API_URL`` points at a Prefect server.
Imports of the flows happen inside the commands so that ``movierec --help`` stays fast.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Sequence


def _positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a whole number, got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, got {value}")
    return value


def _add_data_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--ratings",
        metavar="PATH_OR_URL",
        help="MovieLens directory, .zip or http(s) URL (default: the embedded ml-latest-small)",
    )
    parser.add_argument(
        "--pages",
        type=_positive_int,
        help="TMDB list pages to crawl per list (default: MOVIEREC_CRAWL_PAGES, max 500)",
    )
    parser.add_argument(
        "--no-crawl", action="store_true", help="skip the TMDB crawl even when credentials exist"
    )


def _cmd_data(args: argparse.Namespace) -> int:
    from flows.data_pipeline import data_pipeline

    data_pipeline(ratings=args.ratings, pages=args.pages, crawl=not args.no_crawl)
    return 0


def _cmd_demo(args: argparse.Namespace) -> int:
    from flows.demo import demo_flow

    demo_flow(ratings=args.ratings, pages=args.pages, crawl=not args.no_crawl)
    return 0


def build_parser() -> argparse.ArgumentParser:
    """The argument parser of the ``movierec`` command."""
    parser = argparse.ArgumentParser(prog="movierec", description=__doc__.splitlines()[0])
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    data = commands.add_parser("data", help="crawl TMDB, ingest and validate interactions")
    _add_data_arguments(data)
    data.set_defaults(handler=_cmd_data)

    demo = commands.add_parser("demo", help="run the whole lifecycle on the embedded data")
    _add_data_arguments(demo)
    demo.set_defaults(handler=_cmd_demo)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``movierec`` console script."""
    os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")
    # Prefect's console handler shows our library's progress logs (crawl, training) too.
    os.environ.setdefault("PREFECT_LOGGING_EXTRA_LOGGERS", "recommender")
    args = build_parser().parse_args(argv)
    try:
        return args.handler(args)
    except (ValueError, FileNotFoundError) as exc:
        # Bad input (files, URLs, settings) is reported as ValueError or FileNotFoundError
        # subclasses whose message says what to fix; MOVIEREC_DEBUG=1 shows the traceback.
        if os.environ.get("MOVIEREC_DEBUG"):
            raise
        print(f"movierec {args.command}: error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
