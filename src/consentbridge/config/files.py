"""Reading an integration document from a JSON or YAML file into plain Python data.

``.yaml`` / ``.yml`` files are read with PyYAML's safe loader, anything else as JSON. Duplicate
keys are refused in both (the parsers would otherwise keep the last one silently). YAML anchors
and aliases are refused too: a 430-byte document of nested aliases ("billion laughs") stands for
10^9 strings once anything walks it, and an alias can copy a secret to a path that is shown.
Errors are one sentence naming the file; they give a line and column but never quote the file,
which holds secrets.

``parse_document_text`` is the same parser for text typed into the console, so the CLI and the
console accept and refuse the same documents.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any, Final

import yaml

from consentbridge.config.errors import DocumentFileError

MAX_DOCUMENT_BYTES: Final = 1024 * 1024
YAML_SUFFIXES: Final = (".yaml", ".yml")


class _DuplicateKey(ValueError):
    def __init__(self, key: object) -> None:
        super().__init__(f"the key {key} appears twice in one object")


def load_document_file(path: str | os.PathLike[str]) -> object:
    """The decoded document in ``path``; ``DocumentFileError`` if it cannot be read or parsed."""
    file = Path(path)
    try:
        with file.open("rb") as stream:
            data = stream.read(MAX_DOCUMENT_BYTES + 1)
    except OSError as exc:
        raise DocumentFileError(f"Cannot read {file}: {exc.strerror}; check the path.") from None
    if len(data) > MAX_DOCUMENT_BYTES:
        raise DocumentFileError(f"{file} is larger than 1 MiB; an integration document is smaller.")
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError:
        raise DocumentFileError(f"{file} is not UTF-8 text; save it as UTF-8.") from None
    return parse_document_text(text, yaml_syntax=file.suffix.lower() in YAML_SUFFIXES, name=file)


def parse_document_text(text: str, *, yaml_syntax: bool, name: object) -> object:
    """The document in ``text`` (YAML if ``yaml_syntax``, else JSON); ``DocumentFileError``
    naming ``name`` (a path, or e.g. "The document") when it does not parse."""
    if yaml_syntax:
        return _load_yaml(text, name)
    return _load_json(text, name)


def _load_json(text: str, name: object) -> object:
    try:
        return json.loads(text, object_pairs_hook=_unique_object)
    except json.JSONDecodeError as exc:
        raise DocumentFileError(
            f"{name} is not valid JSON (line {exc.lineno}, column {exc.colno}: {exc.msg}); "
            "fix the syntax there."
        ) from None
    except _DuplicateKey as exc:
        raise DocumentFileError(f"{name} is ambiguous: {exc}; keep only one.") from None
    except (ValueError, RecursionError):
        raise DocumentFileError(f"{name} is not acceptable JSON; fix its syntax.") from None


def _load_yaml(text: str, name: object) -> object:
    try:
        return yaml.load(text, Loader=_DocumentLoader)  # a SafeLoader subclass
    except _AnchorRefused as exc:
        raise DocumentFileError(
            f"{name} uses a YAML anchor or alias ({exc.where}); write each value out in full "
            "without & and *."
        ) from None
    except yaml.MarkedYAMLError as exc:
        # str(exc) would quote the offending line, which may hold a secret.
        mark = exc.problem_mark
        where = f"{_where(mark)}: " if mark else ""
        raise DocumentFileError(
            f"{name} is not valid YAML ({where}{exc.problem}); fix the syntax there."
        ) from None
    except (yaml.YAMLError, RecursionError):
        raise DocumentFileError(f"{name} is not valid YAML; fix its syntax.") from None
    except _DuplicateKey as exc:
        raise DocumentFileError(f"{name} is ambiguous: {exc}; keep only one.") from None


def _where(mark: yaml.Mark) -> str:
    return f"line {mark.line + 1}, column {mark.column + 1}"


def _unique_object(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    result: dict[str, Any] = {}
    for key, value in pairs:
        if key in result:
            raise _DuplicateKey(key)
        result[key] = value
    return result


class _AnchorRefused(Exception):
    def __init__(self, mark: yaml.Mark) -> None:
        super().__init__()
        self.where = _where(mark)


class _DocumentLoader(yaml.SafeLoader):
    """PyYAML's safe loader, refusing anchors, aliases and a key repeated in one mapping."""

    def compose_node(self, parent: yaml.Node | None, index: int) -> yaml.Node | None:
        # Checked on the event stream, before any node is built: nothing is ever expanded.
        event = self.peek_event()  # type: ignore[no-untyped-call]
        if isinstance(event, yaml.AliasEvent) or getattr(event, "anchor", None) is not None:
            raise _AnchorRefused(event.start_mark)
        return super().compose_node(parent, index)

    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict[Any, Any]:
        keys = [self.construct_object(key, deep=deep) for key, _ in node.value]
        for index, key in enumerate(keys):
            if key in keys[:index]:
                raise _DuplicateKey(key)
        return super().construct_mapping(node, deep=deep)
