"""Journeys consent property rows the tests map: a purpose row and a topic row of the sandbox's
seeded purposes and topics (sandbox/journeys_control.py)."""

from __future__ import annotations

from typing import Any, Final

NEWSLETTER: Final[dict[str, Any]] = {
    "target": "contactpointconsent",
    "id": "Newsletter",
    "value": "consents_purposes_newsletter_enabled",
}
PRODUCT_UPDATES: Final[dict[str, Any]] = {
    "target": "contactpointconsent",
    "id": "Commercial communications",
    "topic": "Product updates",
    "value": "consents_purposes_marketing_values_topics_updates",
}
