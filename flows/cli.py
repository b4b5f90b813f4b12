"""The ``movierec`` command line: each sub-command runs one flow (or the evaluation, or the
simulated audience).

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
from pathlib import Path  # noqa: E402
from typing import get_args  # noqa: E402

from recommender.modeling.protocol import DEFAULT_PROTOCOL, SplitKind  # noqa: E402
from recommender.settings import get_settings  # noqa: E402


def _whole(text: str) -> int:
    try:
        return int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a whole number, got {text!r}") from None


def _real(text: str) -> float:
    try:
        return float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number, got {text!r}") from None


def _positive_int(text: str) -> int:
    value = _whole(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, got {value}")
    return value


def _seed(text: str) -> int:
    value = _whole(text)
    if value < 0:
        raise argparse.ArgumentTypeError(f"must be at least 0, got {value}")
    return value


def _fraction(text: str) -> float:
    value = _real(text)
    if not 0 < value < 1:
        raise argparse.ArgumentTypeError(f"must be between 0 and 1 (exclusive), got {value}")
    return value


def _probability(text: str) -> float:
    value = _real(text)
    if not 0 <= value <= 1:
        raise argparse.ArgumentTypeError(f"must be a probability between 0 and 1, got {value}")
    return value


def _non_negative(text: str) -> float:
    value = _real(text)
    if not 0 <= value < float("inf"):
        raise argparse.ArgumentTypeError(f"must be a finite number >= 0, got {value}")
    return value


def _positive_seconds(text: str) -> float:
    value = _non_negative(text)
    if value == 0:
        raise argparse.ArgumentTypeError("must be more than 0")
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


def _cmd_simulate(args: argparse.Namespace) -> int:
    """Write the training part and exit, or run the simulated audience against the service."""
    from recommender.experiments import audience as sim

    settings = get_settings()
    test_fraction = args.test_fraction or sim.DEFAULT_TEST_FRACTION
    split_seed = sim.DEFAULT_SPLIT_SEED if args.split_seed is None else args.split_seed
    split_options = {
        "test_fraction": test_fraction,
        "seed": split_seed,
        "cache_dir": settings.movielens_cache_dir,
        "max_rejected_fraction": settings.max_rejected_fraction,
    }
    source = args.ratings or settings.ratings_source
    if args.write_training_part is not None:
        out = args.write_training_part
        split = sim.write_training_part(source, out, **split_options)
        print(
            f"wrote {split.train.height:,} training ratings to {out}; "
            f"{split.test.height:,} ratings of {len(split.audience):,} users held out"
        )
        same_split = f"--test-fraction {test_fraction:g} --split-seed {split_seed}"
        ratings = f" --ratings {args.ratings}" if args.ratings else ""
        print("next (training and serving must share one BentoML home):")
        print("  export BENTOML_HOME=var/bentoml")
        print(f"  movierec data --ratings {out} --no-crawl")
        print("  movierec train")
        # Trusted hops 1: each simulated user's X-Forwarded-For makes it a client of its own
        # for the feedback rate limit, instead of all of them sharing 127.0.0.1's.
        print(
            "  MOVIEREC_TRUSTED_PROXY_HOPS=1 bentoml serve bentos.service:MovieRecommender"
            "   # in another terminal, with the same BENTOML_HOME"
        )
        print(f"  movierec simulate{ratings} {same_split}")
        return 0
    sim.check_loopback(args.url)  # before the seconds that loading the audience takes
    audience = sim.load_audience(source, **split_options)
    options = ("p_hit", "p_miss", "p_like", "position_bias")
    clicks = sim.ClickModel(
        **{name: getattr(args, name) for name in options if getattr(args, name) is not None}
    )

    def progress(result: sim.SimulationResult) -> None:
        print(
            f"simulate: {result.requests} requests ({result.requests_per_second:.1f}/s), "
            f"{result.clicks} clicks, {result.errors} errors, {result.elapsed_seconds:.0f} s",
            file=sys.stderr,
            flush=True,
        )

    try:
        result = sim.simulate(
            args.url,
            audience,
            clicks,
            seed=args.seed,
            max_requests=args.requests,
            max_seconds=args.seconds,
            concurrency=args.concurrency,
            k=args.k,
            progress=progress,
        )
    except sim.SimulationError as exc:
        if _debug():
            raise
        if exc.result is not None and exc.result.impressions:  # what it did before it stopped
            print(exc.result.summary(), file=sys.stderr)
        print(f"movierec simulate: error: {exc}", file=sys.stderr)
        return 2
    print(json.dumps(result.to_dict()) if args.json else result.summary())
    return 0


def _add_simulate_arguments(parser: argparse.ArgumentParser) -> None:
    """The options of ``simulate``; a missing default is that of
    ``recommender.experiments.audience`` (not imported here: it is slow to import)."""
    parser.add_argument(
        "--url", default="http://127.0.0.1:3000", help="the service, loopback only (%(default)s)"
    )
    parser.add_argument(
        "--requests",
        type=_positive_int,
        default=2000,
        help="at most this many requests (%(default)s)",
    )
    parser.add_argument(
        "--seconds",
        type=_positive_seconds,
        default=300.0,
        help="at most this many seconds (%(default)g)",
    )
    parser.add_argument(
        "--seed", type=_seed, default=0, help="which users, which clicks (%(default)s)"
    )
    parser.add_argument(
        "--concurrency", type=_positive_int, default=4, help="threads, at most 64 (%(default)s)"
    )
    parser.add_argument(
        "--k", type=_positive_int, default=10, help="movies per request (%(default)s)"
    )
    parser.add_argument(
        "--p-hit", type=_probability, help="click probability of a shown held-out movie (0.35)"
    )
    parser.add_argument(
        "--p-miss", type=_probability, help="click probability of any other shown movie (0.02)"
    )
    parser.add_argument(
        "--p-like",
        type=_probability,
        help="probability that a clicked held-out movie is liked (0.5)",
    )
    parser.add_argument(
        "--position-bias",
        type=_non_negative,
        help="b in the click factor 1/r**b of rank r (0: rank does not matter)",
    )
    parser.add_argument(
        "--ratings",
        metavar="PATH_OR_URL",
        help="MovieLens release the audience comes from (default: MOVIEREC_RATINGS_SOURCE, "
        "the embedded ml-latest-small)",
    )
    parser.add_argument(
        "--test-fraction", type=_fraction, help="share of each user's ratings held out (0.2)"
    )
    parser.add_argument("--split-seed", type=_seed, help="the split's seed (42)")
    parser.add_argument("--json", action="store_true", help="print one JSON object on stdout")
    parser.add_argument(
        "--write-training-part",
        type=Path,
        metavar="DIR",
        help="write the training part as a MovieLens directory (for movierec data) and exit",
    )


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

    simulate = commands.add_parser(
        "simulate",
        help="simulated MovieLens users request recommendations from the running service and "
        "click their held-out movies",
        description="Simulated users (a MovieLens test split) request recommendations from the "
        "service on this machine and post clicks and likes, more often on the movies they held "
        "out. Train the served model on --write-training-part's output first, or the held-out "
        "movies are never shown.",
    )
    _add_simulate_arguments(simulate)
    simulate.set_defaults(handler=_cmd_simulate)
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
