"""One typed settings object for the whole project.

Precedence, highest first: keyword arguments, ``MOVIEREC_*`` environment variables (plus the
few well-known names such as ``TMDB_API_KEY`` and ``MLFLOW_TRACKING_URI``), the ``settings:``
section of ``deployments/<env>.yaml``, then the defaults below. Nothing happens at import time:
call :func:`get_settings` (or build :class:`Settings`) when you need the values.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Literal

from pydantic import AliasChoices, Field, SecretStr, ValidationError, field_validator
from pydantic_settings import (
    BaseSettings,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
    YamlConfigSettingsSource,
)

PROJECT_ROOT = Path(__file__).resolve().parent.parent
EMBEDDED_MOVIELENS = PROJECT_ROOT / "data" / "movielens" / "ml-latest-small"
DEPLOYMENTS_DIR = PROJECT_ROOT / "deployments"
ENVIRONMENTS = ("dev", "staging", "prod")

Environment = Literal["dev", "staging", "prod"]


class SettingsError(ValueError):
    """The configuration (environment variables or ``deployments/<env>.yaml``) is invalid."""


class Settings(BaseSettings):
    """Typed configuration, read from the environment and ``deployments/<env>.yaml``."""

    model_config = SettingsConfigDict(
        env_prefix="MOVIEREC_",
        extra="forbid",
        populate_by_name=True,
    )

    env: Environment = "dev"
    data_dir: Path = Field(
        default=PROJECT_ROOT / "var",
        description="Root of all generated data (raw crawls, processed tables, models).",
    )
    ratings_source: str = Field(
        default=str(EMBEDDED_MOVIELENS),
        description="MovieLens directory, .zip or http(s) URL used when none is given.",
    )

    # TMDB
    tmdb_api_key: SecretStr | None = Field(
        default=None, validation_alias=AliasChoices("TMDB_API_KEY", "tmdb_api_key")
    )
    tmdb_api_token: SecretStr | None = Field(
        default=None, validation_alias=AliasChoices("TMDB_API_TOKEN", "tmdb_api_token")
    )
    tmdb_base_url: str = Field(default="https://api.themoviedb.org/3")
    tmdb_language: str = Field(default="en-US")
    tmdb_region: str | None = Field(default=None)
    tmdb_image_base_url: str = Field(
        default="https://image.tmdb.org/t/p/w342",
    )
    crawl_rate_limit: float = Field(default=40.0, gt=0)
    crawl_concurrency: int = Field(default=8, ge=1, le=64)
    crawl_pages: int = Field(default=5, ge=1, le=500)
    crawl_lists: list[Literal["popular", "top_rated", "discover"]] = Field(
        default=["popular", "top_rated"]
    )

    # Validation
    max_rejected_fraction: float = Field(default=0.01, ge=0, le=1)

    # Training, tracking and the registry
    split: Literal["random-per-user", "random-per-item", "temporal-per-user"] = "random-per-user"
    test_fraction: float = Field(default=0.25, gt=0, lt=1)
    seed: int = 42
    k: int = Field(default=10, ge=1, le=100)
    tuning_trials: int = Field(default=12, ge=1)
    feature_version: str | None = Field(
        default=None,
        description="Train on this stored feature version instead of building features anew.",
    )
    use_gpu: bool = Field(default=False, description="Train on CUDA when implicit reports it.")
    mlflow_tracking_uri: str | None = Field(
        default=None,
        validation_alias=AliasChoices("MLFLOW_TRACKING_URI", "mlflow_tracking_uri"),
        description="Tracking server URI; the default is a SQLite store under data_dir/mlflow.",
    )
    mlflow_experiment: str = "movierec"
    registered_model_name: str = "movie-recommender"
    promotion_margin: float = Field(
        default=0.0,
        ge=0,
        description="The challenger takes champion when its validation ndcg@k beats the "
        "champion's by more than this.",
    )

    # --- Prefect task runner (flows/task_runners.py) ---------------------------------------------
    task_runner: Literal["thread", "dask"] = Field(
        default="thread",
        description="Where a flow's submitted tasks run: a thread pool in the flow's process, "
        "or Dask.",
    )
    dask_scheduler_address: str | None = Field(
        default=None,
        description="With task_runner 'dask': the scheduler to use (e.g. tcp://dask:8786); "
        "unset, each flow run starts a temporary local cluster.",
    )
    # ---------------------------------------------------------------------------------------------

    # --- Serving (bentos/service.py, recommender/serving.py) -----------------------------------
    bento_model_tag: str = Field(
        default="movie-recommender:latest",
        description="The BentoML model the service loads; 'latest' is the newest imported "
        "champion.",
    )
    frontend_dist: Path = Field(
        default=PROJECT_ROOT / "frontend" / "dist",
        description="The built web page, served at / when the directory exists.",
    )
    serve_max_body_bytes: int = Field(
        default=64 * 1024, ge=1024, description="Larger request bodies get a 413."
    )
    # ---------------------------------------------------------------------------------------------

    @field_validator("tmdb_base_url", "tmdb_image_base_url")
    @classmethod
    def _strip_slash(cls, value: str) -> str:
        if not value.startswith(("http://", "https://")):
            raise ValueError(f"must be an http(s) URL, got {value!r}")
        return value.rstrip("/")

    @property
    def has_tmdb_credentials(self) -> bool:
        """True when a TMDB v3 key or v4 token is configured."""
        return self.tmdb_api_key is not None or self.tmdb_api_token is not None

    @property
    def raw_dir(self) -> Path:
        return self.data_dir / "raw"

    @property
    def processed_dir(self) -> Path:
        return self.data_dir / "processed"

    @property
    def feedback_log(self) -> Path:
        return self.raw_dir / "feedback" / "events.jsonl"

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        env = os.environ.get("MOVIEREC_ENV", "dev")
        if env not in ENVIRONMENTS:
            raise SettingsError(
                f"MOVIEREC_ENV={env!r} is not one of {', '.join(ENVIRONMENTS)}; "
                "set it to the environment whose deployments/<env>.yaml to use"
            )
        yaml_file = (
            Path(os.environ.get("MOVIEREC_DEPLOYMENTS_DIR", DEPLOYMENTS_DIR)) / f"{env}.yaml"
        )
        sources: list[PydanticBaseSettingsSource] = [init_settings, env_settings]
        if yaml_file.is_file():
            sources.append(
                YamlConfigSettingsSource(
                    settings_cls, yaml_file=yaml_file, yaml_config_section="settings"
                )
            )
        return tuple(sources)


def get_settings(**overrides: object) -> Settings:
    """Build the settings, turning a validation failure into a :class:`SettingsError`.

    The message names each bad setting and the environment variable that sets it.
    """
    try:
        return Settings(**overrides)  # type: ignore[arg-type]
    except ValidationError as exc:
        problems = "; ".join(
            f"{'.'.join(str(p) for p in err['loc'])}: {err['msg']}" for err in exc.errors()
        )
        raise SettingsError(
            f"invalid configuration ({problems}); check the MOVIEREC_* environment variables "
            f"and deployments/{os.environ.get('MOVIEREC_ENV', 'dev')}.yaml"
        ) from exc
