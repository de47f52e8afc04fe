"""Splitting resource paths into segments, quotes and parentheses respected."""

from __future__ import annotations

import pytest

from consentbridge.sandbox.dataverse.errors import DataverseError
from consentbridge.sandbox.dataverse.router_paths import Segment, split_path


def test_segments_keep_quoted_slashes_and_parentheses() -> None:
    assert split_path("contacts(emailaddress1='a/b(c)''d')/$count") == [
        Segment("contacts", "emailaddress1='a/b(c)''d'"),
        Segment("$count", None),
    ]
    assert split_path(
        "EntityDefinitions(LogicalName='contact')/Attributes/Microsoft.Dynamics.CRM.X"
    ) == [
        Segment("EntityDefinitions", "LogicalName='contact'"),
        Segment("Attributes", None),
        Segment("Microsoft.Dynamics.CRM.X", None),
    ]
    assert split_path("") == [] and split_path("/") == []
    assert split_path("WhoAmI()") == [Segment("WhoAmI", "")]


@pytest.mark.parametrize("path", ["contacts('open", "contacts(a", "contacts//x", "(x)", "a(b)c"])
def test_malformed_paths_are_400(path: str) -> None:
    with pytest.raises(DataverseError) as raised:
        split_path(path)
    assert raised.value.status == 400
