"""One typed settings object for the whole project.

Precedence, highest first: keyword arguments, ``MOVIEREC_*`` environment variables (plus the
few well-known names such as ``TMDB_API_KEY`` and ``MLFLOW_TRACKING_URI``), the ``settings:``
section of ``k8s/overlays/<env>/<env>.yaml``, then the defaults below. Nothing happens at import
time: call :func:`get_settings` (or build :class:`Settings`) when you need the values.
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

from recommender.modeling.protocol import DEFAULT_PROTOCOL, EvaluationProtocol, SplitKind

PROJECT_ROOT = Path(__file__).resolve().parent.parent
EMBEDDED_MOVIELENS = PROJECT_ROOT / "data" / "movielens" / "ml-latest-small"
OVERLAYS_DIR = PROJECT_ROOT / "k8s" / "overlays"
ENVIRONMENTS = ("dev", "staging", "prod")
REGISTERED_MODEL_NAME = "movie-recommender"
"""The MLflow registered model and the BentoML model (and Bento) that serve it share this name."""

Environment = Literal["dev", "staging", "prod"]


class SettingsError(ValueError):
    """The configuration (environment variables or ``k8s/overlays/<env>/<env>.yaml``) is invalid."""


class Settings(BaseSettings):
    """Typed configuration, read from the environment and ``k8s/overlays/<env>/<env>.yaml``."""

    model_config = SettingsConfigDict(
        env_prefix="MOVIEREC_",
        extra="forbid",
        populate_by_name=True,
    )

    env: Environment = "dev"
    debug: bool = Field(default=False, description="Show tracebacks of command-line errors.")
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
    crawl_retry_not_found_after_days: float = Field(
        default=30.0,
        ge=0,
        description="A movie TMDB answered 404 for is asked for again after this many days.",
    )

    # Validation
    max_rejected_fraction: float = Field(default=0.01, ge=0, le=1)

    # Feedback (recommender/data/feedback.py, recommender/data/ingest.py)
    feedback_log_max_bytes: int = Field(
        default=64 * 1024 * 1024,
        ge=4096,
        description="The feedback event log rotates to a numbered segment past this size.",
    )
    feedback_min_user_movies: int = Field(
        default=5,
        ge=1,
        description="Distinct movies a new feedback-only user needs before entering training.",
    )
    feedback_max_new_user_fraction: float = Field(
        default=0.05,
        ge=0,
        description="New feedback-only users that enter training per data run, at most, as a "
        "fraction of the users known already.",
    )

    # Training (defaults: recommender.modeling.protocol), tracking and the registry
    split: SplitKind = DEFAULT_PROTOCOL.split
    test_fraction: float = Field(default=DEFAULT_PROTOCOL.test_fraction, gt=0, lt=1)
    seed: int = DEFAULT_PROTOCOL.seed
    k: int = Field(default=DEFAULT_PROTOCOL.k, ge=1, le=100)
    tuning_trials: int = Field(default=DEFAULT_PROTOCOL.trials, ge=1, le=1000)
    min_rating: float | None = Field(default=DEFAULT_PROTOCOL.min_rating, ge=0.5, le=5.0)
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
    registered_model_name: str = REGISTERED_MODEL_NAME
    promotion_margin: float = Field(
        default=0.0,
        ge=0,
        description="The challenger takes champion when its validation ndcg@k beats the "
        "champion's by more than this.",
    )
    stale_run_hours: float = Field(
        default=24.0,
        gt=0,
        description="A RUNNING MLflow run started on another host is marked FAILED by the next "
        "training run once it is this old (on this host: as soon as its process is gone).",
    )

    promotion: Literal["offline", "online"] = Field(
        default="offline",
        description="offline: the promotion gate's validation ndcg decides on champion. online: "
        "a trained challenger starts an experiment and the monitoring flow promotes it only on "
        "the experiment's 'promote' decision (docs/experiments.md).",
    )

    # --- Online experiments (recommender/experiments/, docs/experiments.md) ---------------------
    experiment_mode: Literal["off", "shadow", "ab"] = Field(
        default="off",
        description="off: the champion serves everyone. shadow: the challenger also ranks every "
        "request, logged, not shown. ab: experiment_share percent of users see the challenger.",
    )
    experiment_share: int = Field(
        default=10,
        ge=1,
        le=99,
        description="In ab mode, the percent of users (hash buckets of 100) the challenger serves.",
    )
    experiment_salt: str = Field(
        default="",
        max_length=64,
        pattern=r"^[A-Za-z0-9_.-]*$",
        description="Appended to the experiment id (v<champion>-vs-v<challenger>) that salts the "
        "assignment: a new value reshuffles users without a new challenger.",
    )
    experiment_alpha: float = Field(
        default=0.05, gt=0, lt=0.5, description="The experiment's false-promotion bound."
    )
    experiment_power: float = Field(
        default=0.8, gt=0, lt=1, description="Power of the planned sample per arm."
    )
    experiment_mde: float = Field(
        default=0.10,
        gt=0,
        le=10,
        description="Minimum detectable effect: the relative lift of the champion's click rate "
        "the experiment is planned for.",
    )
    experiment_min_users: int = Field(
        default=100, ge=10, description="Users each arm needs before any decision."
    )
    # ---------------------------------------------------------------------------------------------

    # --- Monitoring (flows/monitoring.py, recommender/monitoring/) -----------------------------
    monitoring_experiment: str = Field(
        default="monitoring", description="The MLflow experiment of the monitoring runs."
    )
    drift_psi_threshold: float = Field(
        default=0.2, gt=0, description="A feature drifts when its PSI reaches this."
    )
    retrain_feedback_interactions: int = Field(
        default=1000,
        ge=1,
        description="Ask for retraining once this many feedback interactions are newer than "
        "the champion's training data.",
    )
    retrain_cooldown_hours: float = Field(
        default=24.0,
        ge=0,
        description="A retraining event is emitted at most once per this many hours.",
    )
    # ---------------------------------------------------------------------------------------------

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

    # --- Serving (bentos/service.py, recommender/serving/) --------------------------------------
    bento_model_tag: str = Field(
        default=f"{REGISTERED_MODEL_NAME}:latest",
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
    feedback_rate_per_minute: float = Field(
        default=60.0,
        ge=0,
        description="Feedback events a client may post a minute, per service worker, after "
        "a burst of feedback_burst; faster ones get a 429 with Retry-After. 0 disables the limit.",
    )
    feedback_burst: int = Field(
        default=30, ge=1, description="Feedback events a client may post at once."
    )
    rate_limit_max_clients: int = Field(
        default=10_000,
        ge=1,
        description="Clients the rate limiter tracks per worker; the least recently seen is "
        "forgotten first (it starts again with a full burst).",
    )
    trusted_proxy_hops: int = Field(
        default=0,
        ge=0,
        le=10,
        description="Reverse proxies in front of the service that append to X-Forwarded-For "
        "(1 behind the Kubernetes Ingress); 0 identifies a client by its peer address.",
    )
    log_impressions: bool = Field(
        default=True,
        description="Append every recommendation answer to the impression log (raw/impressions).",
    )
    impression_flush_seconds: float = Field(
        default=0.2,
        gt=0,
        le=60,
        description="The longest an impression waits in memory for its batch to be written "
        "(what a kill -9 of a worker can lose).",
    )
    serve_header_timeout_seconds: float = Field(
        default=10.0,
        gt=0,
        le=300,
        description="A connection whose request line and headers are not complete this many "
        "seconds after it opened (or after its previous answer) is closed.",
    )
    # ---------------------------------------------------------------------------------------------

    @field_validator("tmdb_base_url", "tmdb_image_base_url")
    @classmethod
    def _strip_slash(cls, value: str) -> str:
        if not value.startswith(("http://", "https://")):
            raise ValueError(f"must be an http(s) URL, got {value!r}")
        return value.rstrip("/")

    @property
    def evaluation_protocol(self) -> EvaluationProtocol:
        """The configured offline evaluation protocol."""
        return EvaluationProtocol(
            split=self.split,
            test_fraction=self.test_fraction,
            seed=self.seed,
            k=self.k,
            trials=self.tuning_trials,
            min_rating=self.min_rating,
        )

    def tmdb_crawl_options(self) -> dict[str, object]:
        """The values of ``recommender.data.tmdb.CrawlConfig``, credentials included."""
        return {
            "api_key": self.tmdb_api_key,
            "api_token": self.tmdb_api_token,
            "base_url": self.tmdb_base_url,
            "language": self.tmdb_language,
            "region": self.tmdb_region,
            "rate_limit": self.crawl_rate_limit,
            "concurrency": self.crawl_concurrency,
            "lists": tuple(self.crawl_lists),
            "pages": self.crawl_pages,
            "retry_not_found_after_days": self.crawl_retry_not_found_after_days,
        }

    @property
    def has_tmdb_credentials(self) -> bool:
        """True when a TMDB v3 key or v4 token is configured."""
        return self.tmdb_api_key is not None or self.tmdb_api_token is not None

    # --- Paths under data_dir: every one of them is named here, nowhere else --------------------
    @property
    def raw_dir(self) -> Path:
        """Raw inputs: the TMDB crawl and the served feedback and impression logs."""
        return self.data_dir / "raw"

    @property
    def tmdb_dir(self) -> Path:
        """The crawled TMDB responses (append-only JSONL)."""
        return self.raw_dir / "tmdb"

    @property
    def feedback_log(self) -> Path:
        """The feedback event log the service appends to and the data flow reads."""
        return self.raw_dir / "feedback" / "events.jsonl"

    @property
    def impression_log(self) -> Path:
        """The impression log the service appends to and the monitoring flow reads."""
        return self.raw_dir / "impressions" / "impressions.jsonl"

    @property
    def processed_dir(self) -> Path:
        """The validated tables and their manifest: a symlink to the current generation in
        :attr:`processed_generations_dir`, swapped atomically by the data flow."""
        return self.data_dir / "processed"

    @property
    def processed_generations_dir(self) -> Path:
        """The generations of the processed tables (the current, the previous one, and those
        of runs that failed since, with their quarantine tables)."""
        return self.data_dir / "processed-generations"

    @property
    def interactions_table(self) -> Path:
        """The processed interactions, whose users the next data run knows already."""
        return self.processed_dir / "interactions.parquet"

    @property
    def catalog_table(self) -> Path:
        """The processed catalog (``movies`` table) that a packaged model ships with."""
        return self.processed_dir / "movies.parquet"

    @property
    def features_dir(self) -> Path:
        """The feature store's root."""
        return self.data_dir / "features"

    @property
    def models_dir(self) -> Path:
        """Trained models, one directory per feature version."""
        return self.data_dir / "models"

    @property
    def mlflow_dir(self) -> Path:
        """The embedded MLflow store (``mlflow.db``) and its artifacts."""
        return self.data_dir / "mlflow"

    @property
    def mlflow_artifacts_dir(self) -> Path:
        """Where experiments of the embedded MLflow store keep their artifacts."""
        return self.mlflow_dir / "artifacts"

    @property
    def mlflow_uri(self) -> str:
        """``mlflow_tracking_uri`` when set, else the embedded SQLite store."""
        if self.mlflow_tracking_uri:
            return self.mlflow_tracking_uri
        return f"sqlite:///{(self.mlflow_dir / 'mlflow.db').resolve()}"

    @property
    def predictions_dir(self) -> Path:
        """Batch predictions, one directory per model version."""
        return self.data_dir / "predictions"

    @property
    def cache_dir(self) -> Path:
        """Downloads kept between runs (MovieLens zips)."""
        return self.data_dir / "cache"

    @property
    def movielens_cache_dir(self) -> Path:
        """Where MovieLens URLs are downloaded to."""
        return self.cache_dir / "movielens"

    @property
    def monitoring_dir(self) -> Path:
        """Monitoring reports, one directory per run."""
        return self.data_dir / "monitoring"

    @property
    def monitoring_events_state(self) -> Path:
        """When the monitoring flow last emitted each retraining event (the cooldown's memory)."""
        return self.monitoring_dir / "events.json"

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
                "set it to the environment whose k8s/overlays/<env>/<env>.yaml to use"
            )
        mounted = os.environ.get("MOVIEREC_DEPLOYMENTS_DIR")
        yaml_file = Path(mounted) / f"{env}.yaml" if mounted else environment_file(env)
        sources: list[PydanticBaseSettingsSource] = [init_settings, env_settings]
        if yaml_file.is_file():
            sources.append(
                YamlConfigSettingsSource(
                    settings_cls, yaml_file=yaml_file, yaml_config_section="settings"
                )
            )
        return tuple(sources)


def environment_file(env: str) -> Path:
    """The settings file of environment ``env``: its Kubernetes overlay owns it (and makes the
    ConfigMap mounted where ``MOVIEREC_DEPLOYMENTS_DIR`` points from it)."""
    return OVERLAYS_DIR / env / f"{env}.yaml"


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
            "and k8s/overlays/<env>/<env>.yaml (MOVIEREC_ENV selects <env>)"
        ) from exc


# Environment of the project's own processes (the movierec command, the test session): native
# libraries read these once, when they load, so they are set before anything imports numpy.
PROCESS_ENVIRONMENT = {
    # ALS and batched scoring run twice as fast single-threaded here; implicit warns otherwise.
    "OPENBLAS_NUM_THREADS": "1",
    "MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR": "false",
}
FLOW_LOGGING_ENVIRONMENT = {
    # Prefect's handlers show (and send to the server) the library's progress logs too; only
    # for processes whose library calls run inside flows, as the movierec command's do.
    "PREFECT_LOGGING_EXTRA_LOGGERS": "recommender",
}


def configure_process(*, flow_logging: bool = False) -> None:
    """Set :data:`PROCESS_ENVIRONMENT` (and, with ``flow_logging``,
    :data:`FLOW_LOGGING_ENVIRONMENT`) where the environment does not already say otherwise.

    Call it first thing in a process entry point, before numpy is imported.
    """
    variables = {**PROCESS_ENVIRONMENT, **(FLOW_LOGGING_ENVIRONMENT if flow_logging else {})}
    for name, value in variables.items():
        os.environ.setdefault(name, value)
