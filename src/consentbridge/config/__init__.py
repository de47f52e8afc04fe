"""Integration documents (models, validation, secret encryption) and process settings.

Pure: no HTTP, no storage. The usual path for a document is
``load_document_file`` → ``merge_redacted`` (on replace) → ``parse_integration`` →
``SecretBox.encrypt_document`` to store, ``decrypt_document`` to load, ``redacted`` to show.
"""

from consentbridge.config.errors import (
    ConfigError,
    DocumentFileError,
    InvalidIntegration,
    SecretDecryptionError,
    SecretKeyError,
    SettingsError,
    ValidationIssue,
)
from consentbridge.config.files import load_document_file
from consentbridge.config.integration import (
    DataverseConfig,
    DidomiConfig,
    Integration,
    Property,
    WebhookAuth,
)
from consentbridge.config.secrets import (
    SecretBox,
    load_or_create_key_file,
    merge_redacted,
    redacted,
)
from consentbridge.config.settings import Settings
from consentbridge.config.validation import (
    PropertyChecker,
    accept_any_property,
    parse_integration,
)

__all__ = [
    "ConfigError",
    "DataverseConfig",
    "DidomiConfig",
    "DocumentFileError",
    "Integration",
    "InvalidIntegration",
    "Property",
    "PropertyChecker",
    "SecretBox",
    "SecretDecryptionError",
    "SecretKeyError",
    "Settings",
    "SettingsError",
    "ValidationIssue",
    "WebhookAuth",
    "accept_any_property",
    "load_document_file",
    "load_or_create_key_file",
    "merge_redacted",
    "parse_integration",
    "redacted",
]
