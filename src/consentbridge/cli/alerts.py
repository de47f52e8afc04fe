"""`consentbridge alerts test`: send a test message to the alert webhook."""

from __future__ import annotations

import asyncio
import os

import typer

from consentbridge.cli import CommandError, app
from consentbridge.config.settings import Settings
from consentbridge.operations import alerts
from consentbridge.operations.errors import OperationError

alerts_app = typer.Typer(
    help="Alerts to a Slack or Teams webhook (CONSENTBRIDGE_ALERT_WEBHOOK_URL).",
    no_args_is_help=True,
)
app.add_typer(alerts_app, name="alerts")


@alerts_app.command("test")
def test() -> None:
    """Send a test alert now, to check the webhook URL and the channel."""
    settings = Settings.from_env(os.environ)
    try:
        result = asyncio.run(alerts.send_test_alert(settings))
    except OperationError as exc:
        raise CommandError(exc.message) from exc
    typer.echo(f"test alert sent (HTTP {result['status']})")
