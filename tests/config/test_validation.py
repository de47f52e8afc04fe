"""Document validation: every problem at once, by exact JSON path, in one sentence each."""

from __future__ import annotations

from typing import Any

import pytest

from consentbridge.config import InvalidIntegration, ValidationIssue, parse_integration


def issues_of(raw: object, **kwargs: Any) -> list[ValidationIssue]:
    with pytest.raises(InvalidIntegration) as caught:
        parse_integration(raw, **kwargs)
    return caught.value.errors


def paths_of(raw: object, **kwargs: Any) -> list[str]:
    return [issue.path for issue in issues_of(raw, **kwargs)]


def test_bad_document_reports_every_problem_at_its_exact_path(contract: dict[str, Any]) -> None:
    contract["upsert_mode"] = "true"
    del contract["didomi"]
    config = contract["config"]
    config["instance"] = "http://acme.crm4.dynamics.com"
    config["tenant_id"] = "not a tenant"
    config["properties"][1]["transform"] = "nope"
    config["properties"][2]["id"] = "donotbulkemail"
    config["regulations"] = []
    contract["webhook_auth"]["client_secret"] = "short"

    assert sorted(paths_of(contract)) == sorted(
        [
            "upsert_mode",
            "config.tenant_id",
            "config.instance",
            "config.properties[1].transform",
            "config.properties[2].id",
            "config.regulations",
            "didomi",
            "webhook_auth.client_secret",
        ]
    )


def test_every_message_is_one_sentence_starting_with_the_key(contract: dict[str, Any]) -> None:
    contract["config"]["instance"] = "https://acme.crm4.dynamics.com/api/data/v9.2"
    contract["config"]["match_attribute"] = "EmailAddress1"
    contract["config"]["properties"][0] = "donotbulkemail"
    contract["didomi"]["base_url"] = 42
    contract["extra"] = 1

    issues = issues_of(contract)

    assert len(issues) == 5
    for issue in issues:
        assert issue.message.endswith((".", "?")), issue
        assert "\n" not in issue.message
        key = issue.path.rsplit(".", 1)[-1]
        assert issue.message.startswith(key), issue


def test_misspelt_key_is_refused_with_the_closest_known_key(seed: dict[str, Any]) -> None:
    seed["upsert_mod"] = seed.pop("upsert_mode")
    seed["config"]["match_atribute"] = "emailaddress1"

    issues = issues_of(seed, default_id="x")

    assert sorted(issue.path for issue in issues) == ["config.match_atribute", "upsert_mod"]
    messages = {issue.path: issue.message for issue in issues}
    assert "did you mean upsert_mode?" in messages["upsert_mod"]
    assert "did you mean match_attribute?" in messages["config.match_atribute"]


def test_unknown_key_without_a_close_match_lists_the_known_keys(seed: dict[str, Any]) -> None:
    seed["config"]["properties"][0]["zzz"] = True

    [issue] = issues_of(seed, default_id="x")

    assert issue.path == "config.properties[0].zzz"
    assert "id, value, transform" in issue.message


@pytest.mark.parametrize(
    ("instance", "fragment"),
    [
        ("http://acme.crm.dynamics.com", "https"),
        ("https://acme.crm.dynamics.com/api/data/v9.2", "without a path"),
        ("https://acme.crm.dynamics.com?x=1", "query"),
        ("https://user@acme.crm.dynamics.com", "no user name"),
        ("https://acme.crm.dynamics.com:99999", "not a valid URL"),
        ("acme.crm.dynamics.com", "https"),
    ],
)
def test_instance_must_be_a_bare_https_origin(
    seed: dict[str, Any], instance: str, fragment: str
) -> None:
    seed["config"]["instance"] = instance

    [issue] = issues_of(seed, default_id="x")

    assert issue.path == "config.instance"
    assert fragment in issue.message


@pytest.mark.parametrize(
    ("path", "value"),
    [
        (("config", "authority_host"), "http://login.microsoftonline.com"),
        (("didomi", "base_url"), "http://api.didomi.io/v1"),
        (("config", "client_id"), "my-app"),
        (("config", "tenant_id"), "common tenant"),
        (("config", "match_attribute"), "Email Address"),
        (("config", "regulations"), ["GDPR"]),
        (("config", "ca_bundle"), ""),
        (("id",), "Acme D365"),
        (("id",), "a" * 64),
        (("webhook_auth", "client_id"), "didomi:hooks"),
    ],
)
def test_field_rules_refuse_bad_values(
    contract: dict[str, Any], path: tuple[str, ...], value: object
) -> None:
    holder = contract
    for key in path[:-1]:
        holder = holder[key]
    holder[path[-1]] = value

    expected = ".".join(path) + ("[0]" if isinstance(value, list) else "")
    assert paths_of(contract) == [expected]


def test_property_ids_must_be_unique_and_not_the_match_attribute(seed: dict[str, Any]) -> None:
    seed["config"]["properties"] += [
        {"id": "new_smsoptin", "value": "a"},
        {"id": "donotbulkemail", "value": "b"},
        {"id": "emailaddress1", "value": "c"},
    ]

    issues = issues_of(seed, default_id="x")

    assert [issue.path for issue in issues] == [
        "config.properties[2].id",
        "config.properties[3].id",
    ]
    assert "config.properties[0]" in issues[0].message
    assert "match_attribute" in issues[1].message


def test_cross_field_rules_are_reported_beside_field_errors(seed: dict[str, Any]) -> None:
    seed["bidirectional"] = True
    seed["config"]["instance"] = "ftp://x"
    seed["config"]["properties"].append({"id": "donotbulkemail", "value": "x"})

    assert paths_of(seed, default_id="x") == [
        "config.instance",
        "config.properties[1].id",
        "didomi",
    ]


def test_bidirectional_requires_the_didomi_block(seed: dict[str, Any]) -> None:
    seed["bidirectional"] = True

    [issue] = issues_of(seed, default_id="x")

    assert issue.path == "didomi"
    assert "api_key" in issue.message and "api_secret" in issue.message


def test_properties_must_be_a_non_empty_list_of_at_most_500(seed: dict[str, Any]) -> None:
    seed["config"]["properties"] = []
    assert paths_of(seed, default_id="x") == ["config.properties"]

    seed["config"]["properties"] = [{"id": f"c{i}", "value": "v"} for i in range(501)]
    [issue] = issues_of(seed, default_id="x")
    assert issue.path == "config.properties"
    assert "500" in issue.message


def test_strings_are_bounded_at_2048_characters(seed: dict[str, Any]) -> None:
    seed["config"]["properties"][0]["value"] = "v" * 2048
    parse_integration(seed, default_id="x")

    seed["config"]["properties"][0]["value"] = "v" * 2049
    [issue] = issues_of(seed, default_id="x")
    assert issue.path == "config.properties[0].value"
    assert "2048" in issue.message


@pytest.mark.parametrize(
    "transform",
    ["NOT", 1, [], {}, {"true": 1.5}, {"true": [1]}, {"true": {"x": 1}}],
)
def test_transform_must_be_not_or_a_value_map(seed: dict[str, Any], transform: object) -> None:
    seed["config"]["properties"][0]["transform"] = transform

    assert paths_of(seed, default_id="x") == ["config.properties[0].transform"]


def test_booleans_are_not_guessed_from_strings(seed: dict[str, Any]) -> None:
    seed["bidirectional"] = "false"

    [issue] = issues_of(seed, default_id="x")

    assert issue.path == "bidirectional"
    assert issue.message == "bidirectional must be true or false; it is a string."


@pytest.mark.parametrize("raw", [None, [], "text", 3])
def test_a_document_that_is_not_an_object_is_refused_at_the_root(raw: object) -> None:
    [issue] = issues_of(raw, default_id="x")

    assert issue.path == ""
    assert issue.message.startswith("The document is ")


def test_property_checker_hook_receives_each_well_shaped_mapping(seed: dict[str, Any]) -> None:
    seed["config"]["properties"] = [
        {"id": "a", "value": "good"},
        {"id": "b", "value": "bad_path"},
        {"id": "c", "value": "bad_transform", "transform": {"yes": 1}},
        {"id": "d", "value": 5},
    ]
    seen: list[tuple[str, object]] = []

    def checker(value: str, transform: object) -> list[str]:
        seen.append((value, transform))
        return [] if value == "good" else [f"{value} is wrong; fix it."]

    issues = issues_of(seed, default_id="x", check_property=checker)

    assert seen == [("good", None), ("bad_path", None), ("bad_transform", {"yes": 1})]
    assert [issue.as_dict() for issue in issues] == [
        {"path": "config.properties[3].value", "message": issues[0].message},
        {"path": "config.properties[1].value", "message": "bad_path is wrong; fix it."},
        {"path": "config.properties[2]", "message": "bad_transform is wrong; fix it."},
    ]


def test_errors_serialise_to_the_contract_shape(seed: dict[str, Any]) -> None:
    seed["config"]["instance"] = "http://x"

    with pytest.raises(InvalidIntegration) as caught:
        parse_integration(seed, default_id="x")

    body = caught.value.as_json()
    assert list(body) == ["errors"]
    assert [set(item) for item in body["errors"]] == [{"path", "message"}]
    assert str(caught.value).startswith("config.instance: instance must use https")


def test_placeholder_secret_is_refused_without_a_stored_integration(seed: dict[str, Any]) -> None:
    seed["config"]["client_secret"] = "***"

    [issue] = issues_of(seed, default_id="x")

    assert issue.path == "config.client_secret"
    assert "placeholder" in issue.message
