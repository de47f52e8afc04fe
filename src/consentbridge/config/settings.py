"""Process settings: every tunable of a ConsentBridge process, its default and its variable.

``Settings`` is the one list. Each field is read from ``CONSENTBRIDGE_<FIELD>`` by
``Settings.from_env``, then overridden by keyword arguments (CLI options); nothing is read at
import time. An empty variable counts as unset. A bad value raises ``SettingsError`` naming the
variable (or the overridden setting) without echoing the value, which may be a secret.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any, Final
from urllib.parse import urlsplit

from cryptography.fernet import Fernet
from pydantic import SecretStr

from consentbridge.config.errors import SettingsError

ENV_PREFIX: Final = "CONSENTBRIDGE_"
SECRET_KEY_ENV: Final = "CONSENTBRIDGE_SECRET_KEY"
GENERATE_KEY_HINT: Final = (
    'generate one with: python -c "from cryptography.fernet import Fernet; '
    'print(Fernet.generate_key().decode())"'
)
LOG_LEVELS: Final = ("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL")
LOG_FORMATS: Final = ("auto", "json", "text")
LOG_USER_ID_MODES: Final = ("hashed", "plain")

DEFAULT_DB_URL: Final = "sqlite:///./var/consentbridge.db"
DEFAULT_SECRET_KEY_FILE: Final = Path("./var/secret.key")
DEFAULT_LOG_LEVEL: Final = "INFO"
DEFAULT_RETRY_MAX_AGE_S: Final = 72 * 3600.0
DEFAULT_BATCH_SIZE: Final = 500
DEFAULT_LEASE_S: Final = 60.0
DEFAULT_WORKER_LANES: Final = 4
DEFAULT_LOG_RETENTION_DAYS: Final = 30
DEFAULT_MAX_BODY_BYTES: Final = 1024 * 1024
MIN_ADMIN_TOKEN_CHARS: Final = 32
DEFAULT_AUTH_FAILURES_PER_MINUTE: Final = 10
DEFAULT_HTTP_KEEP_ALIVE_S: Final = 30.0
DEFAULT_HTTP_HEADER_TIMEOUT_S: Final = 30.0
DEFAULT_HTTP_BODY_TIMEOUT_S: Final = 60.0
DEFAULT_HTTP_MAX_CONNECTIONS: Final = 1000
DEFAULT_ACTIVITY_RETENTION_DAYS: Final = 35
DEFAULT_METRICS_HOST: Final = "127.0.0.1"
DEFAULT_ALERT_BACKLOG_AGE_S: Final = 15 * 60.0
DEFAULT_DATAVERSE_WINDOW_S: Final = 300.0  # MS Learn api-limits: a sliding 5 minutes
DEFAULT_WRITE_CHUNK: Final = 1000  # rows per bulk write; docs/performance.md "Batch size"
SWITCH_ON: Final = ("1", "true", "yes", "on")
SWITCH_OFF: Final = ("0", "false", "no", "off")

Converter = Callable[[object], Any]


def _db_url(value: object) -> str:
    text = _text(value)
    if not re.match(r"(sqlite|postgresql|postgres)(\+\w+)?://", text):
        raise ValueError(
            "must be a database URL such as sqlite:///./var/consentbridge.db or "
            "postgresql://user@host:5432/db"
        )
    return text


def _secret_key(value: object) -> SecretStr:
    text = value.get_secret_value() if isinstance(value, SecretStr) else _text(value)
    try:
        Fernet(text.strip())
    except ValueError:
        raise ValueError(
            f"must be a Fernet key (urlsafe base64 of 32 bytes); {GENERATE_KEY_HINT}"
        ) from None
    return SecretStr(text.strip())


def _secret(value: object) -> SecretStr:
    return value if isinstance(value, SecretStr) else SecretStr(_text(value))


def _admin_token(value: object) -> SecretStr:
    token = _secret(value)
    if len(token.get_secret_value()) < MIN_ADMIN_TOKEN_CHARS:
        raise ValueError(
            f"must be at least {MIN_ADMIN_TOKEN_CHARS} characters long; generate one with: "
            "python -c 'import secrets; print(secrets.token_urlsafe(32))'"
        )
    return token


def _path(value: object) -> Path:
    if isinstance(value, Path):
        return value
    return Path(_text(value)).expanduser()


def _public_url(value: object) -> str:
    text = _text(value).rstrip("/")
    parts = urlsplit(text)
    if parts.scheme not in ("http", "https") or not parts.netloc or parts.query or parts.fragment:
        raise ValueError(
            "must be an http(s) base URL without query or fragment, such as "
            "https://consentbridge.example.com"
        )
    return text


def _log_level(value: object) -> str:
    level = _text(value).strip().upper()
    if level not in LOG_LEVELS:
        raise ValueError(f"must be one of {', '.join(LOG_LEVELS)}")
    return level


def _log_format(value: object) -> str:
    text = _text(value).strip().lower()
    if text not in LOG_FORMATS:
        raise ValueError(f"must be one of {', '.join(LOG_FORMATS)}")
    return text


def _log_user_ids(value: object) -> str:
    text = _text(value).strip().lower()
    if text not in LOG_USER_ID_MODES:
        raise ValueError(f"must be one of {', '.join(LOG_USER_ID_MODES)}")
    return text


def _positive_int(value: object) -> int:
    number: object = value
    if isinstance(value, str):
        try:
            number = int(value.strip())
        except ValueError:
            number = None
    if isinstance(number, bool) or not isinstance(number, int) or number <= 0:
        raise ValueError("must be a positive whole number")
    return number


def _positive_seconds(value: object) -> float:
    number: object = value
    if isinstance(value, str):
        try:
            number = float(value.strip())
        except ValueError:
            number = None
    if (
        isinstance(number, bool)
        or not isinstance(number, int | float)
        or not math.isfinite(number)
        or number <= 0
    ):
        raise ValueError("must be a positive number of seconds, such as 60 or 0.5")
    return float(number)


def _port(value: object) -> int:
    number = value.strip() if isinstance(value, str) else value
    try:
        port = int(number) if isinstance(number, str) else number
    except ValueError:
        port = None
    if isinstance(port, bool) or not isinstance(port, int) or not 0 <= port <= 65535:
        raise ValueError("must be a TCP port number from 0 to 65535 (0: any free port)")
    return port


def _host(value: object) -> str:
    text = _text(value).strip()
    if not text:
        raise ValueError("must be a host name or IP address, such as 127.0.0.1 or 0.0.0.0")
    return text


def _webhook_url(value: object) -> SecretStr:
    # The URL itself is the credential of Slack and Teams webhooks: never echoed.
    text = value.get_secret_value() if isinstance(value, SecretStr) else _text(value)
    parts = urlsplit(text.strip())
    if parts.scheme not in ("http", "https") or not parts.netloc:
        raise ValueError("must be an http(s) URL, such as https://hooks.slack.com/services/…")
    return SecretStr(text.strip())


def _time_of_day(value: object) -> str:
    text = _text(value).strip()
    match = re.fullmatch(r"(\d{1,2}):(\d{2})", text)
    if match is None or int(match[1]) > 23 or int(match[2]) > 59:
        raise ValueError("must be a time of day in UTC as HH:MM, such as 02:30")
    return f"{int(match[1]):02d}:{match[2]}"


def _switch(value: object) -> bool:
    if isinstance(value, bool):
        return value
    text = value.strip().lower() if isinstance(value, str) else None
    if text in SWITCH_ON:
        return True
    if text in SWITCH_OFF:
        return False
    raise ValueError("must be on or off (true/false, 1/0, yes/no)")


def _text(value: object) -> str:
    if not isinstance(value, str):
        raise ValueError("must be text")
    return value


def _meta(convert: Converter, doc: str) -> dict[str, Any]:
    """A setting's metadata: how to read it from text or a value, and its one line of doc."""
    return {"convert": convert, "doc": doc}


@dataclass(frozen=True, slots=True, repr=False)
class Settings:
    """Every process setting; build it with ``Settings.from_env(os.environ, **cli_options)``."""

    db_url: str = field(
        default=DEFAULT_DB_URL,
        metadata=_meta(
            _db_url, "the store: sqlite:///… (embedded, one host) or postgresql://… (shared)"
        ),
    )
    secret_key: SecretStr | None = field(
        default=None,
        metadata=_meta(_secret_key, "Fernet key encrypting stored secrets; else the key file"),
    )
    secret_key_file: Path = field(
        default=DEFAULT_SECRET_KEY_FILE,
        metadata=_meta(_path, "key file used when secret_key is unset; made 0600 on first use"),
    )
    admin_token: SecretStr | None = field(
        default=None,
        metadata=_meta(
            _admin_token, "bearer token for the admin API and the console (32+ characters)"
        ),
    )
    public_url: str | None = field(
        default=None,
        metadata=_meta(_public_url, "base URL Didomi and Dataverse call back; else serve's own"),
    )
    log_level: str = field(
        default=DEFAULT_LOG_LEVEL,
        metadata=_meta(_log_level, f"log level, one of {', '.join(LOG_LEVELS)}"),
    )
    log_format: str = field(
        default="auto",
        metadata=_meta(_log_format, "log lines as json, text, or auto (json unless a terminal)"),
    )
    log_user_ids: str = field(
        default="hashed",
        metadata=_meta(_log_user_ids, "organization_user_id in logs: hashed (sha256) or plain"),
    )
    retry_max_age_s: float = field(
        default=DEFAULT_RETRY_MAX_AGE_S,
        metadata=_meta(
            _positive_seconds, "how long a failing change is retried, then dead-lettered"
        ),
    )
    batch_size: int = field(
        default=DEFAULT_BATCH_SIZE,
        metadata=_meta(_positive_int, "users a worker claims and writes per batch"),
    )
    lease_s: float = field(
        default=DEFAULT_LEASE_S,
        metadata=_meta(_positive_seconds, "how long a claimed batch stays with its worker"),
    )
    worker_lanes: int = field(
        default=DEFAULT_WORKER_LANES,
        metadata=_meta(
            _positive_int, "batches a worker syncs at once (≥ its Dataverse concurrency to use it)"
        ),
    )
    log_retention_days: int = field(
        default=DEFAULT_LOG_RETENTION_DAYS,
        metadata=_meta(
            _positive_int, "sync log lines and delivery keys older than this are deleted (hourly)"
        ),
    )
    activity_retention_days: int = field(
        default=DEFAULT_ACTIVITY_RETENTION_DAYS,
        metadata=_meta(
            _positive_int, "activity minutes (the console's charts) older than this are deleted"
        ),
    )
    max_body_bytes: int = field(
        default=DEFAULT_MAX_BODY_BYTES,
        metadata=_meta(_positive_int, "largest accepted request body; larger ones get 413"),
    )
    auth_failures_per_minute: int = field(
        default=DEFAULT_AUTH_FAILURES_PER_MINUTE,
        metadata=_meta(
            _positive_int, "failed sign-ins / admin tokens per client address and minute, then 429"
        ),
    )
    metrics_token: SecretStr | None = field(
        default=None,
        metadata=_meta(_secret, "bearer token a scrape of /metrics needs to see integration ids"),
    )
    http_keep_alive_s: float = field(
        default=DEFAULT_HTTP_KEEP_ALIVE_S,
        metadata=_meta(_positive_seconds, "an idle keep-alive connection is closed after this"),
    )
    http_header_timeout_s: float = field(
        default=DEFAULT_HTTP_HEADER_TIMEOUT_S,
        metadata=_meta(_positive_seconds, "a request's headers must arrive whole within this"),
    )
    http_body_timeout_s: float = field(
        default=DEFAULT_HTTP_BODY_TIMEOUT_S,
        metadata=_meta(_positive_seconds, "a request's body must arrive whole within this"),
    )
    http_max_connections: int = field(
        default=DEFAULT_HTTP_MAX_CONNECTIONS,
        metadata=_meta(_positive_int, "open HTTP connections at most; beyond it requests get 503"),
    )
    nightly_reconcile: str | None = field(
        default=None,
        metadata=_meta(
            _time_of_day, "HH:MM UTC: each day after it, a reconcile dry-run job per integration"
        ),
    )

    metrics_host: str = field(
        default=DEFAULT_METRICS_HOST,
        metadata=_meta(_host, "address `consentbridge worker` serves /metrics on"),
    )
    metrics_port: int | None = field(
        default=None,
        metadata=_meta(_port, "port of `consentbridge worker`'s /metrics; unset: none"),
    )
    alert_webhook_url: SecretStr | None = field(
        default=None,
        metadata=_meta(_webhook_url, "Slack or Teams incoming-webhook URL for alerts; unset: none"),
    )
    alert_backlog_age_s: float = field(
        default=DEFAULT_ALERT_BACKLOG_AGE_S,
        metadata=_meta(_positive_seconds, "alert when the oldest pending change is older"),
    )
    write_chunk: int = field(
        default=DEFAULT_WRITE_CHUNK,
        metadata=_meta(_positive_int, "rows per Dataverse bulk write (UpdateMultiple …)"),
    )
    dataverse_pacing: bool = field(
        default=True,
        metadata=_meta(
            _switch, "pace Dataverse requests on the execution time left (on) or on 429s (off)"
        ),
    )
    dataverse_window_s: float = field(
        default=DEFAULT_DATAVERSE_WINDOW_S,
        metadata=_meta(
            _positive_seconds, "Dataverse's service-protection window, which pacing counts on"
        ),
    )

    @classmethod
    def from_env(cls, environ: Mapping[str, str], **overrides: object) -> Settings:
        """Read ``CONSENTBRIDGE_*`` from ``environ``, then apply ``overrides``.

        An override of ``None`` is ignored, so optional CLI options can be passed straight
        through; an unknown override name is a programming error (``TypeError``).
        """
        specs = {spec.name: spec.metadata for spec in fields(cls)}
        unknown = set(overrides) - set(specs)
        if unknown:
            raise TypeError(f"unknown settings: {', '.join(sorted(unknown))}")
        values: dict[str, Any] = {}
        for name, spec in specs.items():
            variable = env_name(name)
            if environ.get(variable, ""):
                values[name] = _convert(spec["convert"], environ[variable], variable)
        for name, value in overrides.items():
            if value is not None:
                values[name] = _convert(specs[name]["convert"], value, name)
        return cls(**values)

    @classmethod
    def documentation(cls) -> list[tuple[str, str, str]]:
        """``(variable, default, doc)`` for every setting, for ``--help`` and the docs."""
        return [
            (env_name(f.name), "unset" if f.default is None else str(f.default), f.metadata["doc"])
            for f in fields(cls)
        ]

    def __repr__(self) -> str:
        shown = {f.name: getattr(self, f.name) for f in fields(self)}
        shown["db_url"] = mask_url_password(self.db_url)
        return f"Settings({', '.join(f'{k}={v!r}' for k, v in shown.items())})"


def env_name(setting: str) -> str:
    """The environment variable of a setting: ``db_url`` → ``CONSENTBRIDGE_DB_URL``."""
    return f"{ENV_PREFIX}{setting.upper()}"


def mask_url_password(url: str) -> str:
    """``postgresql://u:pw@h/db`` → ``postgresql://u:***@h/db``, for logs and reprs."""
    return re.sub(r"(://[^:/@]*:)[^@/]*@", r"\1***@", url)


def _convert(convert: Converter, value: object, source: str) -> Any:
    try:
        return convert(value)
    except ValueError as exc:
        raise SettingsError(f"{source} {exc}.") from None
