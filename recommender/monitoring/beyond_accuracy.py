"""Beyond-accuracy quality of a set of top-k lists, and how two sets of lists differ.

Lists come as a long frame: ``user_id``, ``rank`` (1-based), ``movie_id`` (batch predictions,
:meth:`recommender.modeling.als.Recommendations.to_frame`). Popularity is taken from the
training interactions: ``p(i)`` = share of the training users who interacted with movie i.
The definitions follow Evidently's recsys metrics (novelty, popularity bias, personalization,
diversity), each computed in time linear in the number of list entries so that 100k users are
measured in well under a second.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
import polars as pl
from scipy.sparse import csr_matrix

from recommender.features.build import IdMap
from recommender.modeling.metrics import catalog_coverage


@dataclass(frozen=True)
class ListQuality:
    """Beyond-accuracy figures of one set of top-k lists (see each function's formula)."""

    users: int
    k: int
    catalog_coverage: float
    novelty: float
    average_popularity: float
    personalization: float
    intra_list_diversity: float
    score_quantiles: dict[str, float]

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready dict."""
        return asdict(self)


def _lists(predictions: pl.DataFrame) -> pl.DataFrame:
    missing = {"user_id", "rank", "movie_id"} - set(predictions.columns)
    if missing:
        raise ValueError(f"predictions lack columns {sorted(missing)}")
    return predictions


def item_popularity(interactions: pl.DataFrame) -> pl.DataFrame:
    """``movie_id``, ``popularity``: the share of distinct users who interacted with the movie.

    Repeated interactions of one user with one movie count once.
    """
    users = interactions.get_column("user_id").n_unique()
    return (
        interactions.group_by("movie_id")
        .agg(pl.col("user_id").n_unique().alias("users"))
        .with_columns((pl.col("users") / max(users, 1)).alias("popularity"))
        .select("movie_id", "popularity")
    )


def novelty(predictions: pl.DataFrame, popularity: pl.DataFrame) -> float:
    """Mean self-information of the recommended movies: mean over users of the mean over the
    user's list of -log2 p(i).

    A movie no training user interacted with gets p = 1 / (training users + 1), the least
    popular a seen movie could be. 0.0 when there are no lists.
    """
    joined = _with_popularity(_lists(predictions), popularity)
    if joined.height == 0:
        return 0.0
    return float(
        joined.group_by("user_id")
        .agg((-pl.col("p").log(2)).mean().alias("novelty"))
        .get_column("novelty")
        .mean()
    )


def average_popularity(predictions: pl.DataFrame, popularity: pl.DataFrame) -> float:
    """Average recommendation popularity (ARP, popularity bias): mean over users of the mean
    p(i) of their list. 0.0 when there are no lists."""
    joined = _with_popularity(_lists(predictions), popularity)
    if joined.height == 0:
        return 0.0
    return float(joined.group_by("user_id").agg(pl.col("p").mean()).get_column("p").mean())


def _with_popularity(predictions: pl.DataFrame, popularity: pl.DataFrame) -> pl.DataFrame:
    floor = (
        1.0 / (1.0 / popularity.get_column("popularity").min() + 1) if popularity.height else 1.0
    )
    return predictions.join(
        popularity.select("movie_id", pl.col("popularity").alias("p")), on="movie_id", how="left"
    ).with_columns(pl.col("p").fill_null(floor))


def personalization(predictions: pl.DataFrame, *, k: int) -> float:
    """1 - the mean over all pairs of users of |L_u ∩ L_v| / k.

    For full lists of k movies |L_u ∩ L_v| / k is the cosine similarity of the users' binary
    recommendation vectors (Evidently's definition); a shorter list counts its missing places
    as matching nothing. The pair sum is computed per movie: sum over pairs of |L_u ∩ L_v| =
    sum over movies of n_i (n_i - 1) / 2, n_i being the number of lists holding movie i.
    Identical lists give 0, disjoint lists 1; 0.0 with fewer than two users.
    """
    if k < 1:
        raise ValueError(f"k must be >= 1, got {k}")
    lists = _lists(predictions)
    users = lists.get_column("user_id").n_unique()
    if users < 2:
        return 0.0
    modulus = int(lists.get_column("movie_id").max()) + 1  # type: ignore[arg-type]
    n = np.bincount(_pair_keys(lists, modulus) % modulus).astype(np.float64)
    shared = float((n * (n - 1) / 2).sum())
    pairs = users * (users - 1) / 2
    return 1.0 - shared / (pairs * k)


def intra_list_diversity(predictions: pl.DataFrame, genres: pl.DataFrame) -> float:
    """Mean over users of the mean cosine distance between the genre sets of each pair of
    movies in the user's list.

    A movie's genre vector is binary; the cosine similarity of two movies is
    |G_i ∩ G_j| / sqrt(|G_i| |G_j|), 0 when either has no genre. Per user, with unit vectors
    g_i, the sum over ordered pairs i != j of g_i . g_j is |sum g_i|^2 - (movies with genres),
    so the mean distance over the m(m-1) ordered pairs needs one pass. Lists of fewer than two
    movies are left out; 0.0 when no list has two.
    """
    lists = _lists(predictions).select("user_id", "movie_id")
    tags = genres.select("movie_id", "genres").explode("genres").drop_nulls().unique()
    vocabulary = sorted(tags.get_column("genres").unique().to_list())
    movies = IdMap.from_values(lists.get_column("movie_id"))
    unit = np.zeros((len(movies), max(len(vocabulary), 1)))
    rows = movies.index_of(tags.get_column("movie_id"))
    keep = rows >= 0
    cols = tags.get_column("genres").replace_strict(vocabulary, range(len(vocabulary))).to_numpy()
    unit[rows[keep], cols[keep]] = 1.0
    norms = np.linalg.norm(unit, axis=1)
    unit[norms > 0] /= norms[norms > 0, None]

    users = IdMap.from_values(lists.get_column("user_id"))
    user_index = users.index_of(lists.get_column("user_id"))
    movie_index = movies.index_of(lists.get_column("movie_id"))
    incidence = csr_matrix(
        (np.ones(lists.height), (user_index, movie_index)), shape=(len(users), len(movies))
    )
    sums = incidence @ unit
    sizes = np.bincount(user_index, minlength=len(users)).astype(np.float64)
    tagged = incidence @ (norms > 0).astype(np.float64)
    eligible = sizes >= 2
    if not eligible.any():
        return 0.0
    ordered_pairs = sizes[eligible] * (sizes[eligible] - 1)
    similarity = ((sums[eligible] ** 2).sum(axis=1) - tagged[eligible]) / ordered_pairs
    return float(np.mean(1.0 - similarity))


def overlap_at_k(a: pl.DataFrame, b: pl.DataFrame, *, k: int) -> float:
    """Mean over the users present in both of |A_u ∩ B_u| / k: 1 when two model versions
    recommend the same movies, 0 when they share none. 0.0 without common users."""
    if k < 1:
        raise ValueError(f"k must be >= 1, got {k}")
    common = _lists(a).get_column("user_id").unique()
    common = common.filter(common.is_in(_lists(b).get_column("user_id").unique().implode()))
    if common.len() == 0:
        return 0.0
    modulus = max(a.get_column("movie_id").max(), b.get_column("movie_id").max()) + 1  # type: ignore[operator]
    shared = np.intersect1d(_pair_keys(a, modulus), _pair_keys(b, modulus), assume_unique=True)
    return shared.size / (common.len() * k)


def _pair_keys(lists: pl.DataFrame, modulus: int) -> np.ndarray:
    """The distinct (user, movie) pairs of ``lists`` as sorted ``user_id * modulus + movie_id``.

    Sorting one int64 array is many times faster than a two-column unique, and than
    ``np.unique``, whose hash-based path takes seconds per million keys here.
    """
    users = lists.get_column("user_id").to_numpy().astype(np.int64)
    keys = np.sort(users * modulus + lists.get_column("movie_id").to_numpy())
    return keys[np.concatenate(([True], keys[1:] != keys[:-1]))]


def list_quality(
    predictions: pl.DataFrame,
    *,
    interactions: pl.DataFrame,
    movies: pl.DataFrame,
    k: int,
) -> ListQuality:
    """Every figure of :class:`ListQuality` for one set of lists.

    ``interactions`` are the training interactions (``user_id``, ``movie_id``) that define
    popularity; ``movies`` the catalog (``movie_id``, ``genres``) whose size is the coverage
    denominator.
    """
    popularity = item_popularity(interactions)
    scores = (
        predictions.get_column("score")
        if "score" in predictions.columns
        else pl.Series([], dtype=pl.Float64)
    )
    quantiles = {
        f"p{int(q * 100)}": float(scores.quantile(q)) if scores.len() else 0.0
        for q in (0.05, 0.25, 0.5, 0.75, 0.95)
    }
    return ListQuality(
        users=predictions.get_column("user_id").n_unique(),
        k=k,
        catalog_coverage=catalog_coverage(
            predictions.get_column("movie_id").to_numpy(), movies.height
        ),
        novelty=novelty(predictions, popularity),
        average_popularity=average_popularity(predictions, popularity),
        personalization=personalization(predictions, k=k),
        intra_list_diversity=intra_list_diversity(predictions, movies),
        score_quantiles=quantiles,
    )
