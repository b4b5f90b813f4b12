"""Settings: defaults, deployments/<env>.yaml layering, environment overrides, clear errors."""

from __future__ import annotations

from pathlib import Path

import pytest

from recommender.settings import SettingsError, get_settings


@pytest.fixture
def deployments(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    for name in ("MOVIEREC_ENV", "MOVIEREC_CRAWL_RATE_LIMIT", "TMDB_API_KEY", "TMDB_API_TOKEN"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("MOVIEREC_DEPLOYMENTS_DIR", str(tmp_path))
    (tmp_path / "staging.yaml").write_text(
        "settings:\n  env: staging\n  crawl_rate_limit: 20\n  tmdb_language: ko-KR\n"
        "replicas: 3  # other sections belong to other readers\n"
    )
    return tmp_path


def test_defaults_without_a_yaml_file(deployments: Path) -> None:
    settings = get_settings()
    assert settings.env == "dev"
    assert settings.crawl_rate_limit == 40
    assert settings.tmdb_language == "en-US"
    assert settings.tmdb_base_url == "https://api.themoviedb.org/3"
    assert not settings.has_tmdb_credentials


def test_the_environment_selects_the_yaml_and_variables_override_it(
    deployments: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("MOVIEREC_ENV", "staging")
    settings = get_settings()
    assert (settings.env, settings.crawl_rate_limit, settings.tmdb_language) == (
        "staging",
        20,
        "ko-KR",
    )
    monkeypatch.setenv("MOVIEREC_CRAWL_RATE_LIMIT", "7.5")
    assert get_settings().crawl_rate_limit == 7.5


def test_credentials_come_from_the_well_known_names_and_stay_secret(
    deployments: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("TMDB_API_TOKEN", "secret-token-value")
    settings = get_settings()
    assert settings.has_tmdb_credentials
    assert settings.tmdb_api_token is not None
    assert settings.tmdb_api_token.get_secret_value() == "secret-token-value"
    assert "secret-token-value" not in repr(settings)


def test_bad_values_name_the_setting(deployments: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MOVIEREC_CRAWL_RATE_LIMIT", "-3")
    with pytest.raises(SettingsError, match="crawl_rate_limit: Input should be greater than 0"):
        get_settings()


def test_unknown_environment_is_refused(deployments: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MOVIEREC_ENV", "production")
    with pytest.raises(SettingsError, match="MOVIEREC_ENV='production' is not one of dev"):
        get_settings()


def test_unknown_yaml_keys_are_refused(deployments: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (deployments / "prod.yaml").write_text("settings:\n  crawl_rate_limt: 5\n")
    monkeypatch.setenv("MOVIEREC_ENV", "prod")
    with pytest.raises(SettingsError, match="crawl_rate_limt"):
        get_settings()


@pytest.mark.parametrize(
    ("variable", "value", "message"),
    [
        ("MOVIEREC_EXPERIMENT_MODE", "canary", "experiment_mode: Input should be 'off', 'shadow'"),
        ("MOVIEREC_EXPERIMENT_SHARE", "0", "experiment_share: Input should be greater than or"),
        ("MOVIEREC_EXPERIMENT_SHARE", "100", "experiment_share: Input should be less than or"),
        ("MOVIEREC_EXPERIMENT_SALT", "a b", "experiment_salt: String should match pattern"),
        ("MOVIEREC_PROMOTION", "manual", "promotion: Input should be 'offline' or 'online'"),
        ("MOVIEREC_EXPERIMENT_ALPHA", "0.5", "experiment_alpha: Input should be less than 0.5"),
    ],
)
def test_bad_experiment_settings_name_the_setting(
    deployments: Path,
    monkeypatch: pytest.MonkeyPatch,
    variable: str,
    value: str,
    message: str,
) -> None:
    monkeypatch.setenv(variable, value)
    with pytest.raises(SettingsError, match=message):
        get_settings()
