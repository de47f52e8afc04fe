"""RemoteExecutionContext parsing (pure)."""

from __future__ import annotations

import pytest

from consentbridge.dataverse.remote_context import ContextError, parse_context, plain_value

OPTION = "OptionSetValue:http://schemas.microsoft.com/xrm/2011/Contracts"


def context() -> dict[str, object]:
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
