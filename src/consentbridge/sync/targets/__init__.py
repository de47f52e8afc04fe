"""Targets of forward sync, one module each, behind the ``Target`` interface (``base.py``):
``contact`` (columns of the Dataverse contact) and ``contactpointconsent`` (Customer Insights -
Journeys consent rows)."""

from __future__ import annotations

from typing import Final

from consentbridge.sync.targets.base import ForwardRuntime, Target
from consentbridge.sync.targets.consent import ConsentTarget
from consentbridge.sync.targets.contact import ContactTarget

TARGETS: Final[dict[str, Target]] = {
    target.name: target for target in (ContactTarget(), ConsentTarget())
}


def target_named(name: str) -> Target:
    """The target of a slot; ``KeyError`` for a name no module serves."""
    return TARGETS[name]


__all__ = ["TARGETS", "ForwardRuntime", "Target", "target_named"]
