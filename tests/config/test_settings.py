"""Process settings: defaults, CONSENTBRIDGE_* variables, overrides, and refusals naming the key."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest
from cryptography.fernet import Fernet

from consentbridge.config import Settings, SettingsError


def test_defaults_apply_to_an_empty_environment() -> None:
    settings = Settings.from_env({})

    assert settings.db_url == "sqlite:///./var/consentbridge.db"
    assert settings.secret_key is None
    assert settings.secret_key_file == Path("var/secret.key")
    assert settings.admin_token is None
    assert settings.public_url is None
    assert settings.log_level == "INFO"
    assert settings.retry_max_age_s == 72 * 3600
    assert settings.batch_size == 500
    assert settings.lease_s == 60
    assert settings.worker_lanes == 4
    assert settings.log_retention_days == 30
    assert settings.max_body_bytes == 1024 * 1024


def test_every_setting_is_read_from_its_variable() -> None:
    key = Fernet.generate_key().decode()
    environ = {
        "CONSENTBRIDGE_DB_URL": "postgresql://postgres@127.0.0.1:5432/test",
        "CONSENTBRIDGE_SECRET_KEY": key,
        "CONSENTBRIDGE_SECRET_KEY_FILE": "/etc/cb/key",
        "CONSENTBRIDGE_ADMIN_TOKEN": "admin-token-123-Kq7Wm2Xp9Lz4Rt6Y",
        "CONSENTBRIDGE_PUBLIC_URL": "https://cb.example.com/",
        "CONSENTBRIDGE_LOG_LEVEL": "debug",
        "CONSENTBRIDGE_LOG_FORMAT": "JSON",
        "CONSENTBRIDGE_LOG_USER_IDS": "plain",
        "CONSENTBRIDGE_RETRY_MAX_AGE_S": "3600",
        "CONSENTBRIDGE_BATCH_SIZE": " 100 ",
        "CONSENTBRIDGE_LEASE_S": "0.5",
        "CONSENTBRIDGE_WORKER_LANES": "12",
        "CONSENTBRIDGE_LOG_RETENTION_DAYS": "7",
        "CONSENTBRIDGE_ACTIVITY_RETENTION_DAYS": "40",
        "CONSENTBRIDGE_MAX_BODY_BYTES": "2048",
        "CONSENTBRIDGE_AUTH_FAILURES_PER_MINUTE": "5",
        "CONSENTBRIDGE_METRICS_TOKEN": "metrics-token-8Hq2",
        "CONSENTBRIDGE_HTTP_KEEP_ALIVE_S": "4",
        "CONSENTBRIDGE_HTTP_HEADER_TIMEOUT_S": "5",
        "CONSENTBRIDGE_HTTP_BODY_TIMEOUT_S": "6",
        "CONSENTBRIDGE_HTTP_MAX_CONNECTIONS": "7",
        "CONSENTBRIDGE_NIGHTLY_RECONCILE": " 2:30 ",
        "CONSENTBRIDGE_METRICS_HOST": "0.0.0.0",
        "CONSENTBRIDGE_METRICS_PORT": "9464",
        "CONSENTBRIDGE_ALERT_WEBHOOK_URL": "https://hooks.example.com/services/T0/B0/secret",
        "CONSENTBRIDGE_ALERT_BACKLOG_AGE_S": "600",
        "CONSENTBRIDGE_WRITE_CHUNK": "250",
        "CONSENTBRIDGE_DATAVERSE_PACING": " Off ",
        "CONSENTBRIDGE_DATAVERSE_WINDOW_S": "60",
    }

    settings = Settings.from_env(environ)

    assert settings.db_url == environ["CONSENTBRIDGE_DB_URL"]
    assert settings.secret_key is not None and settings.secret_key.get_secret_value() == key
    assert settings.secret_key_file == Path("/etc/cb/key")
    assert settings.admin_token is not None
    assert settings.admin_token.get_secret_value() == "admin-token-123-Kq7Wm2Xp9Lz4Rt6Y"
    assert settings.public_url == "https://cb.example.com"
    assert settings.log_level == "DEBUG"
    assert (settings.log_format, settings.log_user_ids) == ("json", "plain")
    assert (settings.retry_max_age_s, settings.batch_size, settings.lease_s) == (3600, 100, 0.5)
    assert settings.worker_lanes == 12
    assert (settings.log_retention_days, settings.max_body_bytes) == (7, 2048)
    assert settings.auth_failures_per_minute == 5
    assert settings.metrics_token is not None
    assert settings.metrics_token.get_secret_value() == "metrics-token-8Hq2"
    assert (settings.http_keep_alive_s, settings.http_header_timeout_s) == (4, 5)
    assert (settings.http_body_timeout_s, settings.http_max_connections) == (6, 7)
    assert settings.nightly_reconcile == "02:30"
    assert settings.activity_retention_days == 40
    assert (settings.metrics_host, settings.metrics_port) == ("0.0.0.0", 9464)
    assert settings.alert_webhook_url is not None
    assert settings.alert_webhook_url.get_secret_value().endswith("/secret")
    assert settings.alert_backlog_age_s == 600
    assert (settings.write_chunk, settings.dataverse_pacing) == (250, False)
    assert settings.dataverse_window_s == 60.0
    assert [variable for variable, _, _ in Settings.documentation()] == list(environ)


@pytest.mark.parametrize(
    ("variable", "value"),
    [
        ("CONSENTBRIDGE_DB_URL", "mysql://root:pw@db/x"),
        ("CONSENTBRIDGE_SECRET_KEY", "short-secret-value"),
        ("CONSENTBRIDGE_PUBLIC_URL", "cb.example.com"),
        ("CONSENTBRIDGE_LOG_LEVEL", "loud"),
        ("CONSENTBRIDGE_RETRY_MAX_AGE_S", "72h"),
        ("CONSENTBRIDGE_BATCH_SIZE", "0"),
        ("CONSENTBRIDGE_DATAVERSE_PACING", "sometimes"),
        ("CONSENTBRIDGE_WRITE_CHUNK", "-5"),
        ("CONSENTBRIDGE_BATCH_SIZE", "1.5"),
        ("CONSENTBRIDGE_LEASE_S", "nan"),
        ("CONSENTBRIDGE_LOG_RETENTION_DAYS", "-1"),
        ("CONSENTBRIDGE_MAX_BODY_BYTES", "lots"),
        ("CONSENTBRIDGE_NIGHTLY_RECONCILE", "25:00"),
        ("CONSENTBRIDGE_NIGHTLY_RECONCILE", "2h30"),
        ("CONSENTBRIDGE_METRICS_PORT", "70000"),
        ("CONSENTBRIDGE_ALERT_WEBHOOK_URL", "hooks.slack.com/services/T0/B0/secret"),
    ],
)
def test_a_bad_value_is_refused_naming_the_variable_not_the_value(
    variable: str, value: str
) -> None:
    with pytest.raises(SettingsError) as caught:
        Settings.from_env({variable: value})

    message = str(caught.value)
    assert message.startswith(f"{variable} must be ")
    assert message.endswith(".")
    assert value not in message


def test_a_bad_secret_key_says_how_to_generate_one() -> None:
    with pytest.raises(SettingsError, match=r"Fernet\.generate_key"):
        Settings.from_env({"CONSENTBRIDGE_SECRET_KEY": "x"})


def test_an_empty_variable_counts_as_unset() -> None:
    settings = Settings.from_env({"CONSENTBRIDGE_BATCH_SIZE": "", "CONSENTBRIDGE_ADMIN_TOKEN": ""})

    assert settings.batch_size == 500
    assert settings.admin_token is None


def test_overrides_win_over_the_environment_and_none_is_ignored() -> None:
    settings = Settings.from_env(
        {"CONSENTBRIDGE_DB_URL": "sqlite:///a.db", "CONSENTBRIDGE_BATCH_SIZE": "9"},
        db_url="sqlite:///b.db",
        batch_size=None,
        lease_s=2,
    )

    assert (settings.db_url, settings.batch_size, settings.lease_s) == ("sqlite:///b.db", 9, 2.0)


def test_a_bad_override_is_refused_naming_the_setting() -> None:
    with pytest.raises(SettingsError, match=r"^batch_size must be a positive whole number\.$"):
        Settings.from_env({}, batch_size=True)


def test_an_unknown_override_is_a_programming_error() -> None:
    with pytest.raises(TypeError, match="batch_sise"):
        Settings.from_env({}, batch_sise=5)


def test_the_process_environment_is_not_read_implicitly(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CONSENTBRIDGE_BATCH_SIZE", "7")

    assert Settings.from_env({}).batch_size == 500


def test_repr_hides_secrets_and_the_database_password() -> None:
    settings = Settings.from_env(
        {
            "CONSENTBRIDGE_DB_URL": "postgresql://app:db-pass-9@db:5432/cb",
            "CONSENTBRIDGE_SECRET_KEY": Fernet.generate_key().decode(),
            "CONSENTBRIDGE_ADMIN_TOKEN": "admin-token-123-Kq7Wm2Xp9Lz4Rt6Y",
        }
    )
    assert settings.secret_key is not None

    text = repr(settings)

    assert "app:***@db" in text
    for secret in (
        "db-pass-9",
        "admin-token-123-Kq7Wm2Xp9Lz4Rt6Y",
        settings.secret_key.get_secret_value(),
    ):
        assert secret not in text
    assert text == str(settings)


def test_settings_are_frozen() -> None:
    settings = Settings.from_env({})

    with pytest.raises(dataclasses.FrozenInstanceError):
        settings.batch_size = 1  # type: ignore[misc]
