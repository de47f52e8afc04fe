"""The configuration history of an integration: what is recorded with each change (the
document masked, the secrets it replaced, who made it) and the history read back with a diff
per revision. The same diff is shown in the console before a document is saved.

Who: ``"console session <short id>"``, ``"admin token"`` (the admin API) or ``"CLI"``.
"""

from __future__ import annotations

import difflib
import json
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Final

from consentbridge.config import Integration, redacted
from consentbridge.config.integration import REDACTED, SECRET_PATHS
from consentbridge.context import AppContext
from consentbridge.store.revisions import Revision, RevisionDraft

CLI: Final = "CLI"
ADMIN_TOKEN: Final = "admin token"
SECRET_KEYS: Final = frozenset(path[-1] for path in SECRET_PATHS)


@dataclass(frozen=True)
class RevisionView:
    """A revision as the history page shows it: the change and its diff from the one before."""

    revision: Revision
    diff: list[str]


def masked(node: Any) -> Any:
    """``node`` with the value of every secret key, at any depth, as ``"***"`` (a stored
    document's encrypted secrets included)."""
    if isinstance(node, dict):
        return {
            key: REDACTED if key in SECRET_KEYS and value not in (None, "") else masked(value)
            for key, value in node.items()
        }
    if isinstance(node, list):
        return [masked(item) for item in node]
    return node


def _secret(integration: Integration | None, path: tuple[str, ...]) -> str | None:
    node: Any = integration
    for key in path:
        node = getattr(node, key, None)
    return node.get_secret_value() if node is not None else None


def secrets_changed(new: Integration, old: Integration | None) -> tuple[str, ...]:
    """The secret paths whose value ``new`` sets differently from ``old``."""
    return tuple(
        ".".join(path)
        for path in SECRET_PATHS
        if _secret(new, path) is not None and _secret(new, path) != _secret(old, path)
    )


def changes(new: Integration, old: Integration | None) -> bool:
    """True if storing ``new`` over ``old`` changes anything (applying the same document
    again, as `serve --config` does at every start, is not a revision)."""
    return old is None or redacted(new) != redacted(old) or bool(secrets_changed(new, old))


def draft(new: Integration, old: Integration | None, actor: str) -> RevisionDraft:
    """The revision recorded when ``new`` replaces ``old`` (or is created)."""
    return RevisionDraft(actor, redacted(new), secrets_changed(new, old))


def flag_revision(actor: str, action: str) -> Any:
    """The revision of a stored document changed in place (``bidirectional`` turned on or off):
    given to ``Store.update_integration``, it masks the stored document."""

    def build(document: dict[str, Any]) -> RevisionDraft:
        return RevisionDraft(actor, masked(document), action=action)

    return build


def document_diff(old: dict[str, Any] | None, new: dict[str, Any] | None) -> list[str]:
    """A unified diff of two masked documents (``None``: none), as lines without newlines."""
    return list(
        difflib.unified_diff(
            _lines(old), _lines(new), fromfile="before", tofile="after", lineterm="", n=2
        )
    )


def _lines(document: dict[str, Any] | None) -> list[str]:
    if document is None:
        return []
    return json.dumps(document, indent=2, sort_keys=True, ensure_ascii=False).splitlines()


def with_diffs(revisions: Sequence[Revision]) -> list[RevisionView]:
    """Newest-first revisions, each with its diff from the revision before it."""
    views: list[RevisionView] = []
    for index, revision in enumerate(revisions):
        before = revisions[index + 1].document if index + 1 < len(revisions) else None
        diff = document_diff(before, revision.document)
        verb = "set" if before is None else "replaced"
        diff += [f"# {path} {verb}" for path in revision.secrets_changed]
        views.append(RevisionView(revision, diff))
    return views


async def history(ctx: AppContext, integration_id: str) -> list[RevisionView]:
    """The integration's configuration history, newest first (kept after a deletion)."""
    # One more than shown, so the oldest shown revision still has its diff.
    revisions = await ctx.store.list_revisions(integration_id, limit=201)
    return with_diffs(revisions)[:200]
