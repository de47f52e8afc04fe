"""RemoteExecutionContext parsing (pure): Web API values out, and for any bad input a
`ContextError` naming the field — never another exception."""

from __future__ import annotations

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
