"""Integration documents typed into the console: parsing JSON or YAML text, and the example
shown when creating one. Errors name a line and column but never quote the text, which holds
secrets."""

from __future__ import annotations

import json
from typing import Final

import yaml

from consentbridge.operations.errors import InvalidInput, Issue

EXAMPLE_DOCUMENT: Final = """{
  "id": "acme-d365",
  "organization_id": "acme",
  "upsert_mode": false,
  "config": {
    "client_id": "00000000-0000-0000-0000-000000000000",
    "client_secret": "",
    "tenant_id": "contoso.onmicrosoft.com",
    "instance": "https://acme.crm4.dynamics.com",
    "properties": [
      {"id": "donotbulkemail", "value": "consents_purposes_newsletter_enabled", "transform": "not"}
    ]
  },
  "webhook_auth": {"client_id": "didomi-webhooks", "client_secret": ""}
}
"""


def parse_document_text(text: str) -> object:
    """The document in ``text``: JSON when it starts with ``{``, else YAML."""
    if not text.strip():
        raise _invalid("The document is empty; paste a JSON or YAML integration document.")
    if text.lstrip().startswith("{"):
        try:
            return json.loads(text)
        except json.JSONDecodeError as exc:
            raise _invalid(
                f"The document is not valid JSON (line {exc.lineno}, column {exc.colno}: "
                f"{exc.msg}); fix the syntax there."
            ) from None
        except (ValueError, RecursionError):
            raise _invalid("The document is not acceptable JSON; fix its syntax.") from None
    try:
        return yaml.safe_load(text)
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark
        where = f"line {mark.line + 1}, column {mark.column + 1}: " if mark else ""
        raise _invalid(
            f"The document is not valid YAML ({where}{exc.problem}); fix the syntax there."
        ) from None
    except (yaml.YAMLError, RecursionError):
        raise _invalid("The document is not valid YAML; fix its syntax.") from None


def _invalid(message: str) -> InvalidInput:
    return InvalidInput([Issue("", message)], status=400)
