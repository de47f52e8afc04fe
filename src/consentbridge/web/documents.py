"""Integration documents typed into the console: parsing JSON or YAML text, the example shown
when creating one, and keeping secrets out of the page that shows a document back.

The text is parsed by the CLI's own parser (``config.files.parse_document_text``): YAML
anchors, aliases and repeated keys are refused. Errors name a line and column but never quote
the text, which holds secrets. When a typed document is shown again (after validate, or a
refused save), it is masked *as parsed*: every ``client_secret`` / ``api_secret`` at any depth
is shown as ``"***"``, whatever its spelling in the text (a block scalar, a quoted or escaped
key), and the secrets (``SECRET_PATHS`` and each ``config.credentials[i]``) travel in a hidden
field *sealed* — encrypted with the service's secret key — so the next submit still has them
(``unseal``) while the page itself never holds one. Text that does not parse is shown back line
by line, each line that names a secret or holds an escape masked from its key on, with the
lines that continue it.
"""

from __future__ import annotations

import copy
import json
import re
from typing import Any, Final

from consentbridge.config import ConfigError, DocumentFileError, SecretBox
from consentbridge.config.files import parse_document_text as parse_text
from consentbridge.config.integration import REDACTED, SECRET_PATHS, SecretPath, secret_paths
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
    try:
        return parse_text(text, yaml_syntax=not text.lstrip().startswith("{"), name="The document")
    except DocumentFileError as exc:
        raise _invalid(str(exc)) from None


def _invalid(message: str) -> InvalidInput:
    return InvalidInput([Issue("", message)], status=400)


SECRET_KEYS: Final = frozenset(str(path[-1]) for path in SECRET_PATHS)
# A line of unparsed text that may hold a secret: it names one, or has an escape that could
# spell a key (`"client\u005fsecret"`), or is a YAML explicit key or value (`? k` / `: v`).
_RISKY_LINE: Final = re.compile(r"secret|\\|^\s*[?:](?:\s|$)", re.IGNORECASE)


def shown(text: str, document: object, box: SecretBox) -> tuple[str, str]:
    """``(text to show, sealed secrets)`` for a typed document about to be shown back.

    A document that parsed is shown as JSON with every secret as ``"***"``; its secrets are
    sealed. Text that did not parse keeps its form with secret values masked; nothing is
    sealed (the user types those secrets again).
    """
    if document is None and text.strip():
        return mask_text(text), ""
    sealed: dict[str, str] = {}
    if isinstance(document, dict):
        for path in secret_paths(document):
            holder = _holder(document, path)
            value = holder.get(str(path[-1])) if holder is not None else None
            if isinstance(value, str) and value not in ("", REDACTED):
                sealed[".".join(map(str, path))] = value
    pretty = json.dumps(_masked(document), indent=2, ensure_ascii=False, default=str)
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
    """Unparsed ``text`` with each line that may hold a secret masked from its key on, and
    the more-indented lines that continue it (a block scalar, a folded value) masked whole."""
    shown_lines: list[str] = []
    continued_below: int | None = None  # lines indented deeper than this continue a masked one
    for line in text.splitlines(keepends=True):
        body = line.lstrip(" \t")
        indent = len(line) - len(body)
        ending = line[len(line.rstrip("\r\n")) :]
        if continued_below is not None and (not body.strip() or indent > continued_below):
            shown_lines.append(f"{line[:indent]}{REDACTED}{ending}" if body.strip() else line)
            continue
        continued_below = None
        risky = _RISKY_LINE.search(line)
        if risky is None:
            shown_lines.append(line)
            continue
        colon = line.find(":", risky.end() if risky.group().strip() not in ("?", ":") else 0)
        keep = line[: colon + 1] if colon >= 0 else line[:indent]
        shown_lines.append(f'{keep}{" " if colon >= 0 else ""}"{REDACTED}"{ending}')
        continued_below = indent
    return "".join(shown_lines)


def _masked(node: object) -> object:
    """``node`` with the value of every secret key, at any depth, shown as ``"***"``."""
    if isinstance(node, dict):
        return {
            key: REDACTED
            if key in SECRET_KEYS and node[key] not in (None, "")
            else _masked(node[key])
            for key in node
        }
    if isinstance(node, list):
        return [_masked(item) for item in node]
    return node


def _holder(document: dict[str, Any], path: SecretPath) -> dict[str, Any] | None:
    node: object = document
    for key in path[:-1]:
        if isinstance(key, int):  # config.credentials[i]
            node = node[key] if isinstance(node, list) and key < len(node) else None
        else:
            node = node.get(key) if isinstance(node, dict) else None
    return node if isinstance(node, dict) else None
