"""Clients for one-off operations (test, preview, backfill, registration) and how their failures
reach the caller: a setting that does not work — an unusable CA bundle, an authority that answers
without a token or with HTML, an unreachable instance, a TLS failure, refused credentials — is
the caller's to fix, so it is an ``InvalidInput`` (422) naming the setting, never a 500. Only a
service that answered with a server error or a throttle is a 502: nothing to fix on our side."""

from __future__ import annotations

from consentbridge.config.integration import Integration
from consentbridge.dataverse.errors import DataverseError, TransientError
from consentbridge.didomi.client import DidomiClient, DidomiError
from consentbridge.operations.errors import InvalidInput, Issue
from consentbridge.sync.clients import didomi_client, runtime_for
from consentbridge.sync.runtime import ClientSetupError, IntegrationRuntime

UNPROCESSABLE = 422
BAD_GATEWAY = 502
_NO_ANSWER_FIX = " Check config.instance, config.ca_bundle and the network."


async def one_off_runtime(integration: Integration) -> IntegrationRuntime:
    """The integration's clients, or ``InvalidInput`` naming ``config.ca_bundle``."""
    try:
        return await runtime_for(integration)
    except ClientSetupError as exc:
        raise setup_failure(exc) from None


async def one_off_didomi(integration: Integration) -> DidomiClient:
    """The integration's Didomi API client, or ``InvalidInput`` naming ``config.ca_bundle``."""
    try:
        return await didomi_client(integration)
    except ClientSetupError as exc:
        raise setup_failure(exc) from None


def setup_failure(exc: ClientSetupError) -> InvalidInput:
    return InvalidInput([Issue(exc.path, exc.message)], status=UNPROCESSABLE)


def dataverse_failure(exc: DataverseError) -> InvalidInput:
    """A failed Dataverse or Entra ID call as the answer of a one-off operation."""
    if isinstance(exc, TransientError) and exc.status is not None:
        return InvalidInput([Issue("dataverse", str(exc))], status=BAD_GATEWAY)
    message = str(exc)
    if isinstance(exc, TransientError):  # no answer at all: a setting or the network
        message += _NO_ANSWER_FIX
    return InvalidInput([Issue("dataverse", message)], status=UNPROCESSABLE)


def didomi_failure(exc: DidomiError) -> InvalidInput:
    """A failed Didomi API call as the answer of a one-off operation."""
    answered_badly = exc.status is not None and (exc.status >= 500 or exc.status == 429)
    status = BAD_GATEWAY if answered_badly else UNPROCESSABLE
    return InvalidInput([Issue("didomi", exc.message)], status=status)
