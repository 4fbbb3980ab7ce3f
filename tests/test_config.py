"""config.yaml: interpolation, validation with file:line, database URL precedence."""

from __future__ import annotations

from pathlib import Path

import pytest

from engine import config, db
from engine.errors import ConfigError

MINIMAL = """\
store:
  name: Test Shop
  url: https://shop.example
  postal_address: "1 Main Street, 10001 Springfield"
  timezone: Europe/Paris
"""


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "config.yaml"
    path.write_text(text)
    return path


def test_repository_config_loads_with_defaults(settings):
    assert settings.store.name == "Maison Verte"
    assert settings.store.zone.key == "Europe/Paris"
    assert settings.metrics.dormancy_days.drowsy == 60
    assert settings.metrics.value_tiers.a == pytest.approx(0.2)
    assert settings.database.url.endswith("/test.db")


def test_environment_variables_fill_secrets(tmp_path):
    path = write(tmp_path, MINIMAL + "smtp:\n  password: ${SHOP_SMTP_PASSWORD}\n"
                 "  port: ${P:-2525}\n")
    settings = config.load(path, environ={"SHOP_SMTP_PASSWORD": "hunter2"})
    assert settings.smtp.password.get_secret_value() == "hunter2"
    assert settings.smtp.port == 2525
    # A secret never shows when settings are printed or logged.
    assert "hunter2" not in repr(settings) and "hunter2" not in str(settings.smtp)


def test_missing_environment_variable_names_key_and_line(tmp_path):
    path = write(tmp_path, MINIMAL + "smtp:\n  host: mail.example\n  password: ${NOPE_PASSWORD}\n")
    with pytest.raises(ConfigError) as caught:
        config.load(path, environ={})
    message = str(caught.value)
    assert f"{path}:8:" in message
    assert '"smtp.password"' in message and "NOPE_PASSWORD" in message and "export" in message


def test_unknown_key_suggests_the_right_one(tmp_path):
    path = write(tmp_path, MINIMAL.replace("  timezone:", "  timezon:"))
    with pytest.raises(ConfigError) as caught:
        config.load(path, environ={})
    assert f"{path}:5:" in str(caught.value)
    assert 'did you mean "timezone"' in str(caught.value)


def test_bad_time_zone_is_explained(tmp_path):
    path = write(tmp_path, MINIMAL.replace("Europe/Paris", "Paris"))
    with pytest.raises(ConfigError, match=r'config.yaml:5: .*"Paris" is not a time zone name'):
        config.load(path, environ={})


def test_thresholds_must_ascend(tmp_path):
    path = write(tmp_path, MINIMAL + "metrics:\n  dormancy_days: {drowsy: 90, half_asleep: 60, "
                 "sleeping: 240}\n")
    with pytest.raises(ConfigError, match="drowsy < half_asleep < sleeping"):
        config.load(path, environ={})


def test_yaml_syntax_error_has_line(tmp_path):
    path = write(tmp_path, MINIMAL + "metrics:\n  dormancy_days: {drowsy: 60\n")
    with pytest.raises(ConfigError, match=r"config.yaml:\d+: this { is never closed"):
        config.load(path, environ={})


def test_missing_file_says_how_to_fix(tmp_path):
    with pytest.raises(ConfigError, match="--config"):
        config.load(tmp_path / "absent.yaml", environ={})


def test_database_url_precedence(tmp_path):
    path = write(tmp_path, MINIMAL + "database:\n  url: sqlite:///shop.db\n")
    assert config.load(path, environ={}).database.url == f"sqlite:///{tmp_path}/shop.db"
    from_env = config.load(path, environ={"RETAIN_DATABASE_URL": "sqlite:///env.db"})
    assert from_env.database.url == "sqlite:///env.db"
    from_flag = config.load(path, "sqlite:///flag.db", environ={"RETAIN_DATABASE_URL": "x"})
    assert from_flag.database.url == "sqlite:///flag.db"


def test_settings_are_frozen(settings):
    from pydantic import ValidationError

    with pytest.raises(ValidationError, match="frozen"):
        settings.store.name = "Other"  # type: ignore[misc]


def test_redact_hides_database_password():
    assert db.redact("postgresql+psycopg://app:s3cret@db:5432/shop") == \
        "postgresql+psycopg://app:***@db:5432/shop"
