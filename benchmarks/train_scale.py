"""The training path at MovieLens-20M scale against a raw implicit fit of the same matrix.

A synthetic ml-latest layout dataset (``ratings.csv``, ``movies.csv``, ``links.csv``; about 138k
users, 27k movies, 20M ratings with power-law movie popularity) is generated once per parameter
set into ``--workdir`` and reused. Then the training path runs in a fresh child process, stage
by stage: load (``load_movielens``), validate (ratings, movies and links with quarantine),
features (``build_feature_tables``, then ``build_interaction_matrix`` on the aggregated
interactions, as the training flow does), fit (``ALSRecommender``, 64 factors, 15 iterations,
default weighting), save (``ALSRecommender.save``) and log (``tracking.connect`` to a temporary
SQLite store and ``log_training_run`` with the saved model). A second child fits
``implicit.cpu.als.AlternatingLeastSquares`` with the same parameters and thread count on the
saved training matrix.

The validated ratings enter the features as interactions (``ratings_to_interactions`` adds the
``source`` column the training data carries). The log stage counts creating the fresh SQLite
store (MLflow's schema migrations, about 2.5 s) and logs a placeholder evaluation report with
zero scores, since evaluation is not part of the measured path.

Targets: training path / raw fit <= 1.3 (evaluation excluded; imports are shown but not
counted) and peak RSS of the training path <= 6 GiB. Each measurement is its own process, so the
generator's memory never counts: the figure is the path child's ``ru_maxrss``, checked against
its ``VmHWM``; per-stage peaks come from a thread sampling ``VmRSS`` every 10 ms. The machine
is shared: each load average is printed, "fit / raw fit" compares the same work on both sides
(far from 1 means the timing was disturbed), and ``--repeat`` compares the fastest runs.

    uv run python benchmarks/train_scale.py                      # full scale, ~3 min (+1.5 min
                                                                 # to generate the data once)
    uv run python benchmarks/train_scale.py --repeat 2           # steadier on a busy machine
    uv run python benchmarks/train_scale.py --ratings 2000000 --users 14000 --movies 10000

The targets are reported (PASS/FAIL lines), not asserted: the exit status is 0 unless a stage
crashed.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import resource
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from recommender.settings import configure_process

GENERATOR_VERSION = 1
RATIO_TARGET = 1.3
RSS_TARGET_GIB = 6.0
GIB = 1 << 30
FACTORS = 64
ITERATIONS = 15
SEED = 42
# MovieLens 20M's rating distribution over the half-star scale.
RATING_VALUES = (0.5, 1.0, 1.5, 2.0, 2.5, 3.0, 3.5, 4.0, 4.5, 5.0)
RATING_SHARES = (0.011, 0.034, 0.014, 0.072, 0.044, 0.214, 0.110, 0.278, 0.077, 0.146)
GENRES = (
    "Action", "Adventure", "Animation", "Children", "Comedy", "Crime", "Documentary", "Drama",
    "Fantasy", "Film-Noir", "Horror", "IMAX", "Musical", "Mystery", "Romance", "Sci-Fi",
    "Thriller", "War", "Western",
)  # fmt: skip
FIRST_TIMESTAMP, LAST_TIMESTAMP = 789_652_009, 1_427_784_002  # ML-20M's range (1995..2015)


# --- the parent: generate (child), run the path (child), run the raw fit (child), report ------


def main(argv: list[str] | None = None) -> int:
    """Run the benchmark; return the exit status."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--users", type=int, default=138_000)
    parser.add_argument("--movies", type=int, default=27_000)
    parser.add_argument("--ratings", type=int, default=20_000_000)
    parser.add_argument("--seed", type=int, default=0, help="seed of the synthetic data")
    parser.add_argument(
        "--workdir",
        type=Path,
        default=Path(tempfile.gettempdir()) / "movierec-train-scale",
        help="cache of generated datasets (one folder per parameter set) and scratch space",
    )
    parser.add_argument("--threads", type=int, default=0, help="ALS threads (0: all cores)")
    parser.add_argument("--regenerate", action="store_true", help="ignore the cached dataset")
    parser.add_argument(
        "--repeat",
        type=int,
        default=1,
        help="run the path and the raw fit this many times (alternating their order) and "
        "compare the fastest of each, the least disturbed by other work on the machine",
    )
    parser.add_argument("--keep", action="store_true", help="keep the model and MLflow store")
    parser.add_argument("--child", nargs=2, metavar=("KIND", "JSON"), help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child:
        return _child(*args.child)
    if min(args.users, args.movies, args.ratings, args.repeat) < 1:
        parser.error("--users, --movies, --ratings and --repeat must be positive")
    if args.ratings > args.users * args.movies // 4:
        parser.error("--ratings must be at most a quarter of --users x --movies")

    configure_process()  # the children inherit it
    workdir = args.workdir.resolve()
    key = f"ml-synth-u{args.users}-m{args.movies}-r{args.ratings}-s{args.seed}-g{GENERATOR_VERSION}"
    dataset = workdir / key
    if args.regenerate and dataset.exists():
        shutil.rmtree(dataset)
    if (dataset / "meta.json").is_file():
        print(f"dataset   {dataset} (cached)")
        generated = None
    else:
        print(f"dataset   generating {dataset} ...", flush=True)
        generated = _run_child(
            "generate",
            {
                "directory": str(dataset),
                "users": args.users,
                "movies": args.movies,
                "ratings": args.ratings,
                "seed": args.seed,
            },
        )
    meta = json.loads((dataset / "meta.json").read_text())
    print(
        f"          {meta['ratings']:,} ratings, {meta['users']:,} users, {meta['movies']:,} "
        f"movies; ratings per movie: max {meta['movie_max']:,}, median {meta['movie_median']:g}, "
        f"{meta['movies_under_10']:,} movies under 10; per user: median "
        f"{meta['user_median']:g}, max {meta['user_max']:,}; ratings.csv "
        f"{meta['ratings_csv_bytes'] / 1e6:,.0f} MB"
        + (f"; generated in {generated['seconds']:.1f} s" if generated else "")
    )

    scratch = Path(tempfile.mkdtemp(prefix="run-", dir=workdir))
    paths: list[dict[str, Any]] = []
    raws: list[dict[str, Any]] = []
    try:
        print(f"scratch   {scratch}", flush=True)
        for repeat in range(args.repeat):
            # Alternate the order (path, raw, raw, path, ...) so that a drift in the machine's
            # load does not always favour the same side.
            order = ("path", "raw") if repeat % 2 == 0 else ("raw", "path")
            for kind in order:
                print(f"load avg  {_loadavg()} before {kind} #{repeat + 1}", flush=True)
                if kind == "path":
                    paths.append(
                        _run_child(
                            "path",
                            {
                                "dataset": str(dataset),
                                "scratch": str(scratch / f"repeat-{repeat + 1}"),
                                "threads": args.threads,
                            },
                        )
                    )
                else:
                    # Any repeat's matrix will do: the path is deterministic (checked below).
                    raws.append(
                        _run_child(
                            "raw",
                            {
                                "model_dir": paths[-1]["model_dir"],
                                "threads": args.threads,
                                "params": paths[-1]["params"],
                            },
                        )
                    )
            print(f"load avg  {_loadavg()} after repeat #{repeat + 1}", flush=True)
    finally:
        if args.keep:
            print(f"kept      {scratch}")
        else:
            shutil.rmtree(scratch, ignore_errors=True)
    _report(paths, raws)
    return 0


def _run_child(kind: str, params: dict[str, Any]) -> dict[str, Any]:
    """Run one measurement in a fresh interpreter (its own ru_maxrss) and return its JSON."""
    with tempfile.NamedTemporaryFile(suffix=".json", delete=False) as handle:
        out = Path(handle.name)
    try:
        subprocess.run(
            [sys.executable, __file__, "--child", kind, json.dumps({**params, "out": str(out)})],
            check=True,
        )
        return json.loads(out.read_text())
    finally:
        out.unlink(missing_ok=True)


def _loadavg() -> str:
    return " ".join(f"{value:.2f}" for value in os.getloadavg())


def _report(paths: list[dict[str, Any]], raws: list[dict[str, Any]]) -> None:
    """Print the fastest run's stages, the raw fit, the ratio and the PASS/FAIL lines.

    With repeats, the ratio compares the fastest path run with the fastest raw fit (each the
    least disturbed by other work); the peak RSS is the largest of all path runs.
    """
    totals = [sum(s["wall"] for s in path["stages"] if s["counted"]) for path in paths]
    path = paths[totals.index(min(totals))]
    stages = path["stages"]
    total = min(totals)
    raw = min(raws, key=lambda r: r["wall"])
    fit = next(stage for stage in stages if stage["name"] == "fit")
    ratio = total / raw["wall"]
    peak = max(max(p["ru_maxrss"], p["vm_hwm"] or 0) for p in paths)
    peak_gib = peak / GIB
    runs = f" (fastest of {len(paths)} runs)" if len(paths) > 1 else ""
    print(
        f"\n{'stage' + runs:<34}{'wall s':>9}{'cpu s':>9}{'peak RSS GiB':>14}{'RSS after GiB':>15}"
    )
    for stage in stages:
        name = stage["name"] if stage["counted"] else f"({stage['name']}, not counted)"
        print(
            f"{name:<34}{stage['wall']:>9.2f}{stage['cpu']:>9.2f}"
            f"{_gib(stage['peak']):>14}{_gib(stage['rss_after']):>15}"
        )
    counted_cpu = sum(stage["cpu"] for stage in stages if stage["counted"])
    overhead = total - fit["wall"]
    print(f"{'training path':<34}{total:>9.2f}{counted_cpu:>9.2f}{_gib(peak):>14}")
    print(f"{'  of which around the fit':<34}{overhead:>9.2f}")
    print(
        f"{'raw implicit fit':<34}{raw['wall']:>9.2f}{raw['cpu']:>9.2f}{_gib(raw['ru_maxrss']):>14}"
    )
    if len(paths) > 1:
        print(
            "\nper run         path "
            + ", ".join(f"{t:.1f}" for t in totals)
            + " s; raw fit "
            + ", ".join(f"{r['wall']:.1f}" for r in raws)
            + " s"
        )
    same = all(r["same_factors"] for r in raws)
    print(
        f"\nmatrix          {path['n_users']:,} users x {path['n_movies']:,} movies, "
        f"{path['nnz']:,} entries; {path['valid']:,} valid ratings of {path['rows']:,}\n"
        f"code            {path['code']}\n"
        f"threads         {raw['threads']} (num_threads={path['threads']} for both), "
        f"OPENBLAS_NUM_THREADS={os.environ.get('OPENBLAS_NUM_THREADS')}, polars "
        f"{path['polars_threads']}\n"
        f"saved model     {path['model_bytes'] / 1e6:,.0f} MB; MLflow artifacts "
        f"{path['artifact_bytes'] / 1e6:,.0f} MB\n"
        f"same factors    {'yes' if same else 'NO'} (raw fit vs the path's fit)\n"
        f"fit / raw fit   {fit['wall'] / raw['wall']:.3f} wall, {fit['cpu'] / raw['cpu']:.3f} cpu "
        f"(the same work: a wall ratio far from 1 means the machine was busy)\n"
        f"peak RSS        {peak_gib:.2f} GiB: the training path child's ru_maxrss "
        f"(VmHWM {_gib(path['vm_hwm'])} GiB); the raw fit child: "
        f"{raw['ru_maxrss'] / GIB:.2f} GiB\n"
        f"ratio           {total:.2f} s / {raw['wall']:.2f} s = {ratio:.3f} "
        f"(cpu {counted_cpu / raw['cpu']:.3f})\n"
    )
    print(
        f"{'PASS' if ratio <= RATIO_TARGET else 'FAIL'}  training path / raw fit "
        f"{ratio:.3f} (target <= {RATIO_TARGET})"
    )
    print(
        f"{'PASS' if peak_gib <= RSS_TARGET_GIB else 'FAIL'}  peak RSS {peak_gib:.2f} GiB "
        f"(target <= {RSS_TARGET_GIB:g} GiB)"
    )


def _gib(value: int | None) -> str:
    return "-" if value is None else f"{value / GIB:.2f}"


# --- the children -------------------------------------------------------------------------------


def _child(kind: str, params_json: str) -> int:
    params = json.loads(params_json)
    out = Path(params.pop("out"))
    result = {"generate": _generate, "path": _training_path, "raw": _raw_fit}[kind](**params)
    result["ru_maxrss"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    result["vm_hwm"] = _status_bytes("VmHWM")
    out.write_text(json.dumps(result))
    return 0


def _status_bytes(field: str) -> int | None:
    match = re.search(rf"^{field}:\s+(\d+) kB", Path("/proc/self/status").read_text(), re.M)
    return int(match.group(1)) * 1024 if match else None


def _cpu_seconds() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


class _Stages:
    """Wall and CPU seconds and peak RSS of each stage of one process.

    The per-stage peak is the largest VmRSS a sampling thread saw during the stage (every
    ``interval`` seconds, so a spike shorter than that can be missed); the process' own
    ``ru_maxrss`` stays untouched and is the authoritative overall peak.
    """

    def __init__(self, interval: float = 0.01) -> None:
        self.rows: list[dict[str, Any]] = []
        self._interval = interval
        self._peak = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._sample, daemon=True)
        self._thread.start()

    def _sample(self) -> None:
        while not self._stop.wait(self._interval):
            self._peak = max(self._peak, _status_bytes("VmRSS") or 0)

    def close(self) -> None:
        self._stop.set()
        self._thread.join()

    @contextmanager
    def __call__(self, name: str, *, counted: bool = True) -> Iterator[None]:
        self._peak = _status_bytes("VmRSS") or 0
        wall, cpu = time.perf_counter(), _cpu_seconds()
        yield
        wall, cpu = time.perf_counter() - wall, _cpu_seconds() - cpu
        rss = _status_bytes("VmRSS") or 0
        self.rows.append(
            {
                "name": name,
                "counted": counted,
                "wall": wall,
                "cpu": cpu,
                "peak": max(self._peak, rss),
                "rss_after": rss,
            }
        )
        print(f"  {name}: {wall:.2f} s", file=sys.stderr, flush=True)


def _generate(*, directory: str, users: int, movies: int, ratings: int, seed: int) -> dict:
    """Write ratings.csv, movies.csv, links.csv and meta.json into ``directory`` (atomically)."""
    import numpy as np
    import polars as pl

    started = time.perf_counter()
    rng = np.random.default_rng(seed)
    target = Path(directory)
    # MovieLens movie ids are sparse (ML-20M: 27k ids up to 131k); popularity is unrelated to id.
    movie_ids = np.sort(rng.choice(np.arange(1, 5 * movies + 1), size=movies, replace=False))
    # Zipf-Mandelbrot popularity, fitted to ML-20M's top movie (~67k ratings), the 1000th
    # (~3k) and the median (~18); the offset scales with the catalog.
    ranks = np.arange(1, movies + 1, dtype=np.float64)
    weights = (ranks + 300.0 * movies / 27_000) ** -2.25
    movie_p = np.empty(movies)
    movie_p[rng.permutation(movies)] = weights / weights.sum()
    # User activity: log-normal like ML-20M (median ~68 ratings, mean ~144).
    activity = rng.lognormal(np.log(68.0), 1.25, size=users)
    user_p = activity / activity.sum()

    # Draw (user, movie) pairs, keep the distinct ones and draw again for the shortfall;
    # popular movies saturate (a user rates a movie once), as in the real data.
    keys = np.empty(0, dtype=np.int64)
    oversample = 1.1
    for _ in range(100):
        need = ratings - len(keys)
        if need <= 0:
            break
        draw = int(need * oversample) + 1000
        pairs = rng.choice(users, size=draw, p=user_p).astype(np.int64) * movies + rng.choice(
            movies, size=draw, p=movie_p
        )
        before = len(keys)
        keys = np.unique(np.concatenate([keys, pairs]))
        gained = len(keys) - before
        oversample = min(max(draw / max(gained, 1), 1.05) * 1.05, 20.0)
    if len(keys) > ratings:
        keys = np.delete(keys, rng.choice(len(keys), size=len(keys) - ratings, replace=False))
    user_col, movie_col = np.divmod(keys, movies)
    del keys
    n = len(user_col)
    shares = np.asarray(RATING_SHARES) / sum(RATING_SHARES)
    frame = pl.DataFrame(
        {
            "userId": (user_col + 1).astype(np.int64),
            "movieId": movie_ids[movie_col],
            "rating": np.asarray(RATING_VALUES)[rng.choice(len(RATING_VALUES), size=n, p=shares)],
            "timestamp": rng.integers(FIRST_TIMESTAMP, LAST_TIMESTAMP, size=n, dtype=np.int64),
        }
    )
    movie_counts = np.bincount(movie_col, minlength=movies)
    user_counts = np.bincount(user_col, minlength=users)
    del user_col, movie_col

    tmp = target.with_name(f".{target.name}.{os.getpid()}.tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    frame.write_csv(tmp / "ratings.csv")
    del frame
    years = rng.integers(1900, 2016, size=movies)
    n_genres = rng.integers(1, 4, size=movies)
    picks = rng.random((movies, len(GENRES))).argsort(axis=1)[:, :3]
    genres = ["|".join(GENRES[g] for g in sorted(picks[i, : n_genres[i]])) for i in range(movies)]
    no_genres = rng.random(movies) < 0.01
    pl.DataFrame(
        {
            "movieId": movie_ids,
            # Some titles need CSV quoting, as in MovieLens ("American President, The (1995)").
            "title": [
                f"Synthetic Movie {m}{', The' if m % 7 == 0 else ''} ({y})"
                for m, y in zip(movie_ids.tolist(), years.tolist(), strict=True)
            ],
            "genres": [
                "(no genres listed)" if empty else g
                for g, empty in zip(genres, no_genres.tolist(), strict=True)
            ],
        }
    ).write_csv(tmp / "movies.csv")
    pl.DataFrame(
        {
            "movieId": movie_ids,
            "imdbId": [f"{i:07d}" for i in rng.integers(1, 9_999_999, size=movies).tolist()],
            "tmdbId": rng.choice(np.arange(2, 10 * movies), size=movies, replace=False),
            "missing": rng.random(movies) < 0.002,  # a few movies have no TMDB id
        }
    ).select(
        "movieId", "imdbId", pl.when(~pl.col("missing")).then(pl.col("tmdbId")).alias("tmdbId")
    ).write_csv(tmp / "links.csv")
    meta = {
        "generator_version": GENERATOR_VERSION,
        "seed": seed,
        "ratings": n,
        "users": int((user_counts > 0).sum()),
        "movies": int((movie_counts > 0).sum()),
        "movie_max": int(movie_counts.max()),
        "movie_median": float(np.median(movie_counts)),
        "movies_under_10": int((movie_counts < 10).sum()),
        "user_median": float(np.median(user_counts)),
        "user_max": int(user_counts.max()),
        "ratings_csv_bytes": (tmp / "ratings.csv").stat().st_size,
    }
    (tmp / "meta.json").write_text(json.dumps(meta, indent=2) + "\n")
    if target.exists():
        shutil.rmtree(target)
    os.replace(tmp, target)
    return {"seconds": time.perf_counter() - started}


def _training_path(*, dataset: str, scratch: str, threads: int) -> dict[str, Any]:
    stage = _Stages()
    with stage("imports", counted=False):
        import numpy as np
        import polars as pl

        from recommender.data.ingest import ratings_to_interactions
        from recommender.data.movielens import load_movielens
        from recommender.data.schemas import (
            LinksSchema,
            MoviesSchema,
            RatingsSchema,
            validate_frame,
        )
        from recommender.features.build import build_feature_tables, build_interaction_matrix
        from recommender.modeling.als import ALSConfig, ALSParams, ALSRecommender
        from recommender.modeling.evaluation import EvaluationReport, ModelScores
        from recommender.modeling.splits import Split
        from recommender.modeling.tuning import TuningResult
        from recommender.settings import Settings
        from recommender.tracking import runs as tracking

    with stage("load"):
        data = load_movielens(dataset)
    rows = data.ratings.height
    with stage("validate"):
        ratings = validate_frame(
            data.ratings, RatingsSchema, name="ratings", max_rejected_fraction=0.01
        ).valid
        movies = validate_frame(
            data.movies, MoviesSchema, name="movies", max_rejected_fraction=0.01
        ).valid
        validate_frame(data.links, LinksSchema, name="links", max_rejected_fraction=0.01)
        source = data.source
        del data  # the raw frames are not needed past validation
    with stage("features: tables"):
        tables = build_feature_tables(ratings_to_interactions(ratings), movies)
        del ratings
    with stage("features: matrix"):
        # As the training flow: the matrix from the stored, aggregated interactions.
        matrix = build_interaction_matrix(tables["interactions"])
    params = ALSParams(factors=FACTORS, iterations=ITERATIONS)
    with stage("fit"):
        model = ALSRecommender(params, random_state=SEED, num_threads=threads).fit(
            matrix, movies=tables["movie_features"]
        )
    model_dir = Path(scratch) / "model"
    with stage("save"):
        model.save(model_dir)
    settings = Settings(data_dir=Path(scratch), mlflow_tracking_uri=None)
    with stage("log: connect"):
        tracking.connect(
            settings.mlflow_uri,
            experiment=settings.mlflow_experiment,
            artifact_root=settings.mlflow_artifacts_dir,
        )
    with stage("log: run + model"):
        # No evaluation ran: a report with zero scores stands in, so the run logs what the
        # training flow logs (params, metrics, report, plot, inputs, pyfunc model) at this size.
        config = ALSConfig(als=params)
        empty = tables["interactions"].head(0)
        scores = ModelScores(
            precision=0.0,
            recall=0.0,
            ndcg=0.0,
            map=0.0,
            coverage=0.0,
            params=config.to_dict(),
            curves={m: [0.0] * 10 for m in ("precision", "recall", "ndcg", "map")},
        )
        no_rows = np.empty(0, dtype=np.int64)
        report = EvaluationReport(
            dataset="ml-synth",
            split="random-per-user",
            test_fraction=0.25,
            seed=SEED,
            k=10,
            min_rating=None,
            n_users=len(matrix.users),
            n_train=matrix.matrix.nnz,
            n_test=0,
            n_movies=len(matrix.movies),
            ks=list(range(1, 11)),
            models={"als": scores},
            tuning=TuningResult(
                best=config,
                validation_ndcg=0.0,
                trials=[],
                popularity_validation_ndcg=0.0,
                split=Split(empty, no_rows, no_rows, "random-per-user", 0.25, SEED),
                seconds=0.0,
            ),
            seconds=0.0,
        )
        run_id, _ = tracking.log_training_run(
            report=report,
            model_dir=model_dir,
            feature_version="benchmark",
            features=tables["interactions"],
            feature_path=Path(scratch) / "features",
            data_manifest={"content_hash": source.sha256, "source": source.uri},
            params={"benchmark": "train_scale", "threads": threads},
        )
    stage.close()
    artifacts = Path(scratch) / "mlflow" / "artifacts"
    return {
        "stages": stage.rows,
        "rows": rows,
        "valid": tables["interactions"].height,
        "n_users": len(matrix.users),
        "n_movies": len(matrix.movies),
        "nnz": int(matrix.matrix.nnz),
        "threads": threads,
        "params": {"regularization": params.regularization, "alpha": params.alpha},
        "model_dir": str(model_dir),
        "model_bytes": _tree_bytes(model_dir),
        "artifact_bytes": _tree_bytes(artifacts),
        "run_id": run_id,
        "polars_threads": pl.thread_pool_size(),
        "code": str(Path(tracking.__file__).parent.parent),
    }


def _tree_bytes(path: Path) -> int:
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file())


def _raw_fit(*, model_dir: str, threads: int, params: dict[str, float]) -> dict[str, Any]:
    import implicit.cpu.als
    import numpy as np
    import threadpoolctl
    from scipy.sparse import load_npz

    # The exact matrix the path fitted (user_items.npz is the training confidences).
    user_items = load_npz(Path(model_dir) / "user_items.npz").tocsr().astype(np.float32)
    with threadpoolctl.threadpool_limits(1, "blas"):
        model = implicit.cpu.als.AlternatingLeastSquares(
            factors=FACTORS,
            iterations=ITERATIONS,
            random_state=SEED,
            num_threads=threads,
            **params,  # regularization and alpha: ALSParams' defaults, as the path used
        )
        wall, cpu = time.perf_counter(), _cpu_seconds()
        model.fit(user_items, show_progress=False)
        wall, cpu = time.perf_counter() - wall, _cpu_seconds() - cpu
    path_model = implicit.cpu.als.AlternatingLeastSquares.load(str(Path(model_dir) / "als.npz"))
    same = bool(
        np.allclose(model.user_factors, path_model.user_factors, atol=1e-5)
        and np.allclose(model.item_factors, path_model.item_factors, atol=1e-5)
    )
    return {
        "wall": wall,
        "cpu": cpu,
        "threads": threads or os.cpu_count(),
        "same_factors": same,
    }


if __name__ == "__main__":
    sys.exit(main())
