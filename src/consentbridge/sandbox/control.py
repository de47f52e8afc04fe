"""The sandbox control API under `/_sandbox/` (no auth, loopback only): stats, reset, faults,
limits, principals, custom columns, per-row write history and the Dataverse emulator's options
(`enforce_application_required`, webhook timeout and lanes, key activation delay)."""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable
from typing import Any, Protocol

from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from consentbridge.sandbox.common import ROLES, Faults, Limits, is_loopback, new_app
from consentbridge.sandbox.state import SandboxState


class DataverseControl(Protocol):
    def reset(self) -> None: ...
    def add_column(self, spec: dict[str, Any]) -> dict[str, Any]: ...
    def history(self, table: str, row_id: str) -> list[dict[str, Any]] | None: ...
    def configure(self, **options: Any) -> None: ...
    def option_values(self) -> dict[str, Any]: ...


class DidomiControl(Protocol):
    def reset(self) -> None: ...


Handler = Callable[[Request], Awaitable[Response]]


def _bad(message: str, status: int = 400) -> JSONResponse:
    return JSONResponse({"error": message}, status_code=status)


async def _json_object(request: Request) -> dict[str, Any] | JSONResponse:
    try:
        body = json.loads(await request.body() or b"{}")
    except (json.JSONDecodeError, UnicodeDecodeError):
        return _bad("The body is not valid JSON; send a JSON object.")
    if not isinstance(body, dict):
        return _bad("The body must be a JSON object.")
    return body


def _update_numbers(target: Limits | Faults, body: dict[str, Any]) -> str | None:
    """Apply numeric fields from body to a settings object; return an error or None."""
    fields = target.public()
    for key, value in body.items():
        if key not in fields:
            return f"Unknown setting '{key}'; known settings are: {', '.join(sorted(fields))}."
        if isinstance(value, bool) or not isinstance(value, int | float) or value < 0:
            return f"Setting '{key}' must be a non-negative number."
        if (key.startswith("rate_") or key.endswith("_rate")) and value > 1:
            return f"Setting '{key}' is a probability between 0 and 1."
    for key, value in body.items():
        current = getattr(target, key)
        setattr(target, key, type(current)(value))
    return None


def _loopback_only(handler: Handler) -> Handler:
    async def guarded(request: Request) -> Response:
        if not is_loopback(request):
            return _bad("The sandbox control API answers loopback clients only.", 403)
        return await handler(request)

    return guarded


def routes(state: SandboxState, dataverse: DataverseControl, didomi: DidomiControl) -> list[Route]:
    async def stats(request: Request) -> Response:
        return JSONResponse(state.stats.public())

    async def reset(request: Request) -> Response:
        state.reset()
        dataverse.reset()
        didomi.reset()
        return JSONResponse({"reset": True})

    async def settings(request: Request, target: Limits | Faults) -> Response:
        if request.method == "GET":
            return JSONResponse(target.public())
        body = await _json_object(request)
        if isinstance(body, JSONResponse):
            return body
        problem = _update_numbers(target, body)
        if problem:
            return _bad(problem)
        return JSONResponse(target.public())

    async def faults(request: Request) -> Response:
        return await settings(request, state.faults)

    async def limits(request: Request) -> Response:
        return await settings(request, state.limits)

    async def principals(request: Request) -> Response:
        if request.method == "GET":
            return JSONResponse(state.principals.public())
        body = await _json_object(request)
        if isinstance(body, JSONResponse):
            return body
        name, roles = body.get("name"), body.get("roles", [])
        if not isinstance(name, str) or not name:
            return _bad("Field 'name' is required: give the app user a name.")
        problem = _check_roles(roles)
        if problem:
            return _bad(problem)
        client_id = body.get("client_id")
        if client_id is not None and state.principals.by_client_id(str(client_id)):
            return _bad(f"An app with client_id '{client_id}' exists; choose another id.", 409)
        app = new_app(name, roles, client_id=client_id, client_secret=body.get("client_secret"))
        state.principals.apps.append(app)
        state.save_principals()
        return JSONResponse(app.public(), status_code=201)

    async def principal(request: Request) -> Response:
        app = state.principals.by_client_id(request.path_params["client_id"])
        if app is None:
            return _bad(
                "No app user has that client_id; list them with GET /_sandbox/principals.", 404
            )
        if request.method == "DELETE":
            if app is state.principals.apps[0]:
                return _bad("The default app cannot be deleted; change its roles instead.")
            state.principals.apps.remove(app)
            state.save_principals()
            return Response(status_code=204)
        body = await _json_object(request)
        if isinstance(body, JSONResponse):
            return body
        roles = body.get("roles")
        problem = _check_roles(roles)
        if problem:
            return _bad(problem)
        assert isinstance(roles, list)
        app.roles = [str(r) for r in roles]
        state.save_principals()
        return JSONResponse(app.public())

    async def columns(request: Request) -> Response:
        body = await _json_object(request)
        if isinstance(body, JSONResponse):
            return body
        try:
            created = dataverse.add_column(body)
        except ValueError as exc:
            return _bad(str(exc))
        return JSONResponse(created, status_code=201)

    async def history(request: Request) -> Response:
        table = request.query_params.get("table", "contact")
        row_id = request.query_params.get("id")
        if not row_id:
            return _bad("Query parameter 'id' is required: pass the row's GUID.")
        writes = dataverse.history(table, row_id)
        if writes is None:
            return _bad(f"No {table} row with id {row_id} was ever written.", 404)
        return JSONResponse({"table": table, "id": row_id, "writes": writes})

    async def options(request: Request) -> Response:
        if request.method == "POST":
            body = await _json_object(request)
            if isinstance(body, JSONResponse):
                return body
            try:
                dataverse.configure(**body)
            except ValueError as exc:
                return _bad(str(exc))
        return JSONResponse(dataverse.option_values())

    table: list[tuple[str, Handler, list[str]]] = [
        ("/_sandbox/stats", stats, ["GET"]),
        ("/_sandbox/reset", reset, ["POST"]),
        ("/_sandbox/faults", faults, ["GET", "POST"]),
        ("/_sandbox/limits", limits, ["GET", "POST"]),
        ("/_sandbox/principals", principals, ["GET", "POST"]),
        ("/_sandbox/principals/{client_id}", principal, ["PATCH", "DELETE"]),
        ("/_sandbox/columns", columns, ["POST"]),
        ("/_sandbox/history", history, ["GET"]),
        ("/_sandbox/options", options, ["GET", "POST"]),
    ]
    return [
        Route(path, _loopback_only(handler), methods=methods) for path, handler, methods in table
    ]


def _check_roles(roles: object) -> str | None:
    if not isinstance(roles, list) or not all(isinstance(r, str) for r in roles):
        return "Field 'roles' must be a list of role names."
    unknown = [r for r in roles if r not in ROLES]
    if unknown:
        return f"Unknown role '{unknown[0]}'; the sandbox knows {', '.join(ROLES)}."
    return None
