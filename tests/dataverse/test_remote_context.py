"""RemoteExecutionContext parsing (pure): Web API values out, and for any bad input a
`ContextError` naming the field — never another exception."""

from __future__ import annotations

import datetime as dt
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from consentbridge.dataverse.remote_context import ContextError, parse_context, plain_value

OPTION = "OptionSetValue:http://schemas.microsoft.com/xrm/2011/Contracts"
COLLECTION = "OptionSetValueCollection:http://schemas.microsoft.com/xrm/2011/Contracts"
ATTRIBUTES = "InputParameters.Target.Attributes"


def context() -> dict[str, Any]:
    return {
        "MessageName": "Update",
        "PrimaryEntityId": "6D81597F-0F9F-E711-8122-000D3AA2331C",
        "InitiatingUserId": "75C2DD85-E89E-E711-8122-000D3AA2331C",
        "UserId": "75c2dd85-e89e-e711-8122-000d3aa2331c",
        "OperationId": "op-1",
        "Depth": 1,
        "InputParameters": [
            {
                "key": "Target",
                "value": {
                    "__type": "Entity:http://schemas.microsoft.com/xrm/2011/Contracts",
                    "Attributes": [
                        {"key": "donotbulkemail", "value": True},
                        {
                            "key": "preferredcontactmethodcode",
                            "value": {"__type": OPTION, "Value": 3},
                        },
                        {"key": "modifiedon", "value": "/Date(1735689600000)/"},
                    ],
                },
            }
        ],
    }


def test_changed_columns_come_out_as_web_api_values() -> None:
    change = parse_context(context())
    assert change.contact_id == "6d81597f-0f9f-e711-8122-000d3aa2331c"
    assert change.initiating_user_id == "75c2dd85-e89e-e711-8122-000d3aa2331c"
    assert change.changed["donotbulkemail"] is True
    assert change.changed["preferredcontactmethodcode"] == 3
    assert change.changed["modifiedon"] == "2025-01-01T00:00:00Z"
    assert change.modified_on is not None and change.modified_on.year == 2025


def test_option_set_collections_become_comma_strings() -> None:
    value = {
        "__type": "OptionSetValueCollection:http://schemas.microsoft.com/xrm/2011/Contracts",
        "Values": [{"__type": OPTION, "Value": 1}, {"__type": OPTION, "Value": 3}],
    }
    assert plain_value(value) == "1,3"
    assert plain_value([{"__type": OPTION, "Value": 2}]) == "2"


def test_escaped_date_form_is_understood() -> None:
    assert plain_value("\\/Date(0)\\/") == "1970-01-01T00:00:00Z"


@pytest.mark.parametrize("body", [[], {"PrimaryEntityId": "x"}, {"MessageName": "Update"}])
def test_unusable_bodies_raise_context_error(body: object) -> None:
    with pytest.raises(ContextError):
        parse_context(body)


def test_post_image_attributes_are_parsed_like_the_target() -> None:
    body = context()
    body["PostEntityImages"] = [
        {
            "key": "AsynchronousStepPrimaryName",
            "value": {
                "Attributes": [
                    {"key": "emailaddress1", "value": "ada@example.com"},
                    {"key": "preferredcontactmethodcode", "value": {"__type": OPTION, "Value": 2}},
                ]
            },
        }
    ]
    change = parse_context(body)
    assert change.post_image == {
        "emailaddress1": "ada@example.com",
        "preferredcontactmethodcode": 2,
    }


def test_a_context_without_operation_or_request_id_has_no_operation_id() -> None:
    # The contact id must not stand in: it would make every later change a duplicate.
    body = context()
    del body["OperationId"]
    assert parse_context(body).operation_id == ""


def _with_attribute(name: str, value: object) -> dict[str, Any]:
    body: dict[str, Any] = context()
    body["InputParameters"][0]["value"]["Attributes"].append({"key": name, "value": value})
    return body


@pytest.mark.parametrize(
    ("body", "path"),
    [
        ({**context(), "Depth": "deep"}, "Depth"),
        ({**context(), "Depth": {"a": 1}}, "Depth"),
        ({**context(), "Depth": True}, "Depth"),
        ({**context(), "Depth": 1.5}, "Depth"),
        ({**context(), "Depth": -2}, "Depth"),
        ({**context(), "PrimaryEntityId": "contact-1"}, "PrimaryEntityId"),
        ({**context(), "PrimaryEntityId": ""}, "PrimaryEntityId"),
        ({**context(), "MessageName": ""}, "MessageName"),
        ({**context(), "OperationId": 7}, "OperationId"),
        ({**context(), "InitiatingUserId": ["x"]}, "InitiatingUserId"),
        ({**context(), "CorrelationId": {}}, "CorrelationId"),
        ({**context(), "PostEntityImages": "x"}, "PostEntityImages"),
        (_with_attribute("modifiedon", "soonZ"), f"{ATTRIBUTES}.modifiedon"),
        (_with_attribute("modifiedon", 1735689600000), f"{ATTRIBUTES}.modifiedon"),
        (_with_attribute("modifiedon", "/Date(99999999999999999)/"), f"{ATTRIBUTES}.modifiedon"),
        (_with_attribute("birthdate", "/Date(-99999999999999999)/"), f"{ATTRIBUTES}.birthdate"),
        (
            _with_attribute("new_days", {"__type": COLLECTION, "Values": 5}),
            f"{ATTRIBUTES}.new_days",
        ),
        (
            _with_attribute("new_days", {"__type": COLLECTION, "Values": [{"Value": "1"}]}),
            f"{ATTRIBUTES}.new_days",
        ),
        (_with_attribute("new_days", [1, "2"]), f"{ATTRIBUTES}.new_days"),
        (_with_attribute("new_days", [True]), f"{ATTRIBUTES}.new_days"),
        (
            _with_attribute("preferredcontactmethodcode", {"__type": OPTION, "Value": "3"}),
            f"{ATTRIBUTES}.preferredcontactmethodcode",
        ),
        (
            _with_attribute("creditlimit", {"__type": "Money:x", "Value": "lots"}),
            f"{ATTRIBUTES}.creditlimit",
        ),
        (
            _with_attribute("parentcustomerid", {"__type": "EntityReference:x", "Id": 5}),
            f"{ATTRIBUTES}.parentcustomerid",
        ),
    ],
)
def test_malformed_values_raise_context_error_naming_the_field(
    body: dict[str, Any], path: str
) -> None:
    with pytest.raises(ContextError) as caught:
        parse_context(body)
    assert caught.value.path == path
    assert path.rsplit(".", 1)[-1] in str(caught.value)


def test_a_modifiedon_from_the_post_image_is_named_there() -> None:
    body: dict[str, Any] = context()
    body["InputParameters"][0]["value"]["Attributes"].pop()  # no modifiedon in the Target
    body["PostEntityImages"] = [
        {"key": "PostImage", "value": {"Attributes": [{"key": "modifiedon", "value": "later"}]}}
    ]
    with pytest.raises(ContextError) as caught:
        parse_context(body)
    assert caught.value.path == "PostEntityImages.Attributes.modifiedon"


def test_lenient_where_dataverse_is() -> None:
    body: dict[str, Any] = {
        **context(),
        "PrimaryEntityId": "{6D81597F-0F9F-E711-8122-000D3AA2331C}",
        "Depth": None,
        "PostEntityImages": None,
    }
    body["InputParameters"][0]["value"]["Attributes"] += [
        {"key": "new_days", "value": [{"__type": OPTION, "Value": 1}, {"Value": 4}]},
        {"key": "new_other", "value": {"__type": "EntityCollection:x", "Entities": []}},
        {"key": "new_none", "value": {"__type": COLLECTION, "Values": None}},
    ]
    change = parse_context(body)
    assert change.contact_id == "6d81597f-0f9f-e711-8122-000d3aa2331c"
    assert change.depth == 1 and change.post_image == {}
    assert change.changed["new_days"] == "1,4"
    assert change.changed["new_other"] == {"__type": "EntityCollection:x", "Entities": []}
    assert change.changed["new_none"] is None
    iso = {**context(), "InputParameters": []}
    assert parse_context(iso).modified_on is None


JSON = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=30),
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=12), children, max_size=4)
    ),
    max_leaves=20,
)
FIELDS = st.sampled_from(
    [
        "MessageName",
        "PrimaryEntityId",
        "Depth",
        "OperationId",
        "RequestId",
        "UserId",
        "InitiatingUserId",
        "CorrelationId",
        "InputParameters",
        "PostEntityImages",
    ]
)
VALUES = JSON | st.sampled_from(
    ["/Date(1)/", "/Date(99999999999999999999)/", "\\/Date(-5+0100)\\/", "2025-01-01T00:00:00Z"]
)


@settings(max_examples=300, deadline=None)
@given(
    fields=st.dictionaries(FIELDS, VALUES, max_size=4),
    attributes=st.lists(
        st.tuples(
            st.sampled_from(["modifiedon", "donotbulkemail", "emailaddress1", "new_days"]),
            VALUES
            | st.fixed_dictionaries(
                {"__type": st.sampled_from([OPTION, COLLECTION, "Money:x", "EntityReference:x"])},
                optional={"Value": VALUES, "Values": VALUES, "Id": VALUES},
            ),
        ),
        max_size=4,
    ),
)
def test_any_json_either_parses_or_raises_context_error(
    fields: dict[str, Any], attributes: list[tuple[str, Any]]
) -> None:
    body: dict[str, Any] = context()
    body["InputParameters"][0]["value"]["Attributes"] = [
        {"key": k, "value": v} for k, v in attributes
    ]
    body.update(fields)
    try:
        change = parse_context(body)
    except ContextError as exc:
        assert exc.path and str(exc)
        return
    assert isinstance(change.depth, int) and change.depth >= 1
    assert change.modified_on is None or change.modified_on.tzinfo is not None


# --- realistic payloads ---------------------------------------------------------------------
# Shaped like Microsoft's documented sample (MS Learn use-webhooks: an async post-operation
# Update of contact) and like contexts captured from real environments: a form's Create carries
# every default the form posted, platform columns, typed values of every kind, a ParentContext
# (stage 30) with its own Target, and members this parser has no use for.

CONTRACTS = "http://schemas.microsoft.com/xrm/2011/Contracts"
CONTACT_ID = "6d81597f-0f9f-e711-8122-000d3aa2331c"
USER_ID = "75c2dd85-e89e-e711-8122-000d3aa2331c"


def _pairs(values: dict[str, Any]) -> list[dict[str, Any]]:
    return [{"key": k, "value": v} for k, v in values.items()]


def _ref(logical_name: str, row_id: str) -> dict[str, Any]:
    return {
        "__type": f"EntityReference:{CONTRACTS}",
        "Id": row_id,
        "KeyAttributes": [],
        "LogicalName": logical_name,
        "Name": None,
        "RowVersion": None,
    }


def _entity(attributes: dict[str, Any], typed: bool = True) -> dict[str, Any]:
    entity: dict[str, Any] = {"__type": f"Entity:{CONTRACTS}"} if typed else {}
    entity.update(
        {
            "Attributes": _pairs(attributes),
            "EntityState": None,
            "FormattedValues": [],
            "Id": CONTACT_ID,
            "KeyAttributes": [],
            "LogicalName": "contact",
            "RelatedEntities": [],
            "RowVersion": None,
        }
    )
    return entity


def _option(value: int) -> dict[str, Any]:
    return {"__type": f"OptionSetValue:{CONTRACTS}", "Value": value}


def documented_update() -> dict[str, Any]:
    """Microsoft's sample body of an async Update step, with its ParentContext (stage 30)."""
    target = _entity(
        {
            "firstname": "James",
            "contactid": CONTACT_ID,
            "fullname": "James Glynn (sample)",
            "modifiedon": "/Date(1506384247000)/",
            "modifiedby": _ref("systemuser", USER_ID),
            "modifiedonbehalfby": None,
        }
    )
    parent: dict[str, Any] = {
        "BusinessUnitId": "e2b9dd85-e89e-e711-8122-000d3aa2331c",
        "CorrelationId": "b374239d-4233-41a9-8b17-a86cb4f737b5",
        "Depth": 1,
        "InitiatingUserId": USER_ID,
        "InputParameters": [
            {"key": "Target", "value": _entity({"firstname": "James", "contactid": CONTACT_ID})},
            {"key": "SuppressDuplicateDetection", "value": False},
        ],
        "MessageName": "Update",
        "Mode": 1,
        "OperationCreatedOn": "/Date(1506409448000-0700)/",
        "OperationId": "4af10637-4ea2-e711-8122-000d3aa2331c",
        "ParentContext": None,
        "PostEntityImages": [],
        "PreEntityImages": [],
        "PrimaryEntityId": CONTACT_ID,
        "PrimaryEntityName": "contact",
        "RequestId": None,
        "SharedVariables": [
            {
                "key": "ChangedEntityTypes",
                "value": [
                    {
                        "__type": "KeyValuePairOfstringstring:#System.Collections.Generic",
                        "key": "contact",
                        "value": "Update",
                    }
                ],
            }
        ],
        "Stage": 30,
        "UserId": USER_ID,
    }
    return {
        "BusinessUnitId": "e2b9dd85-e89e-e711-8122-000d3aa2331c",
        "CorrelationId": "b374239d-4233-41a9-8b17-a86cb4f737b5",
        "Depth": 1,
        "InitiatingUserAgent": "Mozilla/5.0 (Windows NT 10.0; Win64; x64) Edg/140.0.0.0",
        "InitiatingUserId": USER_ID,
        "InputParameters": [{"key": "Target", "value": target}],
        "IsExecutingOffline": False,
        "IsInTransaction": False,
        "IsOfflinePlayback": False,
        "IsolationMode": 1,
        "MessageName": "Update",
        "Mode": 1,
        "OperationCreatedOn": "/Date(1506409448000-0700)/",
        "OperationId": "4af10637-4ea2-e711-8122-000d3aa2331c",
        "OrganizationId": "4ef5b371-e89e-e711-8122-000d3aa2331c",
        "OrganizationName": "OrgName",
        "OutputParameters": [],
        "OwningExtension": {
            "Id": "75417616-4ea2-e711-8122-000d3aa2331c",
            "KeyAttributes": [],
            "LogicalName": "sdkmessageprocessingstep",
            "Name": None,
            "RowVersion": None,
        },
        "ParentContext": parent,
        "PostEntityImages": [
            {
                "key": "AsynchronousStepPrimaryName",
                "value": _entity(
                    {"fullname": "James Glynn (sample)", "contactid": CONTACT_ID}, typed=False
                ),
            }
        ],
        "PreEntityImages": [],
        "PrimaryEntityId": CONTACT_ID,
        "PrimaryEntityName": "contact",
        "RequestId": None,
        "SecondaryEntityName": "none",
        "SharedVariables": [],
        "Stage": 40,
        "UserId": USER_ID,
    }


def test_microsofts_documented_update_sample_is_read() -> None:
    change = parse_context(documented_update())
    assert change.message == "Update" and change.contact_id == CONTACT_ID
    assert change.changed["firstname"] == "James"
    assert change.changed["modifiedby"] == USER_ID
    assert change.changed["modifiedonbehalfby"] is None
    assert change.modified_on == dt.datetime(2017, 9, 26, 0, 4, 7, tzinfo=dt.UTC)
    assert change.post_image == {"fullname": "James Glynn (sample)", "contactid": CONTACT_ID}
    assert change.initiating_user_id == USER_ID
    assert change.correlation_id == "b374239d-4233-41a9-8b17-a86cb4f737b5"
    # The parent's Target (what the request posted) is not the change: the context's is.
    assert "fullname" in change.changed


@pytest.mark.parametrize(
    ("text", "iso"),
    [
        ("/Date(1700000000000)/", "2023-11-14T22:13:20Z"),
        ("\\/Date(1700000000000)\\/", "2023-11-14T22:13:20Z"),
        # The offset only says which zone the writer was in: the milliseconds are UTC.
        ("/Date(1700000000000+0100)/", "2023-11-14T22:13:20Z"),
        ("\\/Date(1700000000000-0700)\\/", "2023-11-14T22:13:20Z"),
        ("/Date(-86400000+0000)/", "1969-12-31T00:00:00Z"),
    ],
)
def test_wcf_dates_with_and_without_an_offset(text: str, iso: str) -> None:
    assert plain_value(text) == iso
    body = _with_attribute("modifiedon", text)
    body["InputParameters"][0]["value"]["Attributes"] = [
        a for a in body["InputParameters"][0]["value"]["Attributes"] if a["value"] == text
    ]
    modified = parse_context(body).modified_on
    assert modified is not None and modified.isoformat().replace("+00:00", "Z") == iso


def test_a_form_create_with_every_kind_of_value_is_read() -> None:
    body = documented_update()
    body["MessageName"] = "Create"
    body["InputParameters"] = [
        {
            "key": "Target",
            "value": _entity(
                {
                    "lastname": "Glynn",
                    "emailaddress1": "james@example.com",
                    "donotemail": False,
                    "followemail": True,
                    "preferredcontactmethodcode": _option(1),
                    "statecode": _option(0),
                    "statuscode": _option(1),
                    "creditlimit": {"__type": f"Money:{CONTRACTS}", "Value": 1500.5},
                    "transactioncurrencyid": _ref("transactioncurrency", USER_ID),
                    "owningbusinessunit": _ref("businessunit", USER_ID),
                    "new_channels": [_option(2), _option(3)],
                    "new_topics": {
                        "__type": f"OptionSetValueCollection:{CONTRACTS}",
                        "Values": [_option(7)],
                    },
                    "new_days": [1, 4],
                    "birthdate": "/Date(631152000000+0100)/",
                    "createdon": "\\/Date(1697398445000)\\/",
                    "createdby": _ref("systemuser", USER_ID),
                    "modifiedon": "/Date(1697398445000)/",
                    # A party list (activities) is an entity collection, not a multi-select.
                    "new_parties": [_entity({"partyid": _ref("contact", CONTACT_ID)})],
                }
            ),
        },
        {"key": "x-ms-app-name", "value": "contoso_sales"},
        {"key": "SuppressDuplicateDetection", "value": False},
    ]
    body["OutputParameters"] = [{"key": "id", "value": CONTACT_ID}]
    body["SharedVariables"] = [{"key": "DefaultsAddedFlag", "value": True}]
    body["Unknown"] = None
    change = parse_context(body)
    values = change.changed
    assert change.message == "Create"
    assert values["donotemail"] is False and values["followemail"] is True
    assert values["preferredcontactmethodcode"] == 1 and values["statecode"] == 0
    assert values["creditlimit"] == 1500.5
    assert values["transactioncurrencyid"] == USER_ID
    assert values["owningbusinessunit"] == USER_ID
    assert values["new_channels"] == "2,3" and values["new_topics"] == "7"
    assert values["new_days"] == "1,4"
    assert values["birthdate"] == "1990-01-01T00:00:00Z"
    assert values["createdon"] == "2023-10-15T19:34:05Z"
    assert isinstance(values["new_parties"], list)
    assert change.modified_on == dt.datetime(2023, 10, 15, 19, 34, 5, tzinfo=dt.UTC)


def test_pre_and_post_images_are_both_read() -> None:
    body = documented_update()
    body["PreEntityImages"] = [
        {
            "key": "PreImage",
            "value": _entity(
                {
                    "emailaddress1": "old@example.com",
                    "donotemail": False,
                    "preferredcontactmethodcode": _option(1),
                },
                typed=False,
            ),
        }
    ]
    body["PostEntityImages"].append(
        {
            "key": "PostImage",
            "value": _entity({"emailaddress1": "new@example.com", "donotemail": True}, typed=False),
        }
    )
    change = parse_context(body)
    assert change.pre_image == {
        "emailaddress1": "old@example.com",
        "donotemail": False,
        "preferredcontactmethodcode": 1,
    }
    assert change.post_image["emailaddress1"] == "new@example.com"
    assert change.post_image["fullname"] == "James Glynn (sample)"


def test_a_malformed_pre_image_names_its_field() -> None:
    body = documented_update()
    body["PreEntityImages"] = "x"
    with pytest.raises(ContextError) as caught:
        parse_context(body)
    assert caught.value.path == "PreEntityImages"


def test_a_nested_parent_context_supplies_what_the_context_leaves_out() -> None:
    body = documented_update()
    for name in ("InitiatingUserId", "UserId", "CorrelationId"):
        del body[name]
    grandparent = {**body["ParentContext"], "InitiatingUserId": OUR_ID, "CorrelationId": "c-0"}
    body["ParentContext"] = {
        **body["ParentContext"],
        "InitiatingUserId": None,
        "UserId": USER_ID.upper(),
        "CorrelationId": None,
        "ParentContext": grandparent,
    }
    change = parse_context(body)
    assert change.initiating_user_id == OUR_ID
    assert change.user_id == USER_ID
    assert change.correlation_id == "c-0"


OUR_ID = "aaaaaaaa-0000-4000-8000-000000000001"


@pytest.mark.parametrize(
    "parent",
    ["x", 5, [], {"Depth": "deep", "InitiatingUserId": 7, "InputParameters": "nope"}],
)
def test_a_parent_context_this_parser_cannot_use_is_ignored(parent: object) -> None:
    body = documented_update()
    body["ParentContext"] = parent
    change = parse_context(body)
    assert change.initiating_user_id == USER_ID and change.changed["firstname"] == "James"


def test_a_zero_operation_id_is_no_operation_id() -> None:
    # Synchronous contexts may carry an empty (all-zero) OperationId: as a dedupe key it would
    # make every later change of the contact a "duplicate".
    body = documented_update()
    body["OperationId"] = "00000000-0000-0000-0000-000000000000"
    body["RequestId"] = "7d6cd2a4-0e2b-4a8a-9d3c-0f0f0f0f0f0f"
    assert parse_context(body).operation_id == "7d6cd2a4-0e2b-4a8a-9d3c-0f0f0f0f0f0f"
    body["RequestId"] = None
    assert parse_context(body).operation_id == ""


def test_key_value_pairs_are_read_in_either_case() -> None:
    body = documented_update()
    body["InputParameters"] = [
        {
            "Key": "Target",
            "Value": {
                "Attributes": [
                    {"Key": "donotemail", "Value": True},
                    {"Key": "modifiedon", "Value": "/Date(1735689600000)/"},
                ]
            },
        }
    ]
    change = parse_context(body)
    assert change.changed["donotemail"] is True
    assert change.modified_on == dt.datetime(2025, 1, 1, tzinfo=dt.UTC)
