"""Reading request bodies safely: a hard size cap, strict UTF-8, bounded JSON nesting, no
repeated keys, forms.

Every route that takes a body reads it through here, so no body is ever buffered beyond
``Settings.max_body_bytes`` (413) and no malformed one reaches an operation (400, naming the
problem). Nesting is bounded *before* ``json.loads``: CPython's decoder recurses per level
and raises ``RecursionError`` around depth 1,000, which must be a 400, not a 500.

Strings are held to what the store can keep: JSON allows a NUL (``\u0000``) and a lone
UTF-16 surrogate (``\ud800``) as escapes, but PostgreSQL text refuses the first and no UTF-8
encoder takes the second, so either is a 400 naming its field here rather than a 500 in the
store. ``refuse_nul_in_url`` holds path and query parameters to the same rule.
"""

from __future__ import annotations

import json
import re
import sys
from collections.abc import Sequence
from typing import Any, Final, TypeVar
from urllib.parse import parse_qsl

from fastapi import Request
from fastapi.responses import JSONResponse
from pydantic import BaseModel, ValidationError
from starlette.types import ASGIApp, Receive, Scope, Send

from consentbridge.config.validation import format_path
from consentbridge.operations.errors import InvalidInput, Issue, OperationError

MAX_JSON_DEPTH: Final = 64
MAX_FORM_FIELDS: Final = 100
FORM_TYPE: Final = "application/x-www-form-urlencoded"

# A JSON string, possessive so a hostile body cannot make the regex backtrack.
_STRING: Final = re.compile(rb'"(?:[^"\\]++|\\.)*+"', re.DOTALL)
_NOT_BRACKETS: Final = bytes(b for b in range(256) if b not in b"[]{}")
_BRACKETS: Final = bytes.maketrans(b"{}", b"[]")
_RUNS: Final = re.compile(rb"\[+|\]+")
# Above this many sibling boundaries, stripping a level in C is cheaper than walking the runs.
_MAX_SIBLING_RUNS: Final = 50_000
# The escapes that can decode to a NUL or a surrogate; only bodies that have one are walked.
_SUSPECT_ESCAPE: Final = re.compile(rb"\\u(?:0000|[dD][89a-fA-F])")
_BOM: Final = b"\xef\xbb\xbf"

Model = TypeVar("Model", bound=BaseModel)


class PayloadTooLarge(OperationError):
    status = 413


class DeclaredSizeLimit:
    """ASGI middleware: any request whose Content-Length is over ``limit`` is answered 413
    before a route runs — also routes that take no body and would ignore it. Paths under
    ``exempt`` check it themselves (the webhook routes, which count the refusal in metrics);
    bodies without a declared length are counted by ``read_body`` as they arrive."""

    def __init__(self, app: ASGIApp, limit: int, exempt: tuple[str, ...] = ()) -> None:
        self.app = app
        self.limit = limit
        self.exempt = exempt

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and not str(scope["path"]).startswith(self.exempt):
            for name, value in scope["headers"]:
                if name == b"content-length" and value.isdigit() and int(value) > self.limit:
                    answer = JSONResponse({"error": _too_large(self.limit).message}, 413)
                    await answer(scope, receive, send)
                    return
        await self.app(scope, receive, send)


def bad_body(message: str) -> InvalidInput:
    """A 400 about the body as a whole (path ``""``)."""
    return InvalidInput([Issue("", message)], status=400)


def check_declared_length(request: Request, limit: int) -> None:
    """Refuse early, before reading anything, a body whose Content-Length is over ``limit``."""
    declared = request.headers.get("content-length")
    if declared is None:
        return
    if not declared.isdigit():
        raise bad_body("The Content-Length header is not a whole number of bytes.")
    if int(declared) > limit:
        raise _too_large(limit)


async def read_body(request: Request, limit: int) -> bytes:
    """The whole body, refusing it (413) as soon as more than ``limit`` bytes arrive.

    The declared length is checked first, but the bytes are counted too: a chunked body has
    none, and a client may lie.
    """
    check_declared_length(request, limit)
    chunks: list[bytes] = []
    size = 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise _too_large(limit)
        chunks.append(chunk)
    return b"".join(chunks)


def parse_json(body: bytes, max_depth: int = MAX_JSON_DEPTH) -> object:
    """Decode a UTF-8 JSON body, or raise ``InvalidInput`` (400) naming the problem.

    A leading UTF-8 byte-order mark is skipped (RFC 8259 §8.1 lets a parser do so, and .NET
    senders write one). An object with a key given twice is refused: which value counts is
    undefined across parsers, so a sender and we could read different consent."""
    if body.startswith(_BOM):
        body = body[len(_BOM) :]
    if not body.strip():
        raise bad_body("The body is empty; send a JSON document.")
    try:
        text = body.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise bad_body(
            f"The body is not valid UTF-8 (byte {exc.start}); send UTF-8 JSON."
        ) from None
    if nesting_exceeds(body, max_depth):
        raise bad_body(f"The JSON body is nested deeper than {max_depth} levels.")
    try:
        value = _DECODER.decode(text)
    except _RepeatedKey as exc:
        raise bad_body(
            f"The JSON body gives the key '{exc.key}' more than once in one object; "
            "send each key once."
        ) from None
    except json.JSONDecodeError as exc:
        raise bad_body(
            f"The body is not valid JSON (line {exc.lineno}, column {exc.colno}: {exc.msg})."
        ) from None
    except (ValueError, RecursionError) as exc:  # NaN/Infinity, over-long integers
        raise bad_body(f"The body is not acceptable JSON ({_short(exc)}).") from None
    if _SUSPECT_ESCAPE.search(body):
        _check_strings(value)
    return value


class _RepeatedKey(ValueError):
    def __init__(self, key: str) -> None:
        super().__init__(key)
        shown = _printable(key)
        self.key = shown if len(shown) <= 64 else f"{shown[:64]}…"


def _object_without_repeats(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    # Building the dict is what ``json`` does anyway; only a length mismatch needs a search.
    value = dict(pairs)
    if len(value) != len(pairs):
        seen: set[str] = set()
        for key, _ in pairs:
            if key in seen:
                raise _RepeatedKey(key)
            seen.add(key)
    return value


def _check_strings(value: object) -> None:
    """Raise a 400 at the first key or string holding a NUL or a lone surrogate."""
    stack: list[tuple[object, tuple[int | str, ...]]] = [(value, ())]
    while stack:
        node, loc = stack.pop()
        if isinstance(node, str):
            _check_text(node, loc)
        elif isinstance(node, dict):
            for key, item in node.items():
                _check_text(key, (*loc, _printable(key)))
                stack.append((item, (*loc, key)))
        elif isinstance(node, list):
            stack.extend((item, (*loc, index)) for index, item in enumerate(node))


def _check_text(text: str, loc: tuple[int | str, ...]) -> None:
    problem = text_problem(text)
    if problem is not None:
        path = format_path(loc)
        raise InvalidInput([Issue(path, f"{path or 'The body'} {problem}.")], status=400)


def text_problem(text: str) -> str | None:
    """Why ``text`` cannot be stored (it completes a sentence naming the field), or None."""
    if "\0" in text:
        return "contains a NUL character (\\u0000), which cannot be stored; remove it"
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return "contains a lone UTF-16 surrogate (\\ud800-\\udfff), which is not text; send UTF-8"
    return None


def _printable(key: str) -> str:
    # A key that is itself the problem is named by a safe stand-in, not echoed raw.
    return key if text_problem(key) is None else "<key>"


def nesting_exceeds(body: bytes, max_depth: int) -> bool:
    """True if the arrays and objects of a JSON text nest deeper than ``max_depth``.

    Strings are removed and only brackets kept, braces as brackets (the kind does not change
    the depth), all in C. The depth is then the highest running count of a walk over the runs
    of ``[`` and ``]``. A walk over many runs would be slow in Python, so while there are many
    ``][`` (siblings), ``replace(b"[]", b"")`` first strips the innermost level — exactly one,
    in C — and the bound is lowered by one. Many siblings mean much is stripped per pass, so
    both steps stay cheap even for a hostile 1 MiB body. Unbalanced brackets are left for the
    JSON decoder to report.
    """
    if body.count(b"[") + body.count(b"{") <= max_depth:
        return False
    structure = _STRING.sub(b"", body).translate(_BRACKETS, _NOT_BRACKETS)
    limit = max_depth
    while structure.count(b"][") > _MAX_SIBLING_RUNS:
        shorter = structure.replace(b"[]", b"")
        if len(shorter) == len(structure):
            return False
        structure, limit = shorter, limit - 1
        if limit < 0:  # more levels stripped than allowed
            return True
    depth = 0
    for run in _RUNS.finditer(structure):
        if run.group().startswith(b"["):
            depth += len(run.group())
            if depth > limit:
                return True
        else:
            depth -= len(run.group())
    return False


async def read_json(request: Request, limit: int) -> object:
    """``read_body`` then ``parse_json``."""
    return parse_json(await read_body(request, limit))


async def read_form(request: Request, limit: int) -> dict[str, str]:
    """A url-encoded form body; a field given twice is refused (RFC 6749 §3.2 asks that)."""
    content_type = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if content_type != FORM_TYPE:
        raise bad_body(f"The body must be a form sent as {FORM_TYPE}.")
    body = await read_body(request, limit)
    try:
        pairs = parse_qsl(
            body.decode("utf-8"),
            keep_blank_values=True,
            strict_parsing=False,
            max_num_fields=MAX_FORM_FIELDS,
            errors="strict",
        )
    except (UnicodeDecodeError, ValueError):
        raise bad_body(
            f"The form is not valid url-encoded UTF-8 or has more than {MAX_FORM_FIELDS} fields."
        ) from None
    form: dict[str, str] = {}
    for name, value in pairs:
        if name in form:
            raise InvalidInput([Issue(name, f"{name} is given more than once.")], status=400)
        _check_text(name, ("<field>",))
        _check_text(value, (name,))
        form[name] = value
    return form


async def refuse_nul_in_url(request: Request) -> None:
    """A dependency of every route: a path or query parameter that cannot be stored is a 400
    naming it (the store would otherwise fail on it, as a 500). Async so that FastAPI runs it
    on the event loop, not in a worker thread (see web/deps.py). The webhook routes, the hot
    path, call ``check_url_text`` themselves instead: each dependency costs ~15 µs."""
    check_url_text(request)


def check_url_text(request: Request) -> None:
    """Raise the 400 of ``refuse_nul_in_url`` for a parameter that cannot be stored."""
    for where, params in (("path", request.path_params), ("query", request.query_params)):
        for name, value in params.items():
            if isinstance(value, str):
                _check_text(name, (where, "<parameter>"))
                _check_text(value, (where, name))


def parse_model(model: type[Model], data: object) -> Model:
    """``data`` validated as ``model``, or ``InvalidInput`` (422) listing every field problem."""
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        raise InvalidInput(issues_from_errors(exc.errors())) from None


def issues_from_errors(errors: Sequence[object], *, skip_prefix: bool = False) -> list[Issue]:
    """Pydantic / FastAPI error dicts as issues; ``skip_prefix`` drops ``body``, ``query`` …"""
    issues: list[Issue] = []
    for error in errors:
        if not isinstance(error, dict):
            continue
        loc = tuple(error.get("loc", ()))
        if skip_prefix and loc and loc[0] in ("body", "query", "path", "header", "cookie"):
            loc = loc[1:]
        message = str(error.get("msg", "is invalid"))
        issues.append(Issue(format_path(loc), message if message.endswith(".") else f"{message}."))
    return issues


def _too_large(limit: int) -> PayloadTooLarge:
    return PayloadTooLarge(
        f"The body is larger than {limit} bytes; send at most {limit} bytes per request."
    )


def _refuse_constant(name: str) -> object:
    raise ValueError(f"{name} is not a JSON number")


def _short(exc: BaseException) -> str:
    if isinstance(exc, RecursionError):
        return "nested too deeply"
    message = str(exc).split("\n")[0]
    if "integer string conversion" in message:  # CPython's int size guard
        return f"a number has more than {sys.get_int_max_str_digits()} digits"
    return message[:120]


# One decoder for every body: ``json.loads`` with options builds a new one per call, which
# costs about what the repeated-key hook adds (timeit, a 320-byte Didomi webhook: 7.1 µs
# before the hook, 8.5 µs with it and the shared decoder, 11.5 µs with a decoder per call).
_DECODER: Final = json.JSONDecoder(
    parse_constant=_refuse_constant, object_pairs_hook=_object_without_repeats
)
