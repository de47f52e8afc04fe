"""Fixtures of the config tests: fresh copies of the sample documents, and a secret box."""

from __future__ import annotations

import copy
from typing import Any

import pytest
from cryptography.fernet import Fernet

from consentbridge.config import SecretBox

from .documents import CONTRACT, SEED


@pytest.fixture
def seed() -> dict[str, Any]:
    return copy.deepcopy(SEED)


@pytest.fixture
def contract() -> dict[str, Any]:
    return copy.deepcopy(CONTRACT)


@pytest.fixture
def box() -> SecretBox:
    return SecretBox(Fernet.generate_key())
