"""The package's public surface, and its promise to stay pure (no I/O libraries imported)."""

from __future__ import annotations

import json
import subprocess
import sys

import consentbridge.mapping as mapping

HEAVY = ("httpx", "sqlalchemy", "msal", "fastapi", "starlette")


def test_importing_mapping_imports_no_io_library() -> None:
    code = (
        "import json, sys; import consentbridge.mapping; "
        f"print(json.dumps([m for m in {HEAVY!r} if m in sys.modules]))"
    )
    output = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=60
    ).stdout
    assert json.loads(output) == []


def test_the_subprocess_check_can_see_a_loaded_library() -> None:
    code = "import json, sys, httpx; print(json.dumps('httpx' in sys.modules))"
    output = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=60
    ).stdout
    assert json.loads(output) is True


def test_every_exported_name_exists_and_is_listed_once() -> None:
    assert len(set(mapping.__all__)) == len(mapping.__all__)
    for name in mapping.__all__:
        assert hasattr(mapping, name), name


def test_the_public_surface_is_pinned() -> None:
    assert set(mapping.__all__) >= {
        "parse_path",
        "ParsedPath",
        "PathTarget",
        "lint_path",
        "Property",
        "PropertyMapping",
        "ConsentSnapshot",
        "project",
        "reverse_project",
        "ReverseResult",
        "inverse",
        "coerce",
        "ColumnSpec",
        "AttributeType",
        "MappingError",
        "MappingPathError",
        "MappingTransformError",
        "MappingValueError",
    }
