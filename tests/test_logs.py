"""The structured logger (consentbridge/logs.py): JSON lines and text, hashed user ids, bound
fields, secrets never printed, and library loggers (uvicorn) through the same handler."""

from __future__ import annotations

import hashlib
import io
import json
import logging
from collections.abc import Iterator
from typing import Any

import pytest
from pydantic import SecretStr

from consentbridge import logs
from consentbridge.logs import configure, get_logger, user_ref

SECRET = "s3cr3t-value-never-printed"


class _Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


@pytest.fixture(autouse=True)
def _restore_logging() -> Iterator[None]:
    """configure() changes process-wide logging; put it back for the other tests."""
    root = logging.getLogger()
    ours = logging.getLogger("consentbridge")
    server = logging.getLogger("uvicorn")
    saved = (
        list(root.handlers),
        root.level,
        ours.level,
        ours.propagate,
        list(server.handlers),
        server.propagate,
    )
    mode = logs._user_id_mode
    yield
    root.handlers[:] = saved[0]
    root.setLevel(saved[1])
    ours.setLevel(saved[2])
    ours.propagate = saved[3]
    server.handlers[:] = saved[4]
    server.propagate = saved[5]
    logs._user_id_mode = mode


def _lines(stream: io.StringIO) -> list[dict[str, Any]]:
    return [json.loads(line) for line in stream.getvalue().splitlines() if line]


def test_json_line_has_ts_level_event_logger_and_the_fields() -> None:
    out = io.StringIO()
    assert configure(stream=out) == "json"  # a StringIO is not a terminal
    get_logger("consentbridge.worker").info(
        "batch.written", integration="acme", direction="to_dataverse", users=3, ms=12
    )
    (line,) = _lines(out)
    assert line["event"] == "batch.written"
    assert line["level"] == "info"
    assert line["logger"] == "consentbridge.worker"
    assert line["integration"] == "acme"
    assert (line["users"], line["ms"], line["direction"]) == (3, 12, "to_dataverse")
    assert line["ts"].endswith("Z") and "T" in line["ts"]
    assert list(line)[:4] == ["ts", "level", "event", "logger"]


def test_auto_format_is_text_on_a_terminal() -> None:
    out = _Terminal()
    assert configure(stream=out) == "text"
    get_logger("consentbridge.web").warning(
        "webhook.refused", integration="acme", status=422, reason="bad type here"
    )
    text = out.getvalue()
    assert not text.lstrip().startswith("{")
    assert "warning" in text and "webhook.refused" in text
    assert "integration=acme" in text and "status=422" in text
    assert 'reason="bad type here"' in text  # quoted: it has spaces


def test_the_format_setting_overrides_the_terminal_check() -> None:
    terminal = _Terminal()
    assert configure(log_format="json", stream=terminal) == "json"
    get_logger("consentbridge.x").info("x.happened")
    assert json.loads(terminal.getvalue())["event"] == "x.happened"
    piped = io.StringIO()
    assert configure(log_format="text", stream=piped) == "text"
    get_logger("consentbridge.x").info("x.happened")
    assert "x.happened" in piped.getvalue() and not piped.getvalue().startswith("{")


def test_configure_refuses_unknown_values() -> None:
    with pytest.raises(ValueError, match="auto, json, text"):
        configure(log_format="yaml", stream=io.StringIO())
    with pytest.raises(ValueError, match="hashed, plain"):
        configure(user_ids="clear", stream=io.StringIO())


def test_level_filters_our_events() -> None:
    out = io.StringIO()
    configure(level="WARNING", stream=out)
    log = get_logger("consentbridge.intake")
    log.info("webhook.accepted", integration="acme")
    log.debug("webhook.accepted", integration="acme")
    log.warning("sync.dead_letter", integration="acme")
    assert [line["event"] for line in _lines(out)] == ["sync.dead_letter"]
    assert not log.enabled_for(logging.INFO)


def test_configure_twice_writes_each_line_once() -> None:
    first, second = io.StringIO(), io.StringIO()
    configure(stream=first)
    configure(stream=second)
    get_logger("consentbridge.x").info("once")
    assert first.getvalue() == ""
    assert len(_lines(second)) == 1


def test_user_ref_hashes_by_default_and_shows_the_id_when_plain() -> None:
    configure(stream=io.StringIO())
    email = "alice@example.com"
    digest = hashlib.sha256(email.encode()).hexdigest()[:16]
    assert user_ref(email) == f"sha256:{digest}"
    assert user_ref(None) is None
    configure(user_ids="plain", stream=io.StringIO())
    assert user_ref(email) == email
    configure(user_ids="hashed", stream=io.StringIO())
    assert email not in str(user_ref(email))


def test_a_secret_value_is_never_printed() -> None:
    out = io.StringIO()
    configure(stream=out, level="DEBUG")
    log = get_logger("consentbridge.x")
    # A SecretStr prints masked; a field whose name says secret is redacted whatever it holds.
    log.info("a", client_secret=SecretStr(SECRET), password=SECRET, api_key=SECRET)
    log.info("b", token=SECRET, authorization=f"Bearer {SECRET}", webhook_secret=SECRET)
    log.info("c", config={"client_secret": SecretStr(SECRET), "didomi": {"api_secret": SECRET}})
    configure(stream=out, log_format="text")
    log.info("d", client_secret=SECRET, nested=[SecretStr(SECRET)])
    assert SECRET not in out.getvalue()
    first = _lines(io.StringIO(out.getvalue().split("\n", 3)[0]))[0]
    assert first["password"] == logs.REDACTED
    # Fields that merely end in a secret-free word are shown.
    out2 = io.StringIO()
    configure(stream=out2)
    log.info("e", delivery_key="k1", reason="the token expired")
    line = _lines(out2)[0]
    assert (line["delivery_key"], line["reason"]) == ("k1", "the token expired")


def test_bound_fields_reach_every_line_inside_the_block() -> None:
    out = io.StringIO()
    configure(stream=out)
    log = get_logger("consentbridge.dataverse")
    with logs.bind(integration="acme", direction="to_dataverse"):
        log.warning("dataverse.throttled", retry_after_s=2.0)
        log.info("x", integration="explicit-wins")
    log.info("after")
    lines = _lines(out)
    assert lines[0]["integration"] == "acme" and lines[0]["direction"] == "to_dataverse"
    assert lines[1]["integration"] == "explicit-wins"
    assert "integration" not in lines[2]


def test_an_exception_is_one_json_line_with_its_traceback_as_a_field() -> None:
    out = io.StringIO()
    configure(stream=out)
    try:
        raise RuntimeError("boom")
    except RuntimeError:
        get_logger("consentbridge.worker").error("sync.lane_failed", exc_info=True)
    (line,) = _lines(out)  # one line, however long the traceback
    assert line["error"] == "RuntimeError: boom"
    assert "Traceback" in line["traceback"]


def test_uvicorn_errors_and_library_warnings_come_out_in_our_format() -> None:
    # uvicorn's default log config gives its logger a handler of its own that prints plain
    # text with a multi-line traceback; configure() takes it away so ours writes the line.
    foreign = io.StringIO()
    server = logging.getLogger("uvicorn")
    server.addHandler(logging.StreamHandler(foreign))
    server.propagate = False
    out = io.StringIO()
    configure(stream=out)
    try:
        raise ValueError("inside the app")
    except ValueError:
        logging.getLogger("uvicorn.error").exception("Exception in ASGI application")
    logging.getLogger("httpx").info("HTTP Request: GET https://example.test 200")
    logging.getLogger("asyncio").warning("slow callback %s", "x")
    assert foreign.getvalue() == ""
    lines = _lines(out)
    assert [(line["event"], line["level"]) for line in lines] == [
        ("uvicorn.error", "error"),
        ("asyncio", "warning"),
    ]
    assert lines[0]["message"] == "Exception in ASGI application"
    assert "ValueError: inside the app" in lines[0]["traceback"]
    assert lines[1]["message"] == "slow callback x"


def test_long_text_fields_are_bounded() -> None:
    out = io.StringIO()
    configure(stream=out)
    get_logger("consentbridge.x").info("x", reason="y" * 10_000)
    assert len(_lines(out)[0]["reason"]) == logs.MAX_TEXT
