"""The ``movierec`` command line: each sub-command runs one flow (or the evaluation).

Flows run in Prefect's ephemeral mode unless ``PREFECT_API_URL`` points at a Prefect server.
Imports of the flows (and so of Prefect) happen inside the commands that run them.
"""

from __future__ import annotations

from recommender.settings import configure_process

# Before anything imports numpy: OpenBLAS reads its thread count once.
configure_process(flow_logging=True)

import argparse  # noqa: E402
import json  # noqa: E402
import sys  # noqa: E402
from collections.abc import Sequence  # noqa: E402
from typing import get_args  # noqa: E402

from recommender.modeling.protocol import DEFAULT_PROTOCOL, SplitKind  # noqa: E402
from recommender.settings import get_settings  # noqa: E402


def _positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a whole number, got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, got {value}")
    return value


def _fraction(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number, got {text!r}") from None
    if not 0 < value < 1:
        raise argparse.ArgumentTypeError(f"must be between 0 and 1 (exclusive), got {value}")
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


def _add_protocol_arguments(parser: argparse.ArgumentParser, defaults: dict[str, object]) -> None:
    """The evaluation protocol's options; a missing default means "from the settings"."""
    where = "" if defaults else " (default: the settings, MOVIEREC_*)"
    parser.add_argument(
        "--split", choices=get_args(SplitKind), default=defaults.get("split"), help=where
    )
    parser.add_argument("--test-fraction", type=_fraction, default=defaults.get("test_fraction"))
    parser.add_argument("--seed", type=int, default=defaults.get("seed"))
    parser.add_argument("--k", type=_positive_int, default=defaults.get("k"))
    parser.add_argument(
        "--trials", type=_positive_int, default=defaults.get("trials"), help="ALS configurations"
    )
    parser.add_argument(
        "--min-rating",
        type=float,
        default=defaults.get("min_rating"),
        help="count only ratings >= this as interactions (default: every rating counts)",
    )


def _protocol_options(args: argparse.Namespace) -> dict[str, object]:
    from recommender.modeling.protocol import EvaluationProtocol

    return {name: getattr(args, name) for name in EvaluationProtocol.model_fields}


def _cmd_data(args: argparse.Namespace) -> int:
    from flows.data_pipeline import data_pipeline
    from flows.task_runners import configured_task_runner

    runner = configured_task_runner(get_settings())  # MOVIEREC_TASK_RUNNER: thread or dask
    data_pipeline.with_options(task_runner=runner)(
        ratings=args.ratings, pages=args.pages, crawl=not args.no_crawl
    )
    return 0


def _cmd_train(args: argparse.Namespace) -> int:
    from flows.training import training_flow

    training_flow(**_protocol_options(args), feature_version=args.feature_version, model=args.model)
    return 0


def _cmd_rollback(args: argparse.Namespace) -> int:
    from flows.rollback import rollback_flow

    rollback_flow()
    return 0


def _cmd_predict(args: argparse.Namespace) -> int:
    from flows.batch_prediction import batch_prediction_flow

    batch_prediction_flow(k=args.k)
    return 0


def _cmd_monitor(args: argparse.Namespace) -> int:
    from flows.monitoring import monitoring_flow

    monitoring_flow(k=args.k)
    return 0


def _cmd_evaluate(args: argparse.Namespace) -> int:
    from recommender.modeling.evaluation import evaluate_ratings_source
    from recommender.modeling.protocol import EvaluationProtocol

    settings = get_settings()
    protocol = EvaluationProtocol(**_protocol_options(args))
    report = evaluate_ratings_source(
        args.ratings,
        protocol,
        cache_dir=settings.movielens_cache_dir,
        max_rejected_fraction=settings.max_rejected_fraction,
    )
    print(json.dumps(report.to_dict()) if args.json else report.table())
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

    train = commands.add_parser(
        "train", help="build features, tune, train, evaluate, log to MLflow, promotion gate"
    )
    _add_protocol_arguments(train, {})
    train.add_argument(
        "--feature-version", help="train on this stored feature version (default: build anew)"
    )
    train.add_argument(
        "--model",
        choices=("als", "popularity"),
        default="als",
        help="als (tuned), or the most-popular baseline as a servable model, e.g. as an "
        "experiment's other arm (default: als)",
    )
    train.set_defaults(handler=_cmd_train)

    rollback = commands.add_parser(
        "rollback",
        help="give champion back to the version it replaced and rebuild the Bento with it",
    )
    rollback.set_defaults(handler=_cmd_rollback)

    predict = commands.add_parser(
        "predict", help="write the champion's top-k for every known user as Parquet"
    )
    predict.add_argument("--k", type=_positive_int, help="per user (default: MOVIEREC_K)")
    predict.set_defaults(handler=_cmd_predict)

    monitor = commands.add_parser(
        "monitor",
        help="data and recommendation drift against the champion; emits retraining events",
    )
    monitor.add_argument(
        "--k",
        type=_positive_int,
        help="list length of batch predictions made when the champion has none "
        "(default: MOVIEREC_K)",
    )
    monitor.set_defaults(handler=_cmd_monitor)

    evaluate = commands.add_parser(
        "evaluate", help="score tuned ALS and the baselines on a MovieLens dataset"
    )
    evaluate.add_argument("--ratings", metavar="PATH_OR_URL", required=True)
    _add_protocol_arguments(evaluate, DEFAULT_PROTOCOL.model_dump())
    evaluate.add_argument("--json", action="store_true", help="print one JSON object on stdout")
    evaluate.set_defaults(handler=_cmd_evaluate)

    demo = commands.add_parser("demo", help="run the whole lifecycle on the embedded data")
    _add_data_arguments(demo)
    demo.set_defaults(handler=_cmd_demo)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``movierec`` console script."""
    args = build_parser().parse_args(argv)
    try:
        return args.handler(args)
    except (KeyError, IndexError):
        raise  # lookups that fail inside our code are bugs: keep their traceback
    except (ValueError, LookupError, OSError) as exc:
        # Bad input (files, URLs, settings), missing prerequisites (no processed data, no
        # champion) and unreachable servers raise these with a message that says what to fix;
        # MOVIEREC_DEBUG=1 shows the traceback.
        if _debug():
            raise
        print(f"movierec {args.command}: error: {exc}", file=sys.stderr)
        return 2


def _debug() -> bool:
    from recommender.settings import SettingsError

    try:
        return get_settings().debug
    except SettingsError:
        return False


if __name__ == "__main__":
    sys.exit(main())
