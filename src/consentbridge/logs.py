"""Structured logs: one line per event that matters, as JSON or as readable text.

Every module logs through ``get_logger(name)``, which returns an ``EventLogger``: an event name
(dotted, lowercase: ``webhook.accepted``, ``batch.written``) plus keyword fields::

    log = get_logger("consentbridge.worker")
    log.info("batch.written", integration="acme", users=500, requests=1, ms=84)

``configure`` (called once by ``serve`` and ``worker``) picks the format: JSON lines when stdout
is not a terminal (``{"ts", "level", "event", "logger", "integration", …}``),
``HH:MM:SS level event key=value …`` on a terminal; ``CONSENTBRIDGE_LOG_FORMAT=json|text``
overrides the choice. Its handler sits on the root logger, so the warnings of libraries and
uvicorn's error logger come out in the same format (a traceback is a field of one JSON line).

``bind(integration=...)`` adds fields to every line logged inside it (the worker binds the
integration around a batch, so the Dataverse client's lines name it too).

``organization_user_id`` is usually an email address, so log fields that carry one go through
``user_ref``: a short SHA-256 digest unless ``CONSENTBRIDGE_LOG_USER_IDS`` is ``plain``.
Secrets never reach a log line: callers pass no secret fields, values are rendered with
``str``/JSON only (a ``SecretStr`` prints as ``**********``), and a field whose name says it
holds a secret (``secret``, ``password``, ``token``, ``authorization``, ``api_key``, ``cookie``)
is printed as ``[redacted]`` whatever its value.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import logging
import re
import sys
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from contextvars import ContextVar
from typing import Any, Final, Literal, TextIO

LogFormat = Literal["json", "text"]
UserIdMode = Literal["hashed", "plain"]

LOG_FORMATS: Final = ("auto", "json", "text")
USER_ID_MODES: Final = ("hashed", "plain")

# The attribute of a LogRecord that carries the event's fields.
_FIELDS: Final = "cb_fields"
_HANDLER_NAME: Final = "consentbridge"

_user_id_mode: UserIdMode = "hashed"
_bound: ContextVar[Mapping[str, Any] | None] = ContextVar("consentbridge_log_fields", default=None)

REDACTED: Final = "[redacted]"
MAX_TEXT: Final = 2000  # characters of one text field (a remote error message can be long)
_SECRET_NAME: Final = re.compile(r"secret|password|token|authorization|api_?key|cookie", re.I)
# Loggers of libraries that would otherwise print at INFO through the root handler.
_LIBRARY_LEVEL: Final = logging.WARNING


# Until `configure` runs (the short CLI commands never call it), our events go nowhere rather
# than to Python's last-resort handler, which would print bare event names on stderr.
logging.getLogger("consentbridge").addHandler(logging.NullHandler())


class EventLogger:
    """A named logger whose messages are events with fields (see the module docstring)."""

    __slots__ = ("_logger",)

    def __init__(self, logger: logging.Logger) -> None:
        self._logger = logger

    @property
    def name(self) -> str:
        return self._logger.name

    def enabled_for(self, level: int) -> bool:
        return self._logger.isEnabledFor(level)

    def log(self, level: int, event: str, /, *, exc_info: bool = False, **fields: Any) -> None:
        logger = self._logger
        if logger.isEnabledFor(level):
            bound = _bound.get()
            if bound:
                fields = {**bound, **fields}
            # The record is made here rather than by `Logger.log`, which would walk the stack
            # for a file and line no line prints (a third of a line's cost on the intake path).
            record = logger.makeRecord(
                logger.name,
                level,
                "",
                0,
                event,
                (),
                sys.exc_info() if exc_info else None,
                extra={_FIELDS: fields},
            )
            logger.handle(record)

    def debug(self, event: str, /, **fields: Any) -> None:
        self.log(logging.DEBUG, event, **fields)

    def info(self, event: str, /, **fields: Any) -> None:
        self.log(logging.INFO, event, **fields)

    def warning(self, event: str, /, *, exc_info: bool = False, **fields: Any) -> None:
        self.log(logging.WARNING, event, exc_info=exc_info, **fields)

    def error(self, event: str, /, *, exc_info: bool = False, **fields: Any) -> None:
        self.log(logging.ERROR, event, exc_info=exc_info, **fields)


def get_logger(name: str) -> EventLogger:
    """The event logger called ``name`` (``consentbridge.<area>``)."""
    return EventLogger(logging.getLogger(name))


@contextmanager
def bind(**fields: Any) -> Iterator[None]:
    """Add ``fields`` to every event logged in this context (task) until the block ends."""
    token = _bound.set({**(_bound.get() or {}), **fields})
    try:
        yield
    finally:
        _bound.reset(token)


def user_ref(organization_user_id: str | None) -> str | None:
    """How a log line names a user: ``sha256:<16 hex>`` of the id, or the id itself when the
    process was configured with ``user_ids="plain"``. The digest is unsalted so that lines of
    several processes (and a grep for a known address's digest) line up."""
    if organization_user_id is None:
        return None
    if _user_id_mode == "plain":
        return organization_user_id
    digest = hashlib.sha256(organization_user_id.encode("utf-8")).hexdigest()[:16]
    return f"sha256:{digest}"


def configure(
    *,
    level: str = "INFO",
    log_format: str = "auto",
    user_ids: str = "hashed",
    stream: TextIO | None = None,
) -> LogFormat:
    """Send logs to ``stream`` (stdout) in the chosen format; returns the format used.

    ``consentbridge.*`` logs at ``level``; other libraries (uvicorn's error logger, asyncio,
    httpx) only from WARNING, through the same handler and format. Safe to call again (the
    handler is replaced, not added twice)."""
    global _user_id_mode
    out = stream if stream is not None else sys.stdout
    chosen: LogFormat
    if log_format == "auto":
        chosen = "text" if _isatty(out) else "json"
    elif log_format in ("json", "text"):
        chosen = log_format  # type: ignore[assignment]
    else:
        raise ValueError(f"log format must be one of {', '.join(LOG_FORMATS)}")
    if user_ids not in USER_ID_MODES:
        raise ValueError(f"user id mode must be one of {', '.join(USER_ID_MODES)}")
    _user_id_mode = user_ids  # type: ignore[assignment]

    root = logging.getLogger()
    for handler in list(root.handlers):
        if handler.get_name() == _HANDLER_NAME:
            root.removeHandler(handler)
    handler = logging.StreamHandler(out)
    handler.set_name(_HANDLER_NAME)
    handler.setFormatter(JsonFormatter() if chosen == "json" else TextFormatter())
    root.addHandler(handler)
    root.setLevel(_LIBRARY_LEVEL)
    # No line prints thread or process names: a record need not look them up (~10 % of it).
    logging.logThreads = logging.logProcesses = logging.logMultiprocessing = False
    ours = logging.getLogger("consentbridge")
    ours.setLevel(level.upper())
    ours.propagate = True
    # uvicorn's own handler (installed by its default log config) would print the server's
    # errors a second time, as plain text with a multi-line traceback: ours writes them.
    server = logging.getLogger("uvicorn")
    for handler in list(server.handlers):
        server.removeHandler(handler)
    server.propagate = True
    return chosen


def _isatty(stream: TextIO) -> bool:
    try:
        return stream.isatty()
    except (AttributeError, ValueError):
        return False


def record_fields(record: logging.LogRecord) -> dict[str, Any]:
    """The fields of a record: an event's keyword fields, or nothing for a plain message."""
    fields = getattr(record, _FIELDS, None)
    return dict(fields) if isinstance(fields, Mapping) else {}


def _event_and_fields(record: logging.LogRecord) -> tuple[str, dict[str, Any]]:
    """An event's name and fields; a plain library record (``uvicorn.error``) is named after
    its logger, its text in ``message``."""
    fields = getattr(record, _FIELDS, None)
    if isinstance(fields, Mapping):
        return str(record.msg), dict(fields)
    return record.name, {"message": record.getMessage()}


_SECRET_KEYS: dict[str, bool] = {}  # field name -> whether it names a secret (a small set)


def _field_value(key: str, value: Any) -> Any:
    secret = _SECRET_KEYS.get(key)
    if secret is None:
        secret = _SECRET_KEYS[key] = bool(_SECRET_NAME.search(key))
    if secret and value is not None:
        return REDACTED
    return _plain(value)


_last_second: tuple[int, str] = (-1, "")


def _timestamp(record: logging.LogRecord) -> str:
    """``2026-12-06T06:21:14.123Z`` (the seconds part is formatted once a second)."""
    global _last_second
    second = int(record.created)
    if _last_second[0] != second:
        at = dt.datetime.fromtimestamp(second, tz=dt.UTC)
        _last_second = (second, at.strftime("%Y-%m-%dT%H:%M:%S"))
    millis = int((record.created - second) * 1000)
    return f"{_last_second[1]}.{millis:03d}Z"


def _plain(value: Any) -> Any:
    if type(value) is int:
        return value
    if isinstance(value, str):
        return value if len(value) <= MAX_TEXT else value[: MAX_TEXT - 1] + "…"
    if value is None or isinstance(value, bool | int | float):
        return value
    if isinstance(value, dt.datetime):
        return value.isoformat()
    if isinstance(value, Mapping):
        return {str(k): _field_value(str(k), v) for k, v in value.items()}
    if isinstance(value, list | tuple | set | frozenset):
        return [_plain(v) for v in value]
    return str(value)


class JsonFormatter(logging.Formatter):
    """One JSON object per line: ``ts``, ``level``, ``event``, ``logger``, then the fields."""

    def format(self, record: logging.LogRecord) -> str:
        event, fields = _event_and_fields(record)
        line: dict[str, Any] = {
            "ts": _timestamp(record),
            "level": record.levelname.lower(),
            "event": event,
            "logger": record.name,
        }
        for key, value in fields.items():
            if key not in line:
                line[key] = _field_value(key, value)
        if record.exc_info and record.exc_info[1] is not None:
            exc = record.exc_info[1]
            line["error"] = f"{type(exc).__name__}: {exc}"
            line["traceback"] = self.formatException(record.exc_info)
        return json.dumps(line, ensure_ascii=False, separators=(",", ":"))


class TextFormatter(logging.Formatter):
    """``06:21:14 info  batch.written integration=acme users=500 …`` for a terminal."""

    def format(self, record: logging.LogRecord) -> str:
        at = dt.datetime.fromtimestamp(record.created).strftime("%H:%M:%S")
        event, fields = _event_and_fields(record)
        parts = [at, f"{record.levelname.lower():<7}", event]
        for key, value in fields.items():
            shown = _field_value(key, value)
            text = shown if isinstance(shown, str) else json.dumps(shown, ensure_ascii=False)
            if isinstance(shown, str) and (not text or " " in text or '"' in text):
                text = json.dumps(text, ensure_ascii=False)
            parts.append(f"{key}={text}")
        out = " ".join(parts)
        if record.exc_info and record.exc_info[1] is not None:
            out += "\n" + self.formatException(record.exc_info)
        return out
