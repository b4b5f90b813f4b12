"""Random search over ALS configurations, scored on a validation split of the train part only."""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import TypeVar

import numpy as np
import polars as pl

from recommender.features.build import MatrixConfig, Weighting
from recommender.modeling.als import ALSConfig, ALSParams, train_als
from recommender.modeling.baselines import popularity_top_k
from recommender.modeling.metrics import check_k, ndcg_at_k
from recommender.modeling.protocol import DEFAULT_PROTOCOL, SplitKind
from recommender.modeling.splits import Holdout, Split, split_interactions

_T = TypeVar("_T")


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
    """The search's outcome; ``split`` is the train/validation split of the train part, on
    which the popularity baseline is scored too (``popularity_validation_ndcg``)."""

    best: ALSConfig
    validation_ndcg: float
    trials: list[Trial]
    popularity_validation_ndcg: float
    split: Split
    seconds: float


def tune_als(
    train: pl.DataFrame,
    *,
    kind: SplitKind = "random-per-user",
    test_fraction: float = 0.25,
    seed: int = 42,
    k: int = 10,
    trials: int = DEFAULT_PROTOCOL.trials,
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
    holdout = Holdout.from_split(split)
    # A stream of its own: the splits draw from default_rng(seed) and default_rng(seed + 1).
    rng = np.random.default_rng([seed, 1])
    configs = [ALSConfig(matrix=MatrixConfig(min_rating=min_rating))]
    configs += [space.sample(rng, min_rating=min_rating) for _ in range(trials - 1)]
    results = []
    for config in configs:
        trial_started = time.perf_counter()
        model = train_als(split.train, config=config, random_state=seed)
        hits, n_relevant = holdout.hits(holdout.als_top_k(model, k))
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
        popularity_validation_ndcg=ndcg_at_k(*holdout.hits(popularity_top_k(holdout, k))),
        split=split,
        seconds=time.perf_counter() - started,
    )


def _choice(rng: np.random.Generator, options: tuple[_T, ...]) -> _T:
    return options[int(rng.integers(len(options)))]


def _log_uniform(rng: np.random.Generator, bounds: tuple[float, float]) -> float:
    low, high = bounds
    value = float(np.exp(rng.uniform(np.log(low), np.log(high))))
    return float(f"{value:.2g}")
