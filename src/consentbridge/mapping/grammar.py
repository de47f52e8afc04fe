"""The grammar of ``value`` paths: tokens, the forms a path may take, and every reading of a path.

A path is a list of ``_``-separated parts. Ids may themselves contain ``_``, so one path can have
several readings ("candidates"); ``parse_path`` returns all of them in the documented preference
order and leaves choosing one to the snapshot (``project.resolve``). An id wrapped in ``{…}`` is
one part, taken verbatim, and never a keyword — the way to pin a single reading.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from enum import StrEnum

from consentbridge.mapping.errors import MappingPathError

MAX_PATH_LENGTH = 256


class PathKind(StrEnum):
    """What a path reads, one per form of the grammar."""

    PURPOSE_ENABLED = "purpose_enabled"
    PURPOSE_ENABLED_LI = "purpose_enabled_li"
    PURPOSE_CHANNEL = "purpose_channel"
    PREFERENCE = "preference"
    PREFERENCE_CHANNEL = "preference_channel"
    VALUES = "values"
    VALUE_SELECTED = "value_selected"
    CHANNEL = "channel"
    METADATA = "metadata"
    ORGANIZATION_USER_ID = "organization_user_id"


class ValueKind(StrEnum):
    """The kind of value a path yields; transforms are checked against it."""

    BOOLEAN = "boolean"  # true / false (null = no choice)
    SELECTION = "selection"  # canonical comma list of value ids, "" = nothing selected
    TEXT = "text"  # a string
    ANY = "any"  # whatever the user's metadata holds


VALUE_KINDS: dict[PathKind, ValueKind] = {
    PathKind.PURPOSE_ENABLED: ValueKind.BOOLEAN,
    PathKind.PURPOSE_ENABLED_LI: ValueKind.BOOLEAN,
    PathKind.PURPOSE_CHANNEL: ValueKind.BOOLEAN,
    PathKind.PREFERENCE: ValueKind.BOOLEAN,
    PathKind.PREFERENCE_CHANNEL: ValueKind.BOOLEAN,
    PathKind.VALUES: ValueKind.SELECTION,
    PathKind.VALUE_SELECTED: ValueKind.BOOLEAN,
    PathKind.CHANNEL: ValueKind.BOOLEAN,
    PathKind.METADATA: ValueKind.ANY,
    PathKind.ORGANIZATION_USER_ID: ValueKind.TEXT,
}

# A form is a sequence of keywords (a set of accepted spellings) and id slots (a field name of
# PathTarget). The order of _FORMS is the documented preference order: forms that read more of
# the path as structure come first.
_Element = frozenset[str] | str
_CONSENTS, _PURPOSES = frozenset({"consents"}), frozenset({"purposes"})
_PREFS, _VALUES = frozenset({"preferences"}), frozenset({"values"})
_CHANNEL = frozenset({"channel", "channels"})
_ENABLED, _LI = frozenset({"enabled"}), frozenset({"li"})
_FORMS: tuple[tuple[PathKind, tuple[_Element, ...]], ...] = (
    (
        PathKind.PREFERENCE_CHANNEL,
        (_CONSENTS, _PURPOSES, "purpose", _PREFS, "preference", _CHANNEL, "channel", _ENABLED),
    ),
    (PathKind.PREFERENCE, (_CONSENTS, _PURPOSES, "purpose", _PREFS, "preference", _ENABLED)),
    (PathKind.PURPOSE_CHANNEL, (_CONSENTS, _PURPOSES, "purpose", _CHANNEL, "channel", _ENABLED)),
    (PathKind.VALUE_SELECTED, (_CONSENTS, _PURPOSES, "purpose", _VALUES, "preference", "value_id")),
    (PathKind.VALUES, (_CONSENTS, _PURPOSES, "purpose", _VALUES, "preference")),
    (PathKind.PURPOSE_ENABLED_LI, (_CONSENTS, _PURPOSES, "purpose", _ENABLED, _LI)),
    (PathKind.PURPOSE_ENABLED, (_CONSENTS, _PURPOSES, "purpose", _ENABLED)),
    (PathKind.CHANNEL, (_CONSENTS, frozenset({"channels"}), "channel", _ENABLED)),
    (PathKind.METADATA, (frozenset({"metadata"}), "key")),
    (
        PathKind.ORGANIZATION_USER_ID,
        (frozenset({"organization"}), frozenset({"user"}), frozenset({"id"})),
    ),
)
FORM_ORDER: tuple[PathKind, ...] = tuple(kind for kind, _ in _FORMS)
KEYWORDS: frozenset[str] = frozenset().union(
    *(element for _, form in _FORMS for element in form if isinstance(element, frozenset))
)


@dataclass(frozen=True, slots=True)
class PathTarget:
    """One reading of a path: its form and the ids it names (unused ids are ``None``)."""

    kind: PathKind
    purpose: str | None = None
    preference: str | None = None
    channel: str | None = None
    value_id: str | None = None
    key: str | None = None

    @property
    def value_kind(self) -> ValueKind:
        return VALUE_KINDS[self.kind]

    def describe(self) -> str:
        """A short English description, e.g. ``channel 'email' of preference 'news' of ...``."""
        parts: list[str] = []
        if self.kind is PathKind.ORGANIZATION_USER_ID:
            return "the user's organization_user_id"
        if self.kind is PathKind.METADATA:
            return f"metadata key {self.key!r}"
        if self.value_id is not None:
            parts.append(f"value {self.value_id!r}")
        if self.channel is not None:
            parts.append(f"channel {self.channel!r}")
        if self.preference is not None:
            parts.append(f"preference {self.preference!r}")
        if self.purpose is not None:
            parts.append(f"purpose {self.purpose!r}")
        text = " of ".join(parts)
        if self.kind is PathKind.PURPOSE_ENABLED_LI:
            return f"legitimate interest of {text}"
        return text

    def render(self) -> str:
        """This reading written as a path, with ``{…}`` only where needed to make it unambiguous.

        Tries, in order: no braces; braces around ids containing ``_``; braces around one id;
        braces around every id.
        """
        slots = [element for element in dict(_FORMS)[self.kind] if isinstance(element, str)]
        underscored = {slot for slot in slots if "_" in getattr(self, slot)}
        for quoted in [set(), underscored, *({slot} for slot in slots), set(slots)]:
            try:
                text = self._join(quoted)
                if parse_path(text).candidates == (self,):
                    return text
            except MappingPathError:
                continue
        raise MappingPathError(
            f"{self.describe()} cannot be written as a path because an id contains a brace or "
            "a control character; rename the id in Didomi."
        )

    def _join(self, quoted: set[str]) -> str:
        parts: list[str] = []
        for element in dict(_FORMS)[self.kind]:
            if isinstance(element, frozenset):
                parts.append("channel" if element is _CHANNEL else next(iter(element)))
            else:
                ident = getattr(self, element)
                parts.append(f"{{{ident}}}" if element in quoted else ident)
        return "_".join(parts)


@dataclass(frozen=True, slots=True)
class ParsedPath:
    """A path and all its readings, most preferred first (never empty)."""

    text: str
    candidates: tuple[PathTarget, ...]

    @property
    def is_ambiguous(self) -> bool:
        return len(self.candidates) > 1

    @property
    def value_kinds(self) -> frozenset[ValueKind]:
        return frozenset(target.value_kind for target in self.candidates)


@dataclass(frozen=True, slots=True)
class _Token:
    text: str
    quoted: bool


def parse_path(path: object) -> ParsedPath:
    """Every reading of ``path``, in preference order; ``MappingPathError`` if there is none."""
    if not isinstance(path, str):
        raise MappingPathError(
            f"a path must be a string such as consents_purposes_<purpose>_enabled, "
            f"not {type(path).__name__}."
        )
    tokens = _tokenize(path)
    found: list[PathTarget] = []
    for kind, form in _FORMS:
        for ids in _match(form, tokens, 0, {}):
            target = PathTarget(kind, **ids)
            if target not in found:
                found.append(target)
    if not found:
        raise MappingPathError(_diagnose(path, tokens))
    return ParsedPath(path, tuple(found))


def _tokenize(path: str) -> list[_Token]:
    if not path:
        raise MappingPathError(
            "the path is empty; write a path such as consents_purposes_<purpose>_enabled."
        )
    if len(path) > MAX_PATH_LENGTH:
        raise MappingPathError(
            f"the path is {len(path)} characters long, over the limit of {MAX_PATH_LENGTH}; "
            "check that it was pasted correctly."
        )
    if any(not char.isprintable() and char != " " for char in path):
        raise MappingPathError(f"path {path!r} contains a control character; remove it.")
    tokens: list[_Token] = []
    i = 0
    while True:
        if path.startswith("{", i):
            end = path.find("}", i + 1)
            if end < 0:
                raise MappingPathError(
                    f"path {path!r} opens '{{' without closing it; close the quoted id with '}}'."
                )
            text = path[i + 1 : end]
            if not text or "{" in text:
                raise MappingPathError(
                    f"path {path!r} has an empty or nested quoted id; put exactly one id "
                    "between the braces, as in consents_purposes_{my_id}_enabled."
                )
            tokens.append(_Token(text, quoted=True))
            i = end + 1
            if i < len(path) and path[i] != "_":
                raise _brace_error(path)
        else:
            end = path.find("_", i)
            end = len(path) if end < 0 else end
            text = path[i:end]
            _check_plain(path, text)
            tokens.append(_Token(text, quoted=False))
            i = end
        if i == len(path):
            return tokens
        i += 1  # skip the "_"
        if i == len(path):
            raise _empty_part_error(path)


def _check_plain(path: str, text: str) -> None:
    if not text:
        raise _empty_part_error(path)
    if "{" in text or "}" in text:
        raise _brace_error(path)
    if any(char.isspace() for char in text):
        raise MappingPathError(
            f"path {path!r} contains whitespace; remove it, or wrap an id that really "
            "contains spaces in braces, as in metadata_{first name}."
        )


def _brace_error(path: str) -> MappingPathError:
    return MappingPathError(
        f"path {path!r} has a brace inside a part; braces must wrap a whole id between "
        "underscores, as in consents_purposes_{my_id}_enabled."
    )


def _empty_part_error(path: str) -> MappingPathError:
    return MappingPathError(
        f"path {path!r} has an empty part (a leading, trailing or doubled '_'); remove the "
        "extra '_', or wrap an id that really contains it in braces."
    )


def _match(
    form: tuple[_Element, ...], tokens: list[_Token], i: int, bound: dict[str, str]
) -> Iterator[dict[str, str]]:
    """Yield every assignment of ids that makes ``tokens[i:]`` spell ``form``."""
    if not form:
        if i == len(tokens):
            yield dict(bound)
        return
    head, rest = form[0], form[1:]
    if len(tokens) - i < len(form):  # every element needs at least one token
        return
    if isinstance(head, frozenset):
        token = tokens[i]
        if not token.quoted and token.text in head:
            yield from _match(rest, tokens, i + 1, bound)
        return
    # An id slot takes one quoted token, or a run of plain tokens, shortest first.
    if tokens[i].quoted:
        yield from _match(rest, tokens, i + 1, {**bound, head: tokens[i].text})
        return
    for end in range(i + 1, len(tokens) + 1):
        if tokens[end - 1].quoted:
            return
        ident = "_".join(token.text for token in tokens[i:end])
        yield from _match(rest, tokens, end, {**bound, head: ident})


def _diagnose(path: str, tokens: list[_Token]) -> str:
    """The one-sentence reason why a well-tokenized path matches no form."""
    words = [token.text if not token.quoted else None for token in tokens]
    head = words[:2]
    if "." in path and "_" not in path:
        return f"path {path!r} separates its parts with '.'; use '_' instead."
    if head == ["consents", "purposes"]:
        if len(words) == 2 or (len(words) == 3 and words[2] in KEYWORDS):
            return f"path {path!r} names no purpose; write consents_purposes_<purpose>_enabled."
        if words[-1] not in {"enabled", "li"} and "values" not in words[3:]:
            return (
                f"path {path!r} does not say what to read; end it with _enabled or _enabled_li, "
                "or read a preference with _values_<preference>."
            )
        return (
            f"path {path!r} matches no form of the grammar (an id is missing or a keyword is "
            "out of place); compare it with the forms in docs/mapping.md."
        )
    if head == ["consents", "channels"]:
        return f"path {path!r} is not of the form consents_channels_<channel>_enabled; fix it so."
    if words[0] == "consents":
        return f"path {path!r} must continue consents_purposes_ or consents_channels_; fix it so."
    if words == ["metadata"]:
        return f"path {path!r} names no metadata key; write metadata_<key>."
    return (
        f"path {path!r} does not start with consents_purposes_, consents_channels_, metadata_ "
        "or organization_user_id; use one of the forms in docs/mapping.md."
    )
