from __future__ import annotations

import math

import numpy as np
import polars as pl
import pytest

from recommender.monitoring.drift import (
    chi_square_homogeneity,
    column_drift,
    new_entities,
    numeric_psi,
    psi_from_shares,
    quantile_edges,
    table_drift,
)


def test_psi_of_known_shares() -> None:
    # (0.25 - 0.5) ln(0.25 / 0.5) + (0.75 - 0.5) ln(0.75 / 0.5)
    expected = -0.25 * math.log(0.5) + 0.25 * math.log(1.5)
    assert psi_from_shares(np.array([0.5, 0.5]), np.array([0.25, 0.75])) == pytest.approx(expected)


def test_psi_floors_empty_bins() -> None:
    value = psi_from_shares(np.array([1.0, 0.0]), np.array([0.0, 1.0]))
    assert math.isfinite(value)
    assert value == pytest.approx(2 * (1 - 1e-4) * math.log(1 / 1e-4), rel=1e-3)


def test_psi_of_identical_data_is_zero_and_a_shift_is_flagged() -> None:
    rng = np.random.default_rng(0)
    reference = rng.normal(size=50_000)
    assert numeric_psi(reference, reference.copy()) == pytest.approx(0.0, abs=1e-12)
    same_distribution = rng.normal(size=50_000)
    assert numeric_psi(reference, same_distribution) < 0.01
    shifted = column_drift(
        "t",
        pl.Series("x", reference),
        pl.Series("x", rng.normal(loc=1.0, size=50_000)),
        kind="numeric",
    )
    assert shifted.drifted and shifted.psi > 0.2
    assert shifted.test == "ks" and shifted.p_value < 1e-10


def test_quantile_edges_merge_repeated_quantiles() -> None:
    assert quantile_edges(np.array([1.0] * 90 + [2.0] * 10)).tolist() == [1.0, 2.0]
    with pytest.raises(ValueError, match="bins"):
        quantile_edges(np.array([1.0]), bins=1)


def test_empty_sides_do_not_drift() -> None:
    result = column_drift(
        "t", pl.Series("x", [1.0, 2.0]), pl.Series("x", [], dtype=pl.Float64), kind="numeric"
    )
    assert (result.psi, result.p_value, result.drifted) == (0.0, 1.0, False)


def test_chi_square_of_a_known_table() -> None:
    # [[30, 10], [10, 30]]: every expected count is 20, so chi2 = 4 * 10^2 / 20 = 20 on 1 dof.
    statistic, p_value = chi_square_homogeneity(np.array([30, 10]), np.array([10, 30]))
    assert statistic == pytest.approx(20.0)
    assert p_value == pytest.approx(7.744e-06, rel=1e-3)
    assert chi_square_homogeneity(np.array([5, 5]), np.array([5, 5])) == (0.0, 1.0)
    assert chi_square_homogeneity(np.array([5, 0]), np.array([7, 0])) == (0.0, 1.0)


def test_categorical_drift_counts_nulls_apart_and_explodes_lists() -> None:
    reference = pl.DataFrame({"genres": [["Drama"], ["Comedy", "Drama"], None]})
    current = pl.DataFrame({"genres": [["Drama"], ["Drama"], ["Drama"], ["Drama"]]})
    (result,) = table_drift("movies", reference, current, categorical=["genres"])
    assert result.kind == "categorical" and result.test == "chi2"
    # reference shares Comedy 1/3, Drama 2/3; current Drama only.
    expected = (1e-4 - 1 / 3) * math.log(1e-4 / (1 / 3)) + (1 - 2 / 3) * math.log(1 / (2 / 3))
    assert result.psi == pytest.approx(expected)
    assert result.reference_null_share == pytest.approx(1 / 4)


def test_table_drift_names_missing_columns() -> None:
    with pytest.raises(ValueError, match=r"\['age'\]"):
        table_drift("users", pl.DataFrame({"x": [1]}), pl.DataFrame({"x": [1]}), numeric=["age"])


def test_new_users_and_movies() -> None:
    reference = pl.DataFrame({"user_id": [1, 2], "movie_id": [10, 20]})
    current = pl.DataFrame({"user_id": [1, 3, 3, 2], "movie_id": [10, 10, 30, 20]})
    result = new_entities(reference, current)
    assert (result.new_users, result.current_users) == (1, 3)
    assert result.new_user_share == pytest.approx(1 / 3)
    assert result.new_user_interaction_share == pytest.approx(2 / 4)
    assert (result.new_movies, result.current_movies) == (1, 3)
    assert result.new_movie_interaction_share == pytest.approx(1 / 4)
    empty = new_entities(reference, current.clear())
    assert (empty.new_user_share, empty.new_movie_share) == (0.0, 0.0)
