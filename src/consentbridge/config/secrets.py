"""Secrets at rest: Fernet encryption of a document's secret fields, key management, redaction.

The secret fields are those in ``SECRET_PATHS`` (``config.client_secret``, ``didomi.api_secret``,
``webhook_auth.client_secret``) and each ``config.credentials[i].client_secret``
(``secret_paths``). Stored form: the document as JSON with each secret replaced by
``{"$enc": "<Fernet token>"}``; read form (API, CLI, console): each secret replaced by ``"***"``.

The key comes from ``CONSENTBRIDGE_SECRET_KEY``, else from a key file (default
``./var/secret.key``) created on first use with mode 0600. A key file that group or others may
access is refused, not merely warned about: whoever reads it can decrypt every stored secret, and
a warning scrolls by unseen (ssh refuses loose private keys for the same reason).

The secret ConsentBridge generates for the webhook it registers in Dataverse is run-time state of
the bidirectional flow, not configuration, so it is not part of the document: its owner stores
``SecretBox.encrypt(secret)`` beside that registration and reads it back with ``decrypt``. Keeping
it out of the document also means a ``PUT`` that replaces the document cannot lose it.
"""

from __future__ import annotations

import copy
import os
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any, Final

from cryptography.fernet import Fernet, InvalidToken
from pydantic import SecretStr
from pydantic_core import PydanticCustomError

from consentbridge.config.errors import SecretDecryptionError, SecretKeyError
from consentbridge.config.integration import (
    DEFAULT_AUTHORITY_HOST,
    DEFAULT_DIDOMI_BASE_URL,
    REDACTED,
    Integration,
    SecretPath,
    normalize_https_url,
    secret_paths,
)
from consentbridge.config.settings import GENERATE_KEY_HINT, SECRET_KEY_ENV, Settings
from consentbridge.config.validation import parse_integration

ENCRYPTED_KEY: Final = "$enc"


class SecretBox:
    """Encrypts and decrypts secrets with one Fernet key; its repr never shows the key."""

    __slots__ = ("_fernet",)

    def __init__(self, key: str | bytes) -> None:
        try:
            self._fernet = Fernet(key)
        except ValueError:
            raise SecretKeyError(
                f"The secret key is not a Fernet key (urlsafe base64 of 32 bytes); "
                f"{GENERATE_KEY_HINT}."
            ) from None

    @classmethod
    def from_settings(cls, settings: Settings) -> SecretBox:
        """The box for ``settings.secret_key``, else for the key file (created if missing)."""
        if settings.secret_key is not None:
            return cls(settings.secret_key.get_secret_value())
        return cls(load_or_create_key_file(settings.secret_key_file))

    def __repr__(self) -> str:
        return "SecretBox(key=<hidden>)"

    def encrypt(self, secret: str | SecretStr) -> str:
        """A Fernet token for ``secret``."""
        text = secret.get_secret_value() if isinstance(secret, SecretStr) else secret
        return self._fernet.encrypt(text.encode()).decode("ascii")

    def decrypt(self, token: str) -> SecretStr:
        """The secret in ``token``; ``SecretDecryptionError`` if another key made it."""
        try:
            return SecretStr(self._fernet.decrypt(token.encode()).decode())
        except (InvalidToken, UnicodeError):
            raise SecretDecryptionError(
                f"A stored secret cannot be decrypted with the current key; set "
                f"{SECRET_KEY_ENV} (or the key file) back to the key it was stored with."
            ) from None

    def encrypt_document(self, integration: Integration) -> dict[str, Any]:
        """The JSON-safe stored form: secrets replaced by ``{"$enc": "<token>"}``."""
        return _document_with(integration, lambda secret: {ENCRYPTED_KEY: self.encrypt(secret)})

    def decrypt_document(self, document: Mapping[str, Any]) -> Integration:
        """The integration from its stored form (see ``encrypt_document``)."""
        raw: dict[str, Any] = copy.deepcopy(dict(document))
        for path in secret_paths(raw):
            holder = _holder(raw, path)
            stored = holder.get(_leaf(path)) if holder is not None else None
            if holder is None or stored is None:
                continue
            token = stored.get(ENCRYPTED_KEY) if isinstance(stored, dict) else None
            if not isinstance(token, str):
                raise SecretDecryptionError(
                    f"The stored secret {_dotted(path)} is not encrypted; store documents "
                    "only through SecretBox.encrypt_document."
                )
            holder[_leaf(path)] = self.decrypt(token).get_secret_value()
        return parse_integration(raw)


def redacted(integration: Integration) -> dict[str, Any]:
    """The read form shown by the API, CLI and console: secrets replaced by ``"***"``."""
    return _document_with(integration, lambda _secret: REDACTED)


def merge_redacted(new_raw: object, old: Integration) -> object:
    """``new_raw`` with each ``"***"`` secret replaced by ``old``'s, where that is safe.

    A secret is kept only if ``old`` has it and the endpoint it is sent to is unchanged
    (``config.authority_host`` for ``client_secret``, ``didomi.base_url`` for ``api_secret``);
    otherwise an admin who may not read secrets could point them at a host of their own. A
    ``"***"`` left in place is then refused by ``parse_integration`` with a message to enter it.
    """
    if not isinstance(new_raw, dict):
        return new_raw
    merged = copy.deepcopy(new_raw)
    for path, endpoint_unchanged in _KEEP_RULES:
        holder = _holder(merged, path)
        secret = _secret_at(old, path)
        if holder is None or holder.get(_leaf(path)) != REDACTED or secret is None:
            continue
        if endpoint_unchanged(merged, old):
            holder[_leaf(path)] = secret.get_secret_value()
    _merge_credentials(merged, old)
    return merged


def _merge_credentials(merged: dict[str, Any], old: Integration) -> None:
    """A ``"***"`` in ``config.credentials[i]`` keeps the stored secret of the same client id
    (entries may be reordered, added or removed), under the rule of ``config.client_secret``."""
    config = merged.get("config")
    entries = config.get("credentials") if isinstance(config, dict) else None
    if not isinstance(entries, list) or not _authority_unchanged(merged, old):
        return
    stored = {c.client_id: c.client_secret for c in old.config.credentials or []}
    for entry in entries:
        if not isinstance(entry, dict) or entry.get("client_secret") != REDACTED:
            continue
        client_id = entry.get("client_id")
        secret = stored.get(client_id.lower()) if isinstance(client_id, str) else None
        if secret is not None:
            entry["client_secret"] = secret.get_secret_value()


def load_or_create_key_file(path: Path) -> bytes:
    """The Fernet key in ``path``, creating the file (mode 0600, parents too) if it is missing."""
    if not path.exists():
        _create_key_file(path)
    if os.name == "posix":
        mode = path.stat().st_mode & 0o777
        if mode & 0o077:
            raise SecretKeyError(
                f"The key file {path} can be read by other users (mode {mode:o}); "
                f"run chmod 600 {path}."
            )
    try:
        key = path.read_bytes().strip()
        Fernet(key)
    except OSError as exc:
        raise SecretKeyError(f"Cannot read the key file {path} ({exc.strerror}).") from None
    except ValueError:
        raise SecretKeyError(
            f"The key file {path} does not hold a Fernet key; restore the file the stored "
            f"secrets were encrypted with, or set {SECRET_KEY_ENV}."
        ) from None
    return key


def _create_key_file(path: Path) -> None:
    # Written under a temporary name, then hard-linked into place: a process starting at the
    # same moment either wins the link or reads the complete file, and never replaces a key.
    temporary = path.with_name(f".{path.name}.{os.getpid()}.{os.urandom(4).hex()}")
    try:
        path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        descriptor = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(descriptor, "wb") as file:
            file.write(Fernet.generate_key() + b"\n")
            file.flush()
            os.fsync(file.fileno())
        try:
            os.link(temporary, path)
        except FileExistsError:
            pass
        finally:
            temporary.unlink()
    except OSError as exc:
        raise SecretKeyError(
            f"Cannot create the key file {path} ({exc.strerror}); make its directory writable "
            f"or set {SECRET_KEY_ENV}."
        ) from None


def _document_with(integration: Integration, render: Callable[[str], object]) -> dict[str, Any]:
    # mode="json" turns SecretStr into "**********"; each secret is then put back as rendered.
    # Every optional field defaults to None, so leaving the Nones out loses nothing.
    document = integration.model_dump(mode="json", exclude_none=True)
    for path in secret_paths(document):
        secret = _secret_at(integration, path)
        holder = _holder(document, path)
        if secret is not None and holder is not None:
            holder[_leaf(path)] = render(secret.get_secret_value())
    return document


def _holder(document: dict[str, Any], path: SecretPath) -> dict[str, Any] | None:
    """The object that holds the last key of ``path``, if the document has one."""
    node: object = document
    for key in path[:-1]:
        if isinstance(key, int):
            node = node[key] if isinstance(node, list) and key < len(node) else None
        else:
            node = node.get(key) if isinstance(node, dict) else None
    return node if isinstance(node, dict) else None


def _secret_at(integration: Integration, path: SecretPath) -> SecretStr | None:
    node: object = integration
    for key in path:
        if isinstance(key, int):
            node = node[key] if isinstance(node, list) and key < len(node) else None
        else:
            node = getattr(node, key, None)
    return node if isinstance(node, SecretStr) else None


def _leaf(path: SecretPath) -> str:
    """The key of the secret itself (always a name, never an index)."""
    return str(path[-1])


def _dotted(path: SecretPath) -> str:
    """``config.credentials[1].client_secret``."""
    return "".join(f"[{k}]" if isinstance(k, int) else f".{k}" for k in path).lstrip(".")


def _same_url(new: object, old: str) -> bool:
    if not isinstance(new, str):
        return False
    try:
        return normalize_https_url(new, origin_only=False, example="") == old
    except PydanticCustomError:
        return False


def _authority_unchanged(new: dict[str, Any], old: Integration) -> bool:
    config = new.get("config")
    host = (
        config.get("authority_host", DEFAULT_AUTHORITY_HOST) if isinstance(config, dict) else None
    )
    return _same_url(host, old.config.authority_host)


def _didomi_unchanged(new: dict[str, Any], old: Integration) -> bool:
    didomi = new.get("didomi")
    base_url = didomi.get("base_url", DEFAULT_DIDOMI_BASE_URL) if isinstance(didomi, dict) else None
    return old.didomi is not None and _same_url(base_url, old.didomi.base_url)


_KEEP_RULES: Final[tuple[tuple[SecretPath, Callable[[dict[str, Any], Integration], bool]], ...]] = (
    (("config", "client_secret"), _authority_unchanged),
    (("didomi", "api_secret"), _didomi_unchanged),
    # Only checked by our own token endpoint, never sent anywhere.
    (("webhook_auth", "client_secret"), lambda _new, _old: True),
)
