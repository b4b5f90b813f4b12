"""Features with polars: the weighted user x movie matrix with its id mappings, movie and user
feature tables.

Interactions follow the contract ``user_id`` Int64, ``movie_id`` Int64, ``rating`` Float64,
``timestamp`` Int64 (unix seconds), ``source`` Utf8 (optional here). They are an event stream,
so a (user, movie) pair may repeat; :func:`aggregate_interactions` reduces every pair to one row
before anything is counted or weighted.

Ids map to matrix positions through :class:`IdMap`: the sorted distinct ids, so the same input
always gives the same rows and columns, and a lookup is one vectorized ``searchsorted``.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass
from typing import Any, Literal, get_args

import numpy as np
import polars as pl
from implicit.nearest_neighbours import bm25_weight
from scipy.sparse import csr_matrix

from recommender.data import contracts

Weighting = Literal["binary", "linear", "log", "bm25"]
WEIGHTINGS: tuple[str, ...] = get_args(Weighting)

SECONDS_PER_DAY = 86_400
_INTERACTION_COLUMNS = tuple(contracts.RATINGS.names())


@dataclass(frozen=True, eq=False)
class IdMap:
    """Sorted distinct ids; an id's position in ``ids`` is its matrix row or column."""

    ids: np.ndarray

    @classmethod
    def from_values(cls, values: pl.Series | np.ndarray | Sequence[int]) -> IdMap:
        """The map of the distinct values, in ascending order."""
        if isinstance(values, pl.Series):
            # Hash the (millions of) values down to the distinct ids first: sorting them all,
            # as np.unique does, is the slow part for a rating column.
            values = values.unique()
        array = values.to_numpy() if isinstance(values, pl.Series) else np.asarray(values)
        return cls(np.unique(array.astype(np.int64, copy=False)))

    def __len__(self) -> int:
        return len(self.ids)

    def __eq__(self, other: object) -> bool:
        return isinstance(other, IdMap) and np.array_equal(self.ids, other.ids)

    __hash__ = None  # type: ignore[assignment]

    def index_of(self, values: pl.Series | np.ndarray | Sequence[int]) -> np.ndarray:
        """Positions of ``values`` (int64 array), ``-1`` where a value is not in the map."""
        array = values.to_numpy() if isinstance(values, pl.Series) else np.asarray(values)
        array = array.astype(np.int64, copy=False).reshape(-1)
        if len(self.ids) == 0:
            return np.full(len(array), -1, dtype=np.int64)
        low, high = int(self.ids[0]), int(self.ids[-1])
        if high - low < len(array):
            # Many lookups (a rating column) into a compact id range: one gather from a table
            # of every id in the range beats a binary search per value.
            table = np.full(high - low + 1, -1, dtype=np.int64)
            table[self.ids - low] = np.arange(len(self.ids))
            found = table[np.clip(array, low, high) - low]
            found[(array < low) | (array > high)] = -1
            return found
        positions = np.searchsorted(self.ids, array)
        clipped = np.minimum(positions, len(self.ids) - 1)
        return np.where(self.ids[clipped] == array, clipped, -1).astype(np.int64)


@dataclass(frozen=True)
class MatrixConfig:
    """How interactions become confidences ``w``; ALS multiplies them by its ``alpha``.

    Attributes:
        weighting: ``binary`` (w = 1), ``linear`` (w = rating, so ALS sees alpha * rating),
            ``log`` (w = log(1 + rating)), or ``bm25`` (implicit's ``bm25_weight`` over the
            movie x user matrix of w = 1, as implicit's own examples weight item-user data).
        min_rating: Keep only pairs rated at least this much (``None``: every rating counts).
        half_life_days: Multiply w by 0.5 ** (age / half-life), the age in days measured from
            the newest timestamp in the interactions (``None``: no decay).
        bm25_k1: BM25's K1 (term-frequency saturation), only for ``bm25``.
        bm25_b: BM25's B (length normalisation, 0..1), only for ``bm25``.
    """

    weighting: Weighting = "binary"
    min_rating: float | None = None
    half_life_days: float | None = None
    bm25_k1: float = 100.0
    bm25_b: float = 0.8

    def __post_init__(self) -> None:
        if self.weighting not in WEIGHTINGS:
            raise ValueError(
                f"weighting must be one of {', '.join(WEIGHTINGS)}, got {self.weighting!r}"
            )
        if self.half_life_days is not None and not self.half_life_days > 0:
            raise ValueError(f"half_life_days must be > 0, got {self.half_life_days}")
        if not self.bm25_k1 > 0:
            raise ValueError(f"bm25_k1 must be > 0, got {self.bm25_k1}")
        if not 0 <= self.bm25_b <= 1:
            raise ValueError(f"bm25_b must be in 0..1, got {self.bm25_b}")

    def to_dict(self) -> dict[str, Any]:
        """The configuration as JSON-ready values; ``MatrixConfig(**d)`` rebuilds it."""
        return asdict(self)


@dataclass(frozen=True)
class InteractionMatrix:
    """The users x movies confidence matrix (float32 CSR) with its id maps and configuration."""

    matrix: csr_matrix
    users: IdMap
    movies: IdMap
    config: MatrixConfig

    @property
    def shape(self) -> tuple[int, int]:
        return (len(self.users), len(self.movies))


def aggregate_interactions(interactions: pl.DataFrame) -> pl.DataFrame:
    """One row per (user_id, movie_id), sorted by user_id then movie_id.

    A repeated pair keeps its strongest signal and its latest time: ``rating`` is the maximum,
    ``timestamp`` the newest, ``source`` (when present) that of the highest, then newest, event.
    """
    missing = [name for name in _INTERACTION_COLUMNS if name not in interactions.columns]
    if missing:
        raise ValueError(f"interactions lacks the column(s) {', '.join(missing)}")
    columns = [*_INTERACTION_COLUMNS, *(["source"] if "source" in interactions.columns else [])]
    if _one_row_per_pair_in_order(interactions):
        # Already aggregated (or a MovieLens file, which is sorted and has no repeats): every
        # group would hold one row, so the group_by over millions of pairs would be the identity.
        return interactions.select(columns)
    aggregations = [pl.col("rating").max(), pl.col("timestamp").max()]
    if "source" in interactions.columns:
        aggregations.append(pl.col("source").sort_by("rating", "timestamp").last())
    return (
        interactions.group_by("user_id", "movie_id").agg(aggregations).sort("user_id", "movie_id")
    )


def _one_row_per_pair_in_order(interactions: pl.DataFrame) -> bool:
    """True when (user_id, movie_id) is non-null and strictly increasing row by row, which means
    the pairs are distinct and already in :func:`aggregate_interactions`' order (one pass)."""
    if not all(interactions.schema[name].is_integer() for name in ("user_id", "movie_id")):
        return False
    user, movie = pl.col("user_id"), pl.col("movie_id")
    previous_user = user.shift(1)
    nulls, increasing = interactions.select(
        (user.null_count() + movie.null_count()).alias("nulls"),
        # The first row compares with null, which all() skips.
        ((user > previous_user) | ((user == previous_user) & (movie > movie.shift(1))))
        .all()
        .alias("increasing"),
    ).row(0)
    return nulls == 0 and bool(increasing)


def build_interaction_matrix(
    interactions: pl.DataFrame,
    *,
    config: MatrixConfig | None = None,
    users: IdMap | None = None,
    movies: IdMap | None = None,
) -> InteractionMatrix:
    """Build the weighted users x movies matrix without Python loops over rows.

    Args:
        interactions: Interactions in the contract (repeated pairs are aggregated first).
        config: The weighting; the default is binary, every rating counting.
        users: Fix the rows to these user ids (default: the distinct ids of the kept
            interactions). Interactions of users outside the map are left out.
        movies: Fix the columns likewise, e.g. to the training movies when building a test
            matrix.

    Returns:
        The float32 CSR matrix (entries with zero weight removed, indices sorted) and its maps.
    """
    config = config or MatrixConfig()
    pairs = aggregate_interactions(interactions)
    newest = pairs.get_column("timestamp").max()
    if config.min_rating is not None:
        pairs = pairs.filter(pl.col("rating") >= config.min_rating)
    users = users if users is not None else IdMap.from_values(pairs.get_column("user_id"))
    movies = movies if movies is not None else IdMap.from_values(pairs.get_column("movie_id"))

    rows = users.index_of(pairs.get_column("user_id"))
    cols = movies.index_of(pairs.get_column("movie_id"))
    keep = (rows >= 0) & (cols >= 0)
    weights = pairs.with_columns(_weight_expression(config, newest)).get_column("weight")
    matrix = _csr_from_triplets(
        weights.to_numpy()[keep].astype(np.float32),
        rows[keep],
        cols[keep],
        shape=(len(users), len(movies)),
    )
    if config.weighting == "bm25" and matrix.nnz:
        matrix = csr_matrix(
            bm25_weight(matrix.T, K1=config.bm25_k1, B=config.bm25_b).T, dtype=np.float32
        )
    matrix.eliminate_zeros()
    matrix.sort_indices()
    return InteractionMatrix(matrix=matrix, users=users, movies=movies, config=config)


def _weight_expression(config: MatrixConfig, newest: int | None) -> pl.Expr:
    rating = pl.col("rating")
    base = {
        "binary": pl.lit(1.0),
        "bm25": pl.lit(1.0),
        "linear": rating,
        "log": rating.log1p(),
    }[config.weighting]
    if config.half_life_days is not None and newest is not None:
        age_days = (newest - pl.col("timestamp")) / SECONDS_PER_DAY
        base = base * pl.lit(0.5).pow(age_days / config.half_life_days)
    return base.cast(pl.Float64).alias("weight")


def build_movie_features(movies: pl.DataFrame, interactions: pl.DataFrame) -> pl.DataFrame:
    """One row per catalog movie: genres, year, popularity and rating statistics.

    Columns: ``movie_id``, ``genres`` (List(Utf8)), ``year`` (Int32, null when unknown),
    ``popularity`` (TMDB's, Float64, null when the catalog has none), ``rating_count``
    (Int64, distinct users; 0 when unrated) and ``rating_mean`` (Float64, null when unrated),
    computed on the aggregated interactions. Sorted by ``movie_id``.
    """
    stats = (
        aggregate_interactions(interactions)
        .group_by("movie_id")
        .agg(
            pl.len().cast(pl.Int64).alias("rating_count"),
            pl.col("rating").mean().alias("rating_mean"),
        )
    )
    catalog = movies.select(
        "movie_id",
        "genres",
        _optional_column(movies, "year", pl.Int32),
        _optional_column(movies, "popularity", pl.Float64),
    )
    return (
        catalog.join(stats, on="movie_id", how="left")
        .with_columns(pl.col("rating_count").fill_null(0))
        .sort("movie_id")
    )


def build_user_features(interactions: pl.DataFrame, movies: pl.DataFrame) -> pl.DataFrame:
    """One row per user: activity, mean rating, recency and genre affinity.

    Columns: ``user_id``, ``activity_count`` (Int64, distinct movies), ``rating_mean``,
    ``last_timestamp``, ``days_since_last`` (Float64, measured from the newest timestamp in
    ``interactions``), then one ``affinity_<genre>`` column per catalog genre in sorted order:
    the share of the user's movies tagged with that genre (0..1; a movie counts once for each of
    its genres, so the shares of a user need not sum to 1). Sorted by ``user_id``.
    """
    pairs = aggregate_interactions(interactions)
    newest = pairs.get_column("timestamp").max()
    activity = pairs.group_by("user_id").agg(
        pl.len().cast(pl.Int64).alias("activity_count"),
        pl.col("rating").mean().alias("rating_mean"),
        pl.col("timestamp").max().alias("last_timestamp"),
    )
    activity = activity.with_columns(
        ((pl.lit(newest, dtype=pl.Int64) - pl.col("last_timestamp")) / SECONDS_PER_DAY)
        .cast(pl.Float64)
        .alias("days_since_last")
    )
    genres = sorted(movies.get_column("genres").explode().drop_nulls().unique().to_list())
    tagged = pairs.select("user_id", "movie_id").drop_nulls()
    users = IdMap.from_values(tagged.get_column("user_id"))
    counts = _genre_counts(tagged, movies, users, genres)
    features = activity.join(
        pl.DataFrame(
            {
                "user_id": pl.Series(users.ids).cast(pairs.schema["user_id"]),
                **{f"affinity_{genre}": counts[:, i] for i, genre in enumerate(genres)},
            }
        ),
        on="user_id",
        how="left",
    )
    affinities = [
        (pl.col(name).fill_null(0).cast(pl.Float64) / pl.col("activity_count")).alias(name)
        for name in (f"affinity_{genre}" for genre in genres)
    ]
    return features.select(
        "user_id", "activity_count", "rating_mean", "last_timestamp", "days_since_last", *affinities
    ).sort("user_id")


def _genre_counts(
    pairs: pl.DataFrame, movies: pl.DataFrame, users: IdMap, genres: list[str]
) -> np.ndarray:
    """``users`` x ``genres``: how many of each user's movies (non-null ``pairs``) the catalog
    tags with each genre, a tag listed twice counting twice.

    The product of the user x movie and movie x genre incidence matrices: joining the genre
    lists onto millions of pairs and exploding them is many times slower.
    """
    tags = movies.select("movie_id", "genres").explode("genres").drop_nulls()
    catalog = IdMap.from_values(tags.get_column("movie_id"))
    movie_genres = csr_matrix(
        (
            np.ones(tags.height, dtype=np.int64),
            (
                catalog.index_of(tags.get_column("movie_id")),
                tags.get_column("genres").replace_strict(genres, range(len(genres))).to_numpy(),
            ),
        ),
        shape=(len(catalog), len(genres)),
    )
    rows = users.index_of(pairs.get_column("user_id"))
    cols = catalog.index_of(pairs.get_column("movie_id"))
    keep = cols >= 0
    user_movies = _csr_from_triplets(
        np.ones(int(keep.sum()), dtype=np.int64),
        rows[keep],
        cols[keep],
        shape=(len(users), len(catalog)),
    )
    return (user_movies @ movie_genres).toarray()


def _csr_from_triplets(
    data: np.ndarray, rows: np.ndarray, cols: np.ndarray, *, shape: tuple[int, int]
) -> csr_matrix:
    """The canonical CSR matrix (sorted indices, repeated entries summed) of COO triplets.

    Pairs in user order (aggregated interactions are sorted by user, then movie) already lay
    out the CSR arrays, so they are used as they are, which saves scipy's COO conversion
    (most of the matrix build at millions of entries); any other order goes through it.
    """
    if len(rows) > 1 and bool((rows[1:] < rows[:-1]).any()):
        return csr_matrix((data, (rows, cols)), shape=shape, dtype=data.dtype)
    indptr = np.zeros(shape[0] + 1, dtype=np.int64)
    np.cumsum(np.bincount(rows, minlength=shape[0]), out=indptr[1:])
    matrix = csr_matrix((data, cols, indptr), shape=shape, dtype=data.dtype)
    matrix.sum_duplicates()  # a no-op after one check when the columns are sorted and distinct
    return matrix


def _optional_column(frame: pl.DataFrame, name: str, dtype: pl.DataType) -> pl.Expr:
    if name in frame.columns:
        return pl.col(name).cast(dtype)
    return pl.lit(None, dtype=dtype).alias(name)


FEATURE_SET = "movierec"


def build_feature_tables(
    interactions: pl.DataFrame, movies: pl.DataFrame
) -> dict[str, pl.DataFrame]:
    """The feature set the training flow stores: ``interactions`` (one row per user and movie,
    :func:`aggregate_interactions`), ``movie_features`` and ``user_features``."""
    # Aggregate once: aggregating the pairs again is the identity, and the builders' own
    # aggregation recognises them in one pass instead of grouping millions of pairs again.
    pairs = aggregate_interactions(interactions)
    return {
        "interactions": pairs,
        "movie_features": build_movie_features(movies, pairs),
        "user_features": build_user_features(pairs, movies),
    }
