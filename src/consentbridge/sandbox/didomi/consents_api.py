"""Handlers of `/v1/consents/events` and `/v1/consents/users` (auth and the organization check
happen before, in `routes`). Each write hands its changes to `notify`, which queues webhooks;
`$disable_integrations=true` on any write suppresses them (Didomi documents the flag as "do not
send to integrations configured for the organization"; the sandbox treats `webhook-http` as
one of those integrations).

`DELETE /v1/consents/events` with filters and `$include_full_tree` are not emulated;
`$generate_tcfcs` is accepted and ignored.
"""

from __future__ import annotations

from collections.abc import Callable

from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from consentbridge.sandbox.common import Stats
from consentbridge.sandbox.didomi import inputs
from consentbridge.sandbox.didomi.errors import bad_request, not_found
from consentbridge.sandbox.didomi.models import (
    DEFAULT_REGULATION,
    STATUS_CONFIRMED,
    parse_event_patch,
    parse_events,
    parse_user,
)
from consentbridge.sandbox.didomi.records import Change, UserRecord
from consentbridge.sandbox.didomi.store import PAGE_SIZE, ConsentStore

Notify = Callable[[list[Change], bool], None]

BY_ORG_USER_ID = "$by_organization_user_id"
DISABLE_INTEGRATIONS = "$disable_integrations"


class ConsentsApi:
    def __init__(self, store: ConsentStore, notify: Notify, stats: Stats) -> None:
        self._store = store
        self._notify = notify
        self._stats = stats

    def _changed(self, request: Request, changes: list[Change]) -> None:
        self._notify(changes, inputs.flag(request, DISABLE_INTEGRATIONS))

    @property
    def _organization_id(self) -> str:
        return self._store.organization_id

    # --- events -----------------------------------------------------------------------------

    async def create_events(self, request: Request) -> Response:
        """Create one event or a batch of up to 100 and merge them into their users."""
        body = await inputs.json_body(request)
        events, batch = parse_events(body, self._organization_id)
        created, changes = self._store.create_events(events, batch=batch)
        self._stats.count("didomi_events_created", len(created))
        self._changed(request, changes)
        return JSONResponse(created if batch else created[0], status_code=201)

    def _event_users(self, request: Request) -> list[UserRecord]:
        user_id = request.query_params.get("user_id")
        org_user_id = request.query_params.get("organization_user_id")
        if not user_id and not org_user_id:
            raise bad_request(
                "Provide either 'user_id' or 'organization_user_id' to query events.", "user_id"
            )
        return self._store.users_with(user_id=user_id or None, org_user_id=org_user_id or None)

    async def list_events(self, request: Request) -> Response:
        """The events of one user (confirmed and GDPR only unless `status`/`regulation` say)."""
        users = self._event_users(request)
        statuses = inputs.values(request, "status", STATUS_CONFIRMED)
        regulations = inputs.values(request, "regulation", DEFAULT_REGULATION)
        return JSONResponse(self._store.list_events(users, statuses, regulations))

    async def get_event(self, request: Request) -> Response:
        event_id = request.path_params["id"]
        record = self._store.get_event(event_id)
        user_id = request.query_params.get("user_id")
        org_user_id = request.query_params.get("organization_user_id")
        if record is not None and (user_id or org_user_id):
            owners = {
                u.id for u in self._store.users_with(user_id=user_id, org_user_id=org_user_id)
            }
            if record.user_id not in owners:
                record = None
        if record is None:
            raise not_found(f"No event found with ID '{event_id}'.")
        return JSONResponse(record.data)

    async def patch_event(self, request: Request) -> Response:
        """Change an event's `status` (approval) or `consents`; the user is recomputed."""
        patch = parse_event_patch(await inputs.json_body(request))
        event, changes = self._store.patch_event(request.path_params["id"], patch)
        self._changed(request, changes)
        return JSONResponse(event)

    async def delete_event(self, request: Request) -> Response:
        changes = self._store.delete_event(request.path_params["id"])
        self._changed(request, changes)
        return Response(status_code=204)

    # --- users ------------------------------------------------------------------------------

    async def list_users(self, request: Request) -> Response:
        """A page of users: `{"data": [...], "cursor": <next page> | null}`."""
        users, cursor = self._store.list_users(
            cursor=request.query_params.get("$cursor") or None,
            limit=inputs.limit(request, PAGE_SIZE),
            org_user_id=request.query_params.get("organization_user_id") or None,
            regulation=request.query_params.get("regulation") or DEFAULT_REGULATION,
        )
        return JSONResponse({"data": users, "cursor": cursor})

    async def create_user(self, request: Request) -> Response:
        data = parse_user(await inputs.json_body(request), self._organization_id, creating=True)
        user, changes = self._store.create_user(data)
        self._changed(request, changes)
        return JSONResponse(user, status_code=201)

    async def get_user(self, request: Request) -> Response:
        user = self._store.require_user(
            request.path_params["id"], by_organization_user_id=inputs.flag(request, BY_ORG_USER_ID)
        )
        regulation = request.query_params.get("regulation") or DEFAULT_REGULATION
        return JSONResponse(user.view(regulation))

    async def patch_user(self, request: Request) -> Response:
        data = parse_user(await inputs.json_body(request), self._organization_id, creating=False)
        user, changes = self._store.patch_user(
            request.path_params["id"],
            data,
            by_organization_user_id=inputs.flag(request, BY_ORG_USER_ID),
        )
        self._changed(request, changes)
        return JSONResponse(user)

    async def delete_user(self, request: Request) -> Response:
        user, changes = self._store.delete_user(
            request.path_params["id"], by_organization_user_id=inputs.flag(request, BY_ORG_USER_ID)
        )
        self._changed(request, changes)
        return JSONResponse(user)
