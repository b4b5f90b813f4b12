"""Data drift between a reference table (what the champion was trained on) and the current one.

Each column gets the population stability index over the reference's quantile bins and a
two-sample test: Kolmogorov-Smirnov for numeric columns, chi-square (a 2 x categories
contingency table) for categorical ones. A column drifts when its PSI reaches the threshold
(0.2 by default: the customary "significant shift"); the p-value is reported beside it, since
at hundreds of thousands of rows any difference at all is "significant".
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass
from typing import Any, Literal

import numpy as np
import polars as pl
from scipy import stats

PSI_FLOOR = 1e-4
"""A bin's share is at least this in the PSI formula, so an empty bin contributes a finite term."""

ColumnKind = Literal["numeric", "categorical"]


@dataclass(frozen=True)
class ColumnDrift:
    """The drift of one column: PSI, the test, its p-value, sizes and null shares."""

    table: str
    column: str
    kind: ColumnKind
    psi: float
    test: Literal["ks", "chi2"]
    statistic: float
    p_value: float
    reference_rows: int
    current_rows: int
    reference_null_share: float
    current_null_share: float
    drifted: bool

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready dict."""
        return asdict(self)


def psi_from_shares(reference: np.ndarray, current: np.ndarray) -> float:
    """PSI = sum over bins of (c_i - r_i) * ln(c_i / r_i).

    ``reference`` and ``current`` are the bins' shares (each sums to 1); shares are floored at
    :data:`PSI_FLOOR`. Identical distributions give 0. 0.0 when there are no bins.
    """
    r = np.maximum(np.asarray(reference, dtype=np.float64), PSI_FLOOR)
    c = np.maximum(np.asarray(current, dtype=np.float64), PSI_FLOOR)
    if r.shape != c.shape:
        raise ValueError(f"reference and current need the same bins, got {r.shape} and {c.shape}")
    return float(np.sum((c - r) * np.log(c / r)))


def quantile_edges(reference: np.ndarray, *, bins: int = 10) -> np.ndarray:
    """The inner edges of ``bins`` reference-quantile bins (repeated quantiles merged).

    A value v falls in bin ``searchsorted(edges, v, side="right")``: bin 0 holds everything
    below the first edge, the last bin everything at or above the last one.
    """
    if bins < 2:
        raise ValueError(f"bins must be >= 2, got {bins}")
    if reference.size == 0:
        return np.empty(0)
    # "higher" puts edges on observed values, so a column of few distinct values (counts,
    # ratings) still gets an edge between each pair of them that a quantile separates.
    return np.unique(np.quantile(reference, np.linspace(0, 1, bins + 1)[1:-1], method="higher"))


def numeric_psi(reference: np.ndarray, current: np.ndarray, *, bins: int = 10) -> float:
    """PSI of ``current`` against ``reference`` over the reference's quantile bins.

    0.0 when either side is empty (nothing to compare).
    """
    if reference.size == 0 or current.size == 0:
        return 0.0
    edges = quantile_edges(reference, bins=bins)
    n_bins = edges.size + 1
    shares = [
        np.bincount(np.searchsorted(edges, side_values, side="right"), minlength=n_bins)
        / side_values.size
        for side_values in (reference, current)
    ]
    return psi_from_shares(shares[0], shares[1])


def categorical_counts(
    reference: pl.Series, current: pl.Series
) -> tuple[list[Any], np.ndarray, np.ndarray]:
    """The categories seen on either side and each side's counts of them."""
    ref = reference.drop_nulls().value_counts(name="n")
    cur = current.drop_nulls().value_counts(name="n")
    name = reference.name
    both = ref.join(cur, on=name, how="full", coalesce=True, suffix="_current").fill_null(0)
    both = both.sort(name)
    return (
        both.get_column(name).to_list(),
        both.get_column("n").to_numpy().astype(np.float64),
        both.get_column("n_current").to_numpy().astype(np.float64),
    )


def column_drift(
    table: str,
    reference: pl.Series,
    current: pl.Series,
    *,
    kind: ColumnKind,
    psi_threshold: float = 0.2,
    bins: int = 10,
) -> ColumnDrift:
    """Drift of one column (nulls are left out of the tests and reported as shares)."""
    ref_values = reference.drop_nulls()
    cur_values = current.drop_nulls()
    if kind == "numeric":
        r = ref_values.cast(pl.Float64).to_numpy()
        c = cur_values.cast(pl.Float64).to_numpy()
        psi = numeric_psi(r, c, bins=bins)
        if r.size and c.size:
            result = stats.ks_2samp(r, c)
            statistic, p_value = float(result.statistic), float(result.pvalue)
        else:
            statistic, p_value = 0.0, 1.0
        test: Literal["ks", "chi2"] = "ks"
    else:
        _, r_counts, c_counts = categorical_counts(ref_values, cur_values)
        if r_counts.sum() and c_counts.sum():
            psi = psi_from_shares(r_counts / r_counts.sum(), c_counts / c_counts.sum())
        else:
            psi = 0.0
        statistic, p_value = chi_square_homogeneity(r_counts, c_counts)
        test = "chi2"
    return ColumnDrift(
        table=table,
        column=reference.name,
        kind=kind,
        psi=psi,
        test=test,
        statistic=statistic,
        p_value=p_value,
        reference_rows=reference.len(),
        current_rows=current.len(),
        reference_null_share=_null_share(reference),
        current_null_share=_null_share(current),
        drifted=psi >= psi_threshold,
    )


def chi_square_homogeneity(reference: np.ndarray, current: np.ndarray) -> tuple[float, float]:
    """Chi-square test that two count vectors over the same categories share one distribution.

    Pearson's statistic of the 2 x m contingency table, m - 1 degrees of freedom; categories
    counted on neither side are left out. ``(0.0, 1.0)`` when a side is empty or only one
    category remains.
    """
    table = np.vstack([reference, current]).astype(np.float64)
    table = table[:, table.sum(axis=0) > 0]
    if table.shape[1] < 2 or (table.sum(axis=1) == 0).any():
        return 0.0, 1.0
    result = stats.chi2_contingency(table, correction=False)
    return float(result.statistic), float(result.pvalue)


def table_drift(
    table: str,
    reference: pl.DataFrame,
    current: pl.DataFrame,
    *,
    numeric: Sequence[str] = (),
    categorical: Sequence[str] = (),
    psi_threshold: float = 0.2,
    bins: int = 10,
) -> list[ColumnDrift]:
    """:func:`column_drift` of each named column present on both sides.

    List columns (a movie's genres) are compared as the categories of their exploded values.
    """
    missing = [c for c in (*numeric, *categorical) if c not in reference or c not in current]
    if missing:
        raise ValueError(f"{table}: columns {missing} are missing from the reference or current")
    results = []
    for name, kind in [(c, "numeric") for c in numeric] + [(c, "categorical") for c in categorical]:
        ref, cur = reference.get_column(name), current.get_column(name)
        if ref.dtype == pl.List:
            ref, cur = ref.explode(), cur.explode()
        results.append(
            column_drift(
                table,
                ref,
                cur,
                kind=kind,
                psi_threshold=psi_threshold,
                bins=bins,  # type: ignore[arg-type]
            )
        )
    return results


@dataclass(frozen=True)
class NewEntities:
    """How much of the current data is about users or movies the reference did not have."""

    new_users: int
    current_users: int
    new_user_interaction_share: float
    new_movies: int
    current_movies: int
    new_movie_interaction_share: float

    @property
    def new_user_share(self) -> float:
        """New users / current users (0.0 without current users)."""
        return self.new_users / self.current_users if self.current_users else 0.0

    @property
    def new_movie_share(self) -> float:
        """New movies / movies with current interactions (0.0 without any)."""
        return self.new_movies / self.current_movies if self.current_movies else 0.0

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready dict, shares included."""
        return {
            **asdict(self),
            "new_user_share": self.new_user_share,
            "new_movie_share": self.new_movie_share,
        }


def new_entities(reference: pl.DataFrame, current: pl.DataFrame) -> NewEntities:
    """Users and movies of ``current`` interactions absent from ``reference`` interactions.

    Both frames have ``user_id`` and ``movie_id`` columns, a row per interaction; the
    interaction shares are the fraction of current rows that involve a new user (movie).
    """
    counts: dict[str, tuple[int, int, float]] = {}
    for key in ("user_id", "movie_id"):
        is_new = ~current.get_column(key).is_in(reference.get_column(key).unique().implode())
        new_rows = int(is_new.sum())
        counts[key] = (
            current.filter(is_new).get_column(key).n_unique() if new_rows else 0,
            current.get_column(key).n_unique(),
            new_rows / current.height if current.height else 0.0,
        )
    return NewEntities(*counts["user_id"], *counts["movie_id"])


def _null_share(series: pl.Series) -> float:
    return series.null_count() / series.len() if series.len() else 0.0


# What is compared in each feature table; the user table's numeric columns also include every
# ``affinity_<genre>`` column. Ids never drift meaningfully and absolute times always do (the
# relative ``days_since_last`` stands for them).
FEATURE_COLUMNS: dict[str, dict[str, tuple[str, ...]]] = {
    "interactions": {"numeric": (), "categorical": ("rating", "source")},
    "movie_features": {
        "numeric": ("year", "popularity", "rating_count", "rating_mean"),
        "categorical": ("genres",),
    },
    "user_features": {
        "numeric": ("activity_count", "rating_mean", "days_since_last"),
        "categorical": (),
    },
}


@dataclass(frozen=True)
class DriftReport:
    """Every column's drift, new users and movies, and which columns drifted."""

    columns: list[ColumnDrift]
    new_entities: NewEntities
    psi_threshold: float

    @property
    def drifted(self) -> list[ColumnDrift]:
        """The columns whose PSI reached the threshold."""
        return [c for c in self.columns if c.drifted]

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready dict."""
        return {
            "psi_threshold": self.psi_threshold,
            "columns": [c.to_dict() for c in self.columns],
            "drifted": [f"{c.table}.{c.column}" for c in self.drifted],
            "new_entities": self.new_entities.to_dict(),
        }


def feature_drift(
    reference: dict[str, pl.DataFrame],
    current: dict[str, pl.DataFrame],
    *,
    psi_threshold: float = 0.2,
    bins: int = 10,
) -> DriftReport:
    """Drift of the feature tables ``current`` against ``reference`` (both as built by
    :func:`recommender.features.build.build_feature_tables`), column by column
    (:data:`FEATURE_COLUMNS`), and the new users and movies of the interactions."""
    columns: list[ColumnDrift] = []
    for table, kinds in FEATURE_COLUMNS.items():
        ref, cur = reference[table], current[table]
        numeric = list(kinds["numeric"])
        if table == "user_features":
            numeric += sorted(
                c for c in ref.columns if c.startswith("affinity_") and c in cur.columns
            )
        present = [c for c in kinds["categorical"] if c in ref.columns and c in cur.columns]
        columns += table_drift(
            table,
            ref,
            cur,
            numeric=numeric,
            categorical=present,
            psi_threshold=psi_threshold,
            bins=bins,
        )
    return DriftReport(
        columns=columns,
        new_entities=new_entities(reference["interactions"], current["interactions"]),
        psi_threshold=psi_threshold,
    )
