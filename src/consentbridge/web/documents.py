"""Integration documents typed into the console: parsing JSON or YAML text, the example shown
when creating one, and keeping secrets out of the page that shows a document back.

Errors name a line and column but never quote the text, which holds secrets. When a typed
document is shown again (after validate, or a refused save), its secrets are shown as
``"***"`` and travel in a hidden field *sealed* — encrypted with the service's secret key —
so the next submit still has them (``unseal``) while the page itself never holds one. Text
that does not parse is shown with the values of its secret keys masked instead.
"""

from __future__ import annotations

import copy
import json
import re
from typing import Any, Final

import yaml

from consentbridge.config import ConfigError, SecretBox
from consentbridge.config.integration import REDACTED, SecretPath, secret_paths
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


# `client_secret: x`, `"api_secret": "x"`: the value after a secret key, in JSON or YAML text.
_SECRET_VALUE: Final = re.compile(
    r"""(?P<key>["']?(?:client_secret|api_secret)["']?\s*:\s*)"""
    r"""(?P<value>"(?:[^"\\\n]|\\.)*"|'(?:[^'\n]|'')*'|[^\s,}\]]+)"""
)


def shown(text: str, document: object, box: SecretBox) -> tuple[str, str]:
    """``(text to show, sealed secrets)`` for a typed document about to be shown back.

    A document that parsed is shown as JSON with every secret as ``"***"``; its secrets are
    sealed. Text that did not parse keeps its form with secret values masked; nothing is
    sealed (the user types those secrets again).
    """
    if not isinstance(document, dict):
        return mask_text(text), ""
    masked = copy.deepcopy(document)
    sealed: dict[str, str] = {}
    for path in secret_paths(masked):
        holder = _holder(masked, path)
        value = holder.get(str(path[-1])) if holder is not None else None
        if holder is None or value in (None, "", REDACTED):
            continue
        if isinstance(value, str):  # anything else is refused anyway: hidden, not kept
            sealed[".".join(map(str, path))] = value
        holder[str(path[-1])] = REDACTED
    pretty = json.dumps(masked, indent=2, ensure_ascii=False, default=str)
    return pretty, box.encrypt(json.dumps(sealed)) if sealed else ""


def unseal(document: object, sealed: str | None, box: SecretBox) -> object:
    """``document`` with each ``"***"`` secret that ``sealed`` holds put back (others stay
    ``"***"``: for a stored integration they keep the stored secret)."""
    if not sealed or not isinstance(document, dict):
        return document
    try:
        secrets: dict[str, Any] = json.loads(box.decrypt(sealed).get_secret_value())
    except (ConfigError, ValueError):
        raise InvalidInput(
            [Issue("sealed", "The form's sealed secrets cannot be read; type the secrets again.")],
            status=400,
        ) from None
    restored = copy.deepcopy(document)
    for path in secret_paths(restored):
        holder = _holder(restored, path)
        secret = secrets.get(".".join(map(str, path)))
        leaf = str(path[-1])
        if holder is not None and holder.get(leaf) == REDACTED and isinstance(secret, str):
            holder[leaf] = secret
    return restored


def mask_text(text: str) -> str:
    """``text`` with the value after every secret key replaced by ``***``."""
    return _SECRET_VALUE.sub(lambda m: f'{m.group("key")}"{REDACTED}"', text)


def _holder(document: dict[str, Any], path: SecretPath) -> dict[str, Any] | None:
    node: object = document
    for key in path[:-1]:
        if isinstance(key, int):  # config.credentials[i]
            node = node[key] if isinstance(node, list) and key < len(node) else None
        else:
            node = node.get(key) if isinstance(node, dict) else None
    return node if isinstance(node, dict) else None
