"""Errors raised by the mapping package.

Every message is one sentence naming the problem and the fix. All of them are ``ValueError``s, so a
pydantic validator that builds a ``Property`` turns them into ordinary validation errors. The
first three carry ``.field``: the property key (``value``, ``transform``, ``id``) they are about.

    MappingError (ValueError)
     ├── MappingPathError        a ``value`` path is malformed
     ├── MappingTransformError   a ``transform`` is malformed or unfit for its path
     ├── MappingColumnError      a column name or column type cannot be mapped
     ├── MappingConfigError      a whole ``properties`` list was refused; ``.problems`` lists each
     ├── MappingValueError       a value cannot be transformed, coerced or mapped back
     └── ConsentStateError       a Didomi user or event does not have the documented shape
"""

from __future__ import annotations

from dataclasses import dataclass

# Values are echoed in messages to make them actionable, but kept short: they come from consent
# state (possibly personal data) and end up in logs.
_MAX_SHOWN = 60


def show(value: object) -> str:
    """A short, quoted rendering of a value for an error message."""
    text = repr(value)
    return text if len(text) <= _MAX_SHOWN else text[: _MAX_SHOWN - 3] + "..."


class MappingError(ValueError):
    """Base of every error raised by ``consentbridge.mapping``."""

    #: The key of a property (``id``, ``value`` or ``transform``) the error is about, if any.
    field: str | None = None


class MappingPathError(MappingError):
    """A ``value`` path does not follow the grammar of docs/mapping.md."""

    field = "value"


class MappingTransformError(MappingError):
    """A ``transform`` is malformed, or does not fit the kind of value its path reads."""

    field = "transform"


class MappingColumnError(MappingError):
    """A Dataverse column name is malformed, or its type cannot receive consent values."""

    field = "id"


@dataclass(frozen=True, slots=True)
class Problem:
    """One problem of a ``properties`` list: where (``[1].transform``) and what."""

    path: str
    message: str

    def __str__(self) -> str:
        return f"{self.path}: {self.message}"


class MappingConfigError(MappingError):
    """A ``properties`` list was refused as a whole; ``problems`` lists every problem found."""

    def __init__(self, problems: list[Problem]) -> None:
        self.problems = tuple(problems)
        super().__init__("; ".join(str(problem) for problem in self.problems))


class MappingValueError(MappingError):
    """A value cannot be transformed, coerced to its column type, or mapped back to Didomi."""


class ConsentStateError(MappingError):
    """A Didomi user or event (its ``consents``, ``metadata`` ...) has an unexpected shape."""
