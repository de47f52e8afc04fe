"""Alerts as operations: send a test alert (admin API ``POST /api/v1/alerts/test``, CLI
``consentbridge alerts test``, the console's button), and the sender and monitor a process
runs when ``CONSENTBRIDGE_ALERT_WEBHOOK_URL`` is set."""

from __future__ import annotations

from typing import Any, Final

from consentbridge.alerts import messages
from consentbridge.alerts.monitor import AlertMonitor, AuthStates
from consentbridge.alerts.sender import AlertSender
from consentbridge.config.settings import Settings, env_name
from consentbridge.operations.errors import Conflict, Unavailable
from consentbridge.store import Store

ALERT_URL_ENV: Final = env_name("alert_webhook_url")
TEST_ATTEMPTS: Final = 3
TEST_FIRST_DELAY_S: Final = 0.5


def sender_from(settings: Settings, **options: Any) -> AlertSender | None:
    """The alert sender of the configured webhook; None when none is configured."""
    if settings.alert_webhook_url is None:
        return None
    return AlertSender(settings.alert_webhook_url.get_secret_value(), **options)


def monitor_from(
    settings: Settings, store: Store, auth_states: AuthStates | None = None
) -> AlertMonitor | None:
    """The alert checks of a worker process; None when no alert webhook is configured."""
    sender = sender_from(settings)
    if sender is None:
        return None
    return AlertMonitor(
        store, sender, backlog_age_s=settings.alert_backlog_age_s, auth_states=auth_states
    )


async def send_test_alert(settings: Settings) -> dict[str, Any]:
    """Send the test message now (a few quick retries); ``{"sent": true, "status": n}``.

    ``Conflict`` when no webhook is configured, ``Unavailable`` when it does not accept it."""
    sender = sender_from(settings, attempts=TEST_ATTEMPTS, first_delay_s=TEST_FIRST_DELAY_S)
    if sender is None:
        raise Conflict(
            f"No alert webhook is configured; set {ALERT_URL_ENV} in this process's environment."
        )
    try:
        status = await sender.deliver(messages.test_message())
    finally:
        await sender.aclose()
    if status is None or not 200 <= status < 300:
        answer = "no answer" if status is None else f"HTTP {status}"
        raise Unavailable(
            f"The alert webhook at {sender.host} did not accept the test alert ({answer}); "
            f"check {ALERT_URL_ENV}."
        )
    return {"sent": True, "status": status}
