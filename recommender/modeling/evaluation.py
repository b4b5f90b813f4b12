"""Offline evaluation: leakage-free splits, ALS tuning on validation only, baselines, metrics.

The protocol of :func:`evaluate_models`:

1. Interactions are aggregated to one row per (user, movie) (optionally only ratings at least
   ``min_rating``), then split into train and test
   (:func:`~recommender.modeling.splits.split_interactions`).
2. ALS hyper-parameters are searched on a validation split carved from the train part only,
   with the same split kind (:func:`~recommender.modeling.tuning.tune_als`); the test part is
   never looked at.
3. The chosen configuration is refitted on the whole train part, the popularity and item-kNN
   baselines are fitted on it too, and all three are scored once on the test part.

Scoring follows :mod:`recommender.modeling.metrics` on a
:class:`~recommender.modeling.splits.Holdout`: the top k excludes the user's training movies.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl

from recommender.data.movielens import load_movielens
from recommender.data.schemas import valid_ratings
from recommender.modeling.als import ALSConfig, train_als
from recommender.modeling.baselines import ITEM_KNN_PARAMS, item_knn_top_k, popularity_top_k
from recommender.modeling.metrics import (
    catalog_coverage,
    map_at_k,
    ndcg_at_k,
    precision_at_k,
    recall_at_k,
)
from recommender.modeling.protocol import DEFAULT_PROTOCOL, EvaluationProtocol, SplitKind
from recommender.modeling.splits import Holdout, split_interactions
from recommender.modeling.tuning import SearchSpace, TuningResult, tune_als

CURVE_MAX_K = 20
_METRICS: dict[str, Callable[[np.ndarray, np.ndarray], float]] = {
    "precision": precision_at_k,
    "recall": recall_at_k,
    "ndcg": ndcg_at_k,
    "map": map_at_k,
}


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
        """The chosen ALS configuration, ready for :func:`recommender.modeling.als.train_als`."""
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


def evaluate_models(
    interactions: pl.DataFrame,
    protocol: EvaluationProtocol = DEFAULT_PROTOCOL,
    *,
    dataset: str = "interactions",
    space: SearchSpace | None = None,
) -> EvaluationReport:
    """Tune ALS on validation, then score it and the baselines once on the test part.

    Args:
        interactions: Interactions in the contract.
        protocol: The split, test fraction, seed, k, trials and minimum rating; curves run
            over k = 1..max(k, 20).
        dataset: The dataset's name, recorded in the report.
        space: The ALS search space (default :class:`~recommender.modeling.tuning.SearchSpace`).

    Models: ``als`` (the tuned configuration refitted on the whole train part),
    ``popularity`` (most training users first) and ``item_knn`` (implicit's BM25 item-item
    kNN with :data:`~recommender.modeling.baselines.ITEM_KNN_PARAMS`, not tuned).
    """
    started = time.perf_counter()
    p = protocol
    if p.min_rating is not None:
        interactions = interactions.filter(pl.col("rating") >= p.min_rating)
    parts = split_interactions(
        interactions, kind=p.split, test_fraction=p.test_fraction, seed=p.seed
    )
    tuning = tune_als(
        parts.train,
        kind=p.split,
        test_fraction=p.test_fraction,
        seed=p.seed,
        k=p.k,
        trials=p.trials,
        min_rating=p.min_rating,
        space=space,
    )
    holdout = Holdout.from_split(parts)
    max_k = max(p.k, CURVE_MAX_K)
    als = train_als(parts.train, config=tuning.best, random_state=p.seed)
    recommended = {
        "als": (holdout.als_top_k(als, max_k), tuning.best.to_dict()),
        "popularity": (popularity_top_k(holdout, max_k), {}),
        "item_knn": (item_knn_top_k(holdout, max_k), {"weighting": "bm25", **ITEM_KNN_PARAMS}),
    }
    models = {
        name: _scores(holdout, top, k=p.k, params=params)
        for name, (top, params) in recommended.items()
    }
    return EvaluationReport(
        dataset=dataset,
        split=p.split,
        test_fraction=p.test_fraction,
        seed=p.seed,
        k=p.k,
        min_rating=p.min_rating,
        n_users=len(holdout.rows),
        n_train=len(parts.train_index),
        n_test=len(parts.test_index),
        n_movies=len(holdout.train.movies),
        ks=list(range(1, max_k + 1)),
        models=models,
        tuning=tuning,
        seconds=time.perf_counter() - started,
    )


def _scores(holdout: Holdout, top: np.ndarray, *, k: int, params: dict[str, Any]) -> ModelScores:
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


def evaluate_ratings_source(
    source: str,
    protocol: EvaluationProtocol = DEFAULT_PROTOCOL,
    *,
    cache_dir: Path | None = None,
    max_rejected_fraction: float = 0.01,
) -> EvaluationReport:
    """Load a MovieLens dataset (any layout the loader reads), validate its ratings and run
    :func:`evaluate_models` on them; every valid rating counts unless ``protocol.min_rating``
    is set.

    Args:
        source: A MovieLens directory, zip or URL.
        protocol: How to evaluate.
        cache_dir: Where a URL is downloaded to (``Settings.movielens_cache_dir``).
        max_rejected_fraction: The largest share of invalid ratings accepted.

    Raises:
        TooManyRejectedError: More than ``max_rejected_fraction`` of the ratings are invalid.
        ValueError: The dataset has no valid ratings.
    """
    data = load_movielens(source, cache_dir=cache_dir)
    ratings = valid_ratings(
        data.ratings, source=source, max_rejected_fraction=max_rejected_fraction
    )
    name = source.rstrip("/").rsplit("/", 1)[-1].removesuffix(".zip")
    return evaluate_models(ratings, protocol, dataset=name)
