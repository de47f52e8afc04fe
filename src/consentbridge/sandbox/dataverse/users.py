"""The `systemusers` surface the sandbox needs: the bound function
`systemusers(<id>)/Microsoft.Dynamics.CRM.RetrieveUserPrivileges()`, which lists the
privileges an application user holds through its security roles.

A caller may always read its own privileges; reading another user's needs `prvReadUser`, as in
Dataverse. Every privilege is reported at `Global` depth because sandbox roles only grant that.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable

from consentbridge.sandbox.common import App
from consentbridge.sandbox.dataverse.api import ApiRequest, ApiResponse, json_response
from consentbridge.sandbox.dataverse.errors import (
    bad_query,
    no_http_resource,
    not_found_by_id,
)
from consentbridge.sandbox.dataverse.values import parse_guid

ENTITY_SET = "systemusers"
RETRIEVE_USER_PRIVILEGES = "Microsoft.Dynamics.CRM.RetrieveUserPrivileges"
_PRIVILEGE_NAMESPACE = uuid.UUID("6f1d3f0c-8a4e-4c2b-9a55-7d1e0c3b2a10")


def privilege_id(name: str) -> str:
    """A stable id per privilege name, as Dataverse's privilege ids are stable per org."""
    return str(uuid.uuid5(_PRIVILEGE_NAMESPACE, name))


def retrieve_user_privileges(
    req: ApiRequest,
    user_id: str,
    find_user: Callable[[str], App | None],
    business_unit_id: str,
) -> ApiResponse:
    if req.method != "GET":
        raise no_http_resource(req.ctx.service_root + req.path)
    wanted = parse_guid(user_id)
    if wanted is None:
        raise bad_query(f"Unrecognized 'Edm.Guid' literal '{user_id}' for systemuserid.")
    user = find_user(wanted)
    if user is None:
        raise not_found_by_id("systemuser", wanted)
    if user.systemuserid != req.ctx.caller.systemuserid:
        req.ctx.caller.require("prvReadUser", "systemuser", 8)
    return json_response(
        {
            "@odata.context": req.ctx.metadata_url(
                "Microsoft.Dynamics.CRM.RetrieveUserPrivilegesResponse"
            ),
            "RolePrivileges": [
                {
                    "Depth": "Global",
                    "PrivilegeId": privilege_id(name),
                    "BusinessUnitId": business_unit_id,
                    "PrivilegeName": name,
                }
                for name in sorted(user.privileges())
            ],
        }
    )
