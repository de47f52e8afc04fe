"""Tunables of the Didomi emulator, set through `DidomiEmulator.configure(**options)`.

- `webhook_retry_delays_s` (default `[10, 30, 60, 90, 120]`): the waits before each retry of a
  failed delivery, i.e. 1 attempt + 5 retries over 310 s ("at least five times over five
  minutes", as Didomi documents); after the last retry fails the delivery is parked.
- `webhook_timeout_s` (`10`): timeout of one delivery request or token fetch.
- `webhook_concurrency` (`16`): deliveries in flight at once, across all receivers.
- `webhook_verify` (`True`): TLS verification for https receivers: a bool or a CA bundle path.
- `session_lifetime_s` (`3600`): lifetime of the tokens `POST /v1/sessions` issues.
"""

from __future__ import annotations

from dataclasses import dataclass, field, fields
from typing import Any

DEFAULT_RETRY_DELAYS_S = (10.0, 30.0, 60.0, 90.0, 120.0)


@dataclass
class DidomiOptions:
    webhook_retry_delays_s: list[float] = field(
        default_factory=lambda: list(DEFAULT_RETRY_DELAYS_S)
    )
    webhook_timeout_s: float = 10.0
    webhook_concurrency: int = 16
    webhook_verify: bool | str = True
    session_lifetime_s: int = 3600

    def update(self, **options: Any) -> None:
        """Apply options after checking them all; unknown names or bad values raise ValueError."""
        known = {f.name for f in fields(self)}
        for name, value in options.items():
            if name not in known:
                raise ValueError(f"Unknown option '{name}'; known: {', '.join(sorted(known))}.")
            _check(name, value)
        for name, value in options.items():
            if name == "webhook_retry_delays_s":
                value = [float(v) for v in value]
            setattr(self, name, value)


def _is_number(value: object) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool) and value >= 0


def _check(name: str, value: object) -> None:
    if name == "webhook_retry_delays_s":
        if not isinstance(value, list | tuple) or not all(_is_number(v) for v in value):
            raise ValueError("webhook_retry_delays_s must be a list of non-negative seconds.")
    elif name == "webhook_verify":
        if not isinstance(value, bool | str):
            raise ValueError("webhook_verify must be a bool or a CA bundle path.")
    elif name in ("webhook_concurrency", "session_lifetime_s"):
        if not isinstance(value, int) or isinstance(value, bool) or value < 1:
            raise ValueError(f"{name} must be a positive integer.")
    elif not _is_number(value) or value == 0:
        raise ValueError(f"{name} must be a positive number.")
