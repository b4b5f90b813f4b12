"""Offline evaluation: leakage-free splits, ALS tuning on validation only, baselines, metrics.

The protocol of :func:`evaluate_models`:

1. Interactions are aggregated to one row per (user, movie) (optionally only ratings at least
   ``min_rating``), then split into train and test (:func:`split_interactions`).
2. ALS hyper-parameters are searched on a validation split carved from the train part only,
   with the same split kind (:func:`tune_als`); the test part is never looked at.
3. The chosen configuration is refitted on the whole train part, the popularity and item-kNN
   baselines are fitted on it too, and all three are scored once on the test part.

Scoring follows :mod:`recommender.metrics`: for every user known in training with at least one
test movie that also appears in training (the candidates are the training movies), the top k
excludes the user's training movies.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Literal, TypeVar, get_args

import numpy as np
import polars as pl
from implicit.nearest_neighbours import ItemItemRecommender
from scipy.sparse import csr_matrix

from recommender.features import (
    InteractionMatrix,
    MatrixConfig,
    Weighting,
    aggregate_interactions,
    build_interaction_matrix,
)
from recommender.metrics import (
    catalog_coverage,
    check_k,
    hit_matrix,
    map_at_k,
    ndcg_at_k,
    precision_at_k,
    recall_at_k,
)
from recommender.model import ALSConfig, ALSParams, ALSRecommender, train_als
from recommender.movielens import load_movielens
from recommender.schemas import RatingsSchema, validate_frame

SplitKind = Literal["random-per-user", "random-per-item", "temporal-per-user"]
SPLIT_KINDS: tuple[str, ...] = get_args(SplitKind)
DEFAULT_TRIALS = 16
CURVE_MAX_K = 20
ITEM_KNN_PARAMS: dict[str, Any] = {"K": 200, "K1": 1.2, "B": 0.75}

_T = TypeVar("_T")
_METRICS: dict[str, Callable[[np.ndarray, np.ndarray], float]] = {
    "precision": precision_at_k,
    "recall": recall_at_k,
    "ndcg": ndcg_at_k,
    "map": map_at_k,
}


@dataclass(frozen=True)
class Split:
    """A train/test partition of aggregated interactions.

    ``interactions`` holds one row per (user, movie), sorted by user then movie;
    ``train_index`` and ``test_index`` are disjoint sorted row positions covering all of it.
    """

    interactions: pl.DataFrame
    train_index: np.ndarray
    test_index: np.ndarray
    kind: SplitKind
    test_fraction: float
    seed: int

    @property
    def train(self) -> pl.DataFrame:
        return self.interactions[self.train_index]

    @property
    def test(self) -> pl.DataFrame:
        return self.interactions[self.test_index]


def split_interactions(
    interactions: pl.DataFrame,
    *,
    kind: SplitKind = "random-per-user",
    test_fraction: float = 0.25,
    seed: int = 42,
) -> Split:
    """Split interactions into train and test with no (user, movie) pair in both.

    Repeated pairs are aggregated first (:func:`~recommender.features.aggregate_interactions`),
    so a pair is one row and lands on one side. Each group (a user, or a movie for
    ``random-per-item``) of n rows puts round(n * test_fraction) of them in test, at most n - 1,
    so every user (movie) keeps a training row:

    * ``random-per-user``: a random sample of each user's movies;
    * ``random-per-item``: a random sample of each movie's users;
    * ``temporal-per-user``: each user's latest movies (ties: higher movie id counts as later).

    The result depends only on the set of interactions and ``seed``, not on their row order.
    """
    if kind not in SPLIT_KINDS:
        raise ValueError(f"kind must be one of {', '.join(SPLIT_KINDS)}, got {kind!r}")
    if not 0 < test_fraction < 1:
        raise ValueError(f"test_fraction must be in (0, 1), got {test_fraction}")
    pairs = aggregate_interactions(interactions)
    group = "movie_id" if kind == "random-per-item" else "user_id"
    numbered = pairs.select("user_id", "movie_id", "timestamp").with_row_index("row")
    if kind == "temporal-per-user":
        ordered = numbered.sort(
            ["user_id", "timestamp", "movie_id"], descending=[False, True, True]
        )
    else:
        random_key = np.random.default_rng(seed).random(pairs.height)
        ordered = numbered.with_columns(key=pl.Series(random_key)).sort(group, "key")
    position = pl.int_range(pl.len()).over(group)
    size = pl.len().over(group)
    n_test = pl.min_horizontal((size * test_fraction + 0.5).floor(), size - 1)
    in_test = ordered.select(pl.col("row"), (position < n_test).alias("test"))
    test_rows = in_test.filter(pl.col("test")).get_column("row").to_numpy()
    train_rows = in_test.filter(~pl.col("test")).get_column("row").to_numpy()
    return Split(
        interactions=pairs,
        train_index=np.sort(train_rows).astype(np.int64),
        test_index=np.sort(test_rows).astype(np.int64),
        kind=kind,
        test_fraction=test_fraction,
        seed=seed,
    )


@dataclass(frozen=True)
class SearchSpace:
    """Where :func:`tune_als` samples ALS configurations.

    ``regularization`` and ``alpha`` are (low, high) ranges sampled log-uniformly and rounded
    to two significant digits; the other fields are choices sampled uniformly.
    """

    factors: tuple[int, ...] = (32, 64, 128)
    regularization: tuple[float, float] = (10.0, 100.0)
    alpha: tuple[float, float] = (2.0, 10.0)
    iterations: tuple[int, ...] = (10, 15, 20)
    weighting: tuple[Weighting, ...] = ("binary", "log")

    def sample(self, rng: np.random.Generator, *, min_rating: float | None) -> ALSConfig:
        """One random configuration."""
        return ALSConfig(
            als=ALSParams(
                factors=_choice(rng, self.factors),
                regularization=_log_uniform(rng, self.regularization),
                alpha=_log_uniform(rng, self.alpha),
                iterations=_choice(rng, self.iterations),
            ),
            matrix=MatrixConfig(weighting=_choice(rng, self.weighting), min_rating=min_rating),
        )


@dataclass(frozen=True)
class Trial:
    """One tried configuration and its validation NDCG@k."""

    config: ALSConfig
    validation_ndcg: float
    seconds: float


@dataclass(frozen=True)
class TuningResult:
    """The search's outcome; ``split`` is the train/validation split of the train part."""

    best: ALSConfig
    validation_ndcg: float
    trials: list[Trial]
    split: Split
    seconds: float


@dataclass(frozen=True)
class ModelScores:
    """A model's test metrics at k, its curves over k = 1..len(curve) and its parameters."""

    precision: float
    recall: float
    ndcg: float
    map: float
    coverage: float
    params: dict[str, Any]
    curves: dict[str, list[float]]

    def to_dict(self) -> dict[str, Any]:
        """The metrics at k and the parameters (the curves go to the report's ``curves``)."""
        return {
            "precision": self.precision,
            "recall": self.recall,
            "ndcg": self.ndcg,
            "map": self.map,
            "coverage": self.coverage,
            "params": self.params,
        }


@dataclass(frozen=True)
class EvaluationReport:
    """What :func:`evaluate_models` measured; :meth:`to_dict` is the JSON form."""

    dataset: str
    split: SplitKind
    test_fraction: float
    seed: int
    k: int
    min_rating: float | None
    n_users: int
    n_train: int
    n_test: int
    n_movies: int
    ks: list[int]
    models: dict[str, ModelScores]
    tuning: TuningResult
    seconds: float

    @property
    def best_config(self) -> ALSConfig:
        """The chosen ALS configuration, ready for :func:`recommender.model.train_als`."""
        return self.tuning.best

    @property
    def validation_ndcg(self) -> float:
        """The chosen configuration's NDCG@k on the validation split."""
        return self.tuning.validation_ndcg

    def table(self) -> str:
        """The models' test metrics at k as an aligned text table."""
        metrics = ("precision", "recall", "ndcg", "map", "coverage")
        lines = [
            f"{self.dataset}: {self.split}, test fraction {self.test_fraction}, seed {self.seed}, "
            f"{self.n_users} users scored, {self.seconds:.1f} s",
            f"{'model':<12}" + "".join(f"{f'{m}@{self.k}':>14}" for m in metrics),
        ]
        for name, scores in self.models.items():
            values = scores.to_dict()
            lines.append(f"{name:<12}" + "".join(f"{values[m]:>14.4f}" for m in metrics))
        lines.append(f"ALS params (chosen on validation): {self.best_config.to_dict()}")
        return "\n".join(lines)

    def to_dict(self) -> dict[str, Any]:
        """``dataset``, ``split``, ``k`` and ``models`` (name -> precision, recall, ndcg, map,
        coverage at k and params), plus ``curves`` (name -> metric -> values for k = 1, 2, ...,
        with the ks under ``curves["k"]``), ``tuning`` (``validation_ndcg`` of the chosen
        configuration, its ``params``, every trial) and the run's sizes and duration.
        """
        return {
            "dataset": self.dataset,
            "split": self.split,
            "test_fraction": self.test_fraction,
            "seed": self.seed,
            "k": self.k,
            "min_rating": self.min_rating,
            "n_users": self.n_users,
            "n_train": self.n_train,
            "n_test": self.n_test,
            "n_movies": self.n_movies,
            "models": {name: scores.to_dict() for name, scores in self.models.items()},
            "curves": {"k": self.ks, **{name: s.curves for name, s in self.models.items()}},
            "tuning": {
                "validation_ndcg": self.tuning.validation_ndcg,
                "params": self.tuning.best.to_dict(),
                "trials": [
                    {
                        "params": trial.config.to_dict(),
                        "validation_ndcg": trial.validation_ndcg,
                        "seconds": trial.seconds,
                    }
                    for trial in self.tuning.trials
                ],
                "seconds": self.tuning.seconds,
            },
            "seconds": self.seconds,
        }


@dataclass(frozen=True)
class _Holdout:
    """A split's binary training matrix and the held-out movies of the users to score."""

    interactions: pl.DataFrame
    train: InteractionMatrix
    rows: np.ndarray
    relevant: csr_matrix

    @classmethod
    def from_split(cls, split: Split) -> _Holdout:
        interactions = split.train
        train = build_interaction_matrix(interactions)
        test = build_interaction_matrix(split.test, users=train.users, movies=train.movies)
        rows = np.flatnonzero(test.matrix.getnnz(axis=1) > 0)
        return cls(interactions=interactions, train=train, rows=rows, relevant=test.matrix[rows])

    @property
    def user_ids(self) -> np.ndarray:
        return self.train.users.ids[self.rows]

    def hits(self, recommended: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """The hit matrix of ``recommended`` (column indices) and |T_u| per user."""
        return hit_matrix(recommended, self.relevant), self.relevant.getnnz(axis=1)


def tune_als(
    train: pl.DataFrame,
    *,
    kind: SplitKind = "random-per-user",
    test_fraction: float = 0.25,
    seed: int = 42,
    k: int = 10,
    trials: int = DEFAULT_TRIALS,
    min_rating: float | None = None,
    space: SearchSpace | None = None,
) -> TuningResult:
    """Random search for the ALS configuration with the best validation NDCG@k.

    ``train`` is split again (same ``kind`` and ``test_fraction``, seed ``seed + 1``) into a
    fitting part and a validation part. The first trial is the default :class:`ALSConfig`, the
    other ``trials - 1`` are drawn from ``space`` by a generator seeded from ``seed``; every
    model is initialised with ``seed``. Only ``train`` is ever read.
    """
    check_k(k)
    if trials < 1:
        raise ValueError(f"trials must be >= 1, got {trials}")
    space = space or SearchSpace()
    started = time.perf_counter()
    split = split_interactions(train, kind=kind, test_fraction=test_fraction, seed=seed + 1)
    holdout = _Holdout.from_split(split)
    # A stream of its own: the splits draw from default_rng(seed) and default_rng(seed + 1).
    rng = np.random.default_rng([seed, 1])
    configs = [ALSConfig(matrix=MatrixConfig(min_rating=min_rating))]
    configs += [space.sample(rng, min_rating=min_rating) for _ in range(trials - 1)]
    results = []
    for config in configs:
        trial_started = time.perf_counter()
        model = train_als(split.train, config=config, random_state=seed)
        hits, n_relevant = holdout.hits(_als_top_k(model, holdout, k))
        results.append(
            Trial(
                config=config,
                validation_ndcg=ndcg_at_k(hits, n_relevant),
                seconds=time.perf_counter() - trial_started,
            )
        )
    best = max(results, key=lambda trial: trial.validation_ndcg)
    return TuningResult(
        best=best.config,
        validation_ndcg=best.validation_ndcg,
        trials=results,
        split=split,
        seconds=time.perf_counter() - started,
    )


def evaluate_models(
    interactions: pl.DataFrame,
    *,
    dataset: str = "interactions",
    split: SplitKind = "random-per-user",
    test_fraction: float = 0.25,
    seed: int = 42,
    k: int = 10,
    trials: int = DEFAULT_TRIALS,
    min_rating: float | None = None,
    space: SearchSpace | None = None,
) -> EvaluationReport:
    """Tune ALS on validation, then score it and the baselines once on the test part.

    Args:
        interactions: Interactions in the contract.
        dataset: The dataset's name, recorded in the report.
        split: The split kind (:func:`split_interactions`), used for test and validation.
        test_fraction: The share of each group held out, for test and again for validation.
        seed: Seeds the splits, the search and the models' initialisation.
        k: The cut-off of the reported metrics; curves run over k = 1..max(k, 20).
        trials: ALS configurations to try (:func:`tune_als`).
        min_rating: Only interactions rated at least this count, for training and testing.
        space: The ALS search space (default :class:`SearchSpace`).

    Models: ``als`` (the tuned configuration refitted on the whole train part),
    ``popularity`` (most training users first) and ``item_knn`` (implicit's BM25 item-item
    kNN with :data:`ITEM_KNN_PARAMS`, not tuned).
    """
    check_k(k)
    started = time.perf_counter()
    if min_rating is not None:
        interactions = interactions.filter(pl.col("rating") >= min_rating)
    parts = split_interactions(interactions, kind=split, test_fraction=test_fraction, seed=seed)
    tuning = tune_als(
        parts.train,
        kind=split,
        test_fraction=test_fraction,
        seed=seed,
        k=k,
        trials=trials,
        min_rating=min_rating,
        space=space,
    )
    holdout = _Holdout.from_split(parts)
    max_k = max(k, CURVE_MAX_K)
    als = train_als(parts.train, config=tuning.best, random_state=seed)
    recommended = {
        "als": (_als_top_k(als, holdout, max_k), tuning.best.to_dict()),
        "popularity": (_popularity_top_k(holdout, max_k), {}),
        "item_knn": (_item_knn_top_k(holdout, max_k), {"weighting": "bm25", **ITEM_KNN_PARAMS}),
    }
    models = {
        name: _scores(holdout, top, k=k, params=params)
        for name, (top, params) in recommended.items()
    }
    return EvaluationReport(
        dataset=dataset,
        split=split,
        test_fraction=test_fraction,
        seed=seed,
        k=k,
        min_rating=min_rating,
        n_users=len(holdout.rows),
        n_train=len(parts.train_index),
        n_test=len(parts.test_index),
        n_movies=len(holdout.train.movies),
        ks=list(range(1, max_k + 1)),
        models=models,
        tuning=tuning,
        seconds=time.perf_counter() - started,
    )


def _scores(holdout: _Holdout, top: np.ndarray, *, k: int, params: dict[str, Any]) -> ModelScores:
    hits, n_relevant = holdout.hits(top)
    curves = {
        name: [metric(hits[:, :cut], n_relevant) for cut in range(1, top.shape[1] + 1)]
        for name, metric in _METRICS.items()
    }
    return ModelScores(
        precision=curves["precision"][k - 1],
        recall=curves["recall"][k - 1],
        ndcg=curves["ndcg"][k - 1],
        map=curves["map"][k - 1],
        coverage=catalog_coverage(top[:, :k], len(holdout.train.movies)),
        params=params,
        curves=curves,
    )


def _als_top_k(model: ALSRecommender, holdout: _Holdout, k: int) -> np.ndarray:
    """Top-k training-movie columns per evaluated user, training movies excluded."""
    movie_ids = model.recommend_batch(holdout.user_ids, k=k).movie_ids
    return holdout.train.movies.index_of(movie_ids).reshape(movie_ids.shape)


def _popularity_top_k(holdout: _Holdout, k: int, *, batch_size: int = 1024) -> np.ndarray:
    """The k most popular training movies each user has not seen (ties: lower movie id)."""
    train = holdout.train.matrix
    n_movies = train.shape[1]
    counts = np.bincount(train.indices, minlength=n_movies)
    order = np.lexsort((np.arange(n_movies), -counts))
    top = np.full((len(holdout.rows), k), -1, dtype=np.int64)
    for start in range(0, len(holdout.rows), batch_size):
        seen_rows = train[holdout.rows[start : start + batch_size]]
        # A user's k best unseen movies lie among the k + |seen| most popular ones.
        candidates = order[: min(n_movies, k + int(seen_rows.getnnz(axis=1).max()))]
        seen = seen_rows[:, candidates].toarray() > 0
        picked = np.argsort(seen, axis=1, kind="stable")[:, :k]
        chosen = np.where(np.take_along_axis(seen, picked, axis=1), -1, candidates[picked])
        top[start : start + len(chosen), : chosen.shape[1]] = chosen
    return top


def _item_knn_top_k(holdout: _Holdout, k: int) -> np.ndarray:
    """implicit's BM25 item-kNN: what ``BM25Recommender.fit`` does, fed our CSR BM25 matrix
    (``BM25Recommender`` itself hands implicit a COO matrix, which makes it warn)."""
    weighted = build_interaction_matrix(
        holdout.interactions,
        config=MatrixConfig(
            weighting="bm25", bm25_k1=ITEM_KNN_PARAMS["K1"], bm25_b=ITEM_KNN_PARAMS["B"]
        ),
        users=holdout.train.users,
        movies=holdout.train.movies,
    )
    knn = ItemItemRecommender(K=ITEM_KNN_PARAMS["K"])
    knn.fit(weighted.matrix.astype(np.float64), show_progress=False)
    seen = holdout.train.matrix[holdout.rows]
    ids, _ = knn.recommend(holdout.rows, seen, N=k, filter_already_liked_items=True)
    return np.asarray(ids, dtype=np.int64)


def _choice(rng: np.random.Generator, options: tuple[_T, ...]) -> _T:
    return options[int(rng.integers(len(options)))]


def _log_uniform(rng: np.random.Generator, bounds: tuple[float, float]) -> float:
    low, high = bounds
    value = float(np.exp(rng.uniform(np.log(low), np.log(high))))
    return float(f"{value:.2g}")


def evaluate_ratings_source(
    source: str,
    *,
    split: SplitKind = "random-per-user",
    test_fraction: float = 0.25,
    seed: int = 42,
    k: int = 10,
    trials: int = DEFAULT_TRIALS,
    min_rating: float | None = None,
    max_rejected_fraction: float = 0.01,
) -> EvaluationReport:
    """Load a MovieLens dataset (any layout the loader reads), validate its ratings and run
    :func:`evaluate_models` on them; every valid rating counts unless ``min_rating`` is set.

    Raises:
        TooManyRejectedError: More than ``max_rejected_fraction`` of the ratings are invalid.
        ValueError: The dataset has no valid ratings.
    """
    data = load_movielens(source)
    ratings = validate_frame(
        data.ratings,
        RatingsSchema,
        name=f"ratings of {source}",
        max_rejected_fraction=max_rejected_fraction,
    ).valid
    if ratings.is_empty():
        raise ValueError(f"{source} has no valid ratings to evaluate on")
    name = source.rstrip("/").rsplit("/", 1)[-1].removesuffix(".zip")
    return evaluate_models(
        ratings,
        dataset=name,
        split=split,
        test_fraction=test_fraction,
        seed=seed,
        k=k,
        trials=trials,
        min_rating=min_rating,
    )
