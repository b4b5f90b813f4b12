"""The layout's rules, checked on the source: one configuration path, contracts defined once."""

from __future__ import annotations

import re
from pathlib import Path

import polars as pl
import pytest

from recommender.data import contracts, schemas
from recommender.modeling.protocol import DEFAULT_PROTOCOL
from recommender.settings import PROJECT_ROOT, Settings

SETTINGS_MODULE = PROJECT_ROOT / "recommender" / "settings.py"


def _python_files(*packages: str) -> list[Path]:
    return sorted(path for name in packages for path in (PROJECT_ROOT / name).rglob("*.py"))


@pytest.mark.parametrize(
    ("pattern", "packages"),
    [
        (r"\bget_settings\b", ("recommender",)),
        (r"\bos\.environ\b", ("recommender", "flows", "tasks", "bentos")),
    ],
)
def test_only_the_settings_module_reads_the_configuration(
    pattern: str, packages: tuple[str, ...]
) -> None:
    offenders = [
        str(path.relative_to(PROJECT_ROOT))
        for path in _python_files(*packages)
        if path != SETTINGS_MODULE and re.search(pattern, path.read_text())
    ]
    assert offenders == []


def test_the_library_imports_neither_prefect_nor_bentoml() -> None:
    offenders = [
        str(path.relative_to(PROJECT_ROOT))
        for path in _python_files("recommender")
        if re.search(r"^\s*(from|import) (prefect|bentoml)\b", path.read_text(), re.MULTILINE)
    ]
    assert offenders == []


def test_benchmarks_do_not_import_the_tests() -> None:
    offenders = [
        str(path.relative_to(PROJECT_ROOT))
        for path in _python_files("benchmarks", "support")
        if re.search(r"^\s*(from|import) tests\b", path.read_text(), re.MULTILINE)
    ]
    assert offenders == []


@pytest.mark.parametrize(
    ("model", "contract"),
    [
        (schemas.MoviesSchema, contracts.MOVIES),
        (schemas.LinksSchema, contracts.LINKS),
        (schemas.TmdbDetailsSchema, contracts.TMDB_DETAILS),
        (schemas.CatalogSchema, contracts.CATALOG),
        (schemas.RatingsSchema, contracts.RATINGS),
        (schemas.InteractionsSchema, contracts.INTERACTIONS),
        (schemas.FeedbackSchema, contracts.FEEDBACK),
    ],
)
def test_each_pandera_model_accepts_exactly_its_contract(model: type, contract: pl.Schema) -> None:
    assert list(model.to_schema().columns) == contract.names()
    model.validate(contract.to_frame())  # an empty frame of the contract passes
    with pytest.raises(Exception, match="column"):
        model.validate(contract.to_frame().with_columns(extra=pl.lit(1)))


def test_settings_take_the_evaluation_defaults_from_the_protocol() -> None:
    assert Settings().evaluation_protocol == DEFAULT_PROTOCOL


def test_every_data_path_lies_under_the_data_dir(tmp_path: Path) -> None:
    settings = Settings(data_dir=tmp_path, mlflow_tracking_uri=None)
    paths = [
        getattr(settings, name)
        for name in dir(Settings)
        if isinstance(getattr(Settings, name), property) and name.endswith(("_dir", "_log"))
    ]
    assert len(paths) >= 10
    assert all(path.is_relative_to(tmp_path) for path in paths)
    assert settings.mlflow_uri == f"sqlite:///{tmp_path.resolve() / 'mlflow' / 'mlflow.db'}"
