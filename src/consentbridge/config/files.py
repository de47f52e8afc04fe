"""Reading an integration document from a JSON or YAML file into plain Python data.

``.yaml`` / ``.yml`` files are read with PyYAML's safe loader, anything else as JSON. Duplicate
keys are refused in both (the parsers would otherwise keep the last one silently). Errors are one
sentence naming the file; they give a line and column but never quote the file, which holds
secrets.
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
    if file.suffix.lower() in YAML_SUFFIXES:
        return _load_yaml(text, file)
    return _load_json(text, file)


def _load_json(text: str, file: Path) -> object:
    try:
        return json.loads(text, object_pairs_hook=_unique_object)
    except json.JSONDecodeError as exc:
        raise DocumentFileError(
            f"{file} is not valid JSON (line {exc.lineno}, column {exc.colno}: {exc.msg}); "
            "fix the syntax there."
        ) from None
    except _DuplicateKey as exc:
        raise DocumentFileError(f"{file} is ambiguous: {exc}; keep only one.") from None


def _load_yaml(text: str, file: Path) -> object:
    try:
        return yaml.load(text, Loader=_UniqueKeyLoader)  # a SafeLoader subclass
    except yaml.MarkedYAMLError as exc:
        # str(exc) would quote the offending line, which may hold a secret.
        mark = exc.problem_mark
        where = f"line {mark.line + 1}, column {mark.column + 1}: " if mark else ""
        raise DocumentFileError(
            f"{file} is not valid YAML ({where}{exc.problem}); fix the syntax there."
        ) from None
    except yaml.YAMLError:
        raise DocumentFileError(f"{file} is not valid YAML; fix its syntax.") from None
    except _DuplicateKey as exc:
        raise DocumentFileError(f"{file} is ambiguous: {exc}; keep only one.") from None


def _unique_object(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    result: dict[str, Any] = {}
    for key, value in pairs:
        if key in result:
            raise _DuplicateKey(key)
        result[key] = value
    return result


class _UniqueKeyLoader(yaml.SafeLoader):
    """PyYAML's safe loader, refusing a key repeated in one mapping."""

    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict[Any, Any]:
        keys = [self.construct_object(key, deep=deep) for key, _ in node.value]
        for index, key in enumerate(keys):
            if key in keys[:index]:
                raise _DuplicateKey(key)
        return super().construct_mapping(node, deep=deep)
