"""Errors raised by the config package, and the validation issue they carry.

Every message is one sentence naming the problem and the fix, and never contains a secret
(nor any other value taken from a document: only key names and JSON paths are echoed).

    ConfigError
     ├── InvalidIntegration   an integration document was refused; ``.errors`` lists every issue
     ├── DocumentFileError    a document file cannot be read or is not JSON / YAML
     ├── SettingsError        a process setting (environment variable or override) is invalid
     └── SecretKeyError       the encryption key is missing, malformed or unsafely stored
          └── SecretDecryptionError   a stored secret does not decrypt with the current key
"""

from __future__ import annotations

from dataclasses import dataclass


class ConfigError(Exception):
    """Base of every error raised by ``consentbridge.config``."""


@dataclass(frozen=True, slots=True)
class ValidationIssue:
    """One problem in a document: where (a JSON path such as ``config.properties[1].id``) and what.

    The root of the document has the empty path ``""``.
    """

    path: str
    message: str

    def as_dict(self) -> dict[str, str]:
        """The contract's wire form: ``{"path": ..., "message": ...}``."""
        return {"path": self.path, "message": self.message}

    def __str__(self) -> str:
        return f"{self.path}: {self.message}" if self.path else self.message


class InvalidIntegration(ConfigError):
    """An integration document was refused as a whole; ``errors`` lists every problem found."""

    def __init__(self, errors: list[ValidationIssue]) -> None:
        self.errors = list(errors)
        super().__init__("\n".join(str(issue) for issue in self.errors))

    def as_json(self) -> dict[str, list[dict[str, str]]]:
        """The body the HTTP API answers with: ``{"errors": [{"path", "message"}, ...]}``."""
        return {"errors": [issue.as_dict() for issue in self.errors]}


class DocumentFileError(ConfigError):
    """A document file is missing, unreadable, too large, or not valid JSON / YAML."""


class SettingsError(ConfigError):
    """A process setting is invalid; the message names the environment variable or option."""


class SecretKeyError(ConfigError):
    """The secret key is malformed, or its key file cannot be created, read or is unsafe."""


class SecretDecryptionError(SecretKeyError):
    """A stored secret cannot be decrypted: it was encrypted with another key, or is damaged."""
