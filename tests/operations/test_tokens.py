"""operations.tokens: webhook tokens are bound to one integration, one secret and one key."""

from __future__ import annotations

import base64
import time
from collections.abc import AsyncIterator
from pathlib import Path

import jwt
import pytest

from consentbridge.config import Settings
from consentbridge.context import AppContext
from consentbridge.operations import integrations, tokens
from consentbridge.operations.errors import NotFound, Unauthorized
from tests.web.support import WEBHOOK_CLIENT, WEBHOOK_SECRET, document, make_settings

pytestmark = pytest.mark.security

GLOBEX_SECRET = "globex-secret-Rr4Tt6Uu8"


@pytest.fixture
def settings(sqlite_url: str, tmp_path: Path) -> Settings:
    return make_settings(sqlite_url, tmp_path)


@pytest.fixture
async def ctx(settings: Settings) -> AsyncIterator[AppContext]:
    context = await AppContext.open(settings)
    await integrations.apply(context, document("acme-d365"))
    await integrations.apply(
        context,
        document("globex-d365", webhook_client="globex-hooks", webhook_secret=GLOBEX_SECRET),
    )
    yield context
    await context.aclose()


async def test_a_token_verifies_at_its_own_integration(ctx: AppContext) -> None:
    token, expires_in = await tokens.issue_token(ctx, WEBHOOK_CLIENT, WEBHOOK_SECRET)
    assert expires_in == tokens.TOKEN_TTL_S
    await tokens.verify_token(ctx, "acme-d365", token)
    claims = jwt.decode(token, options={"verify_signature": False})
    assert (claims["sub"], claims["cid"]) == ("acme-d365", WEBHOOK_CLIENT)
    assert claims["exp"] - claims["iat"] == tokens.TOKEN_TTL_S and claims["jti"]


async def test_each_token_is_unique(ctx: AppContext) -> None:
    first, _ = await tokens.issue_token(ctx, WEBHOOK_CLIENT, WEBHOOK_SECRET)
    second, _ = await tokens.issue_token(ctx, WEBHOOK_CLIENT, WEBHOOK_SECRET)
    assert first != second


@pytest.mark.parametrize(
    ("client_id", "secret"),
    [
        (WEBHOOK_CLIENT, WEBHOOK_SECRET + "x"),
        (WEBHOOK_CLIENT, ""),
        ("ghost", WEBHOOK_SECRET),
        ("globex-hooks", WEBHOOK_SECRET),  # another integration's client with this secret
    ],
)
async def test_wrong_credentials_get_no_token(ctx: AppContext, client_id: str, secret: str) -> None:
    with pytest.raises(Unauthorized):
        await tokens.issue_token(ctx, client_id, secret)


async def test_a_token_of_another_integration_is_refused(ctx: AppContext) -> None:
    token, _ = await tokens.issue_token(ctx, WEBHOOK_CLIENT, WEBHOOK_SECRET)
    with pytest.raises(Unauthorized):
        await tokens.verify_token(ctx, "globex-d365", token)


async def test_a_token_at_a_missing_integration_is_not_found(ctx: AppContext) -> None:
    token, _ = await tokens.issue_token(ctx, WEBHOOK_CLIENT, WEBHOOK_SECRET)
    with pytest.raises(NotFound):
        await tokens.verify_token(ctx, "nobody-d365", token)
    with pytest.raises(NotFound):
        await tokens.verify_token(ctx, "nobody-d365", None)


async def test_changing_the_webhook_secret_revokes_its_tokens(ctx: AppContext) -> None:
    token, _ = await tokens.issue_token(ctx, WEBHOOK_CLIENT, WEBHOOK_SECRET)
    await integrations.apply(ctx, document("acme-d365", webhook_secret="a-brand-new-secret-123"))
    with pytest.raises(Unauthorized):
        await tokens.verify_token(ctx, "acme-d365", token)
    fresh, _ = await tokens.issue_token(ctx, WEBHOOK_CLIENT, "a-brand-new-secret-123")
    await tokens.verify_token(ctx, "acme-d365", fresh)


async def test_reapplying_the_same_secret_keeps_tokens_valid(ctx: AppContext) -> None:
    token, _ = await tokens.issue_token(ctx, WEBHOOK_CLIENT, WEBHOOK_SECRET)
    shown = integrations.redacted(await integrations.get(ctx, "acme-d365"))
    await integrations.apply(ctx, shown)  # "***" keeps the secret; re-encrypted all the same
    await tokens.verify_token(ctx, "acme-d365", token)


async def test_an_expired_token_is_refused(
    ctx: AppContext, monkeypatch: pytest.MonkeyPatch
) -> None:
    now = time.time()
    monkeypatch.setattr(time, "time", lambda: now - tokens.TOKEN_TTL_S - 60)
    token, _ = await tokens.issue_token(ctx, WEBHOOK_CLIENT, WEBHOOK_SECRET)
    monkeypatch.undo()
    with pytest.raises(Unauthorized) as raised:
        await tokens.verify_token(ctx, "acme-d365", token)
    assert "expired" in raised.value.message


@pytest.mark.parametrize("bearer", [None, "", "abc", "a.b.c"])
async def test_a_missing_or_malformed_token_is_refused(ctx: AppContext, bearer: str | None) -> None:
    with pytest.raises(Unauthorized):
        await tokens.verify_token(ctx, "acme-d365", bearer)


async def test_unsigned_and_raw_key_tokens_are_refused(ctx: AppContext, settings: Settings) -> None:
    token, _ = await tokens.issue_token(ctx, WEBHOOK_CLIENT, WEBHOOK_SECRET)
    claims = jwt.decode(token, options={"verify_signature": False})
    unsigned = jwt.encode(claims, key="", algorithm="none")
    assert settings.secret_key is not None
    raw_key = base64.urlsafe_b64decode(settings.secret_key.get_secret_value())
    with_raw_key = jwt.encode(claims, raw_key, algorithm="HS256")
    for forged in (unsigned, with_raw_key):
        with pytest.raises(Unauthorized):
            await tokens.verify_token(ctx, "acme-d365", forged)


async def test_another_process_with_the_same_key_accepts_the_token(
    ctx: AppContext, settings: Settings
) -> None:
    token, _ = await tokens.issue_token(ctx, WEBHOOK_CLIENT, WEBHOOK_SECRET)
    tokens._root_key.cache_clear()  # as in a fresh process
    twin = await AppContext.open(
        Settings.from_env({}, db_url=settings.db_url, secret_key=settings.secret_key)
    )
    try:
        await tokens.verify_token(twin, "acme-d365", token)
    finally:
        await twin.aclose()


async def test_an_integration_without_webhook_auth_accepts_no_token(ctx: AppContext) -> None:
    doc = document("plain-d365")
    del doc["webhook_auth"]
    await integrations.apply(ctx, doc)
    token, _ = await tokens.issue_token(ctx, WEBHOOK_CLIENT, WEBHOOK_SECRET)
    with pytest.raises(Unauthorized):
        await tokens.verify_token(ctx, "plain-d365", token)


def test_same_secret_compares_content_not_identity() -> None:
    assert tokens.same_secret("abc", "".join(["a", "b", "c"]))
    assert not tokens.same_secret("abc", "abd")
    assert not tokens.same_secret("abc", "abc ")
