"""The texts of alerts: one line each, naming the integration, what is wrong and what to do.

A message carries integration ids, counts, ages and our own error sentences only — never a
secret or a user id. The JSON body is ``{"text": …}``, which Slack incoming webhooks and Teams
Office 365 connector webhooks both accept (docs/operations.md, "Alerts").
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Final, Literal

Condition = Literal["dead_letters", "backlog_age", "auth_failed"]
CONDITIONS: Final[tuple[Condition, ...]] = ("dead_letters", "backlog_age", "auth_failed")
PREFIX: Final = "ConsentBridge"
MAX_DETAIL_CHARS: Final = 300


@dataclass(frozen=True, slots=True)
class AlertMessage:
    """One message to send; ``kind`` is ``raised``, ``resolved`` or ``test``."""

    kind: Literal["raised", "resolved", "test"]
    text: str
    integration_id: str | None = None
    condition: str | None = None

    def body(self) -> dict[str, Any]:
        return {"text": self.text}


def bounded(text: str) -> str:
    one_line = " ".join(text.split())
    if len(one_line) <= MAX_DETAIL_CHARS:
        return one_line
    return one_line[: MAX_DETAIL_CHARS - 1] + "…"


def dead_letters_detail(count: int) -> str:
    return (
        f"{count} change{'s' if count != 1 else ''} failed permanently (dead letters); see "
        "`consentbridge deadletters list` and replay them once the cause is fixed"
    )


def backlog_age_detail(age_s: float, threshold_s: float, backlog: int) -> str:
    return (
        f"the oldest of {backlog} pending change{'s' if backlog != 1 else ''} has waited "
        f"{_duration(age_s)} (threshold {_duration(threshold_s)}); check that workers run "
        "and `consentbridge status`"
    )


def auth_failed_detail(reason: str) -> str:
    return f"authentication fails: {reason}"


def raised(integration_id: str, condition: str, detail: str) -> AlertMessage:
    return AlertMessage(
        "raised",
        f"{PREFIX} alert — integration {integration_id}: {bounded(detail)}",
        integration_id,
        condition,
    )


def resolved(integration_id: str, condition: str) -> AlertMessage:
    what = {
        "dead_letters": "no dead letters are left",
        "backlog_age": "the backlog is flowing again",
        "auth_failed": "authentication works again",
    }.get(condition, f"{condition} cleared")
    return AlertMessage(
        "resolved",
        f"{PREFIX} resolved — integration {integration_id}: {what}",
        integration_id,
        condition,
    )


def test_message() -> AlertMessage:
    return AlertMessage("test", f"{PREFIX} test alert: this channel receives ConsentBridge alerts.")


def _duration(seconds: float) -> str:
    if seconds < 120:
        return f"{seconds:.0f} s"
    if seconds < 7200:
        return f"{seconds / 60:.0f} min"
    return f"{seconds / 3600:.1f} h"
