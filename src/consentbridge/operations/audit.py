"""The audit trail of an integration: ``audit verify`` and ``audit export`` (CLI), and
``GET /api/v1/integrations/{id}/audit`` (admin API), which share the export's content.

Both seal what is unsealed first, so the answer covers every entry committed until then.
Export streams: it pages through the store by id and yields text a page at a time, so a
million-entry range never sits in memory. Times are ISO-8601 UTC to the microsecond — the
exact strings the chain hashes (``store/audit_chain.py``), so an auditor can recompute every
hash offline from the export alone (``docs/audit.md``).
"""

from __future__ import annotations

import csv
import io
import json
import math
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Final, Literal

from consentbridge.context import AppContext
from consentbridge.operations.errors import InvalidInput, Issue, NotFound
from consentbridge.store import audit as store_audit
from consentbridge.store.audit_chain import AuditEntry, ChainReport, iso_us

ExportFormat = Literal["csv", "json"]
FORMATS: Final[tuple[ExportFormat, ...]] = ("csv", "json")

UNSEALED_AFTER_S: Final = 60.0
"""Entries still unsealed this long after their time (right after sealing) are a warning."""
SEALED_LATE_AFTER_S: Final = 3600.0
"""Entries sealed this long after their time are counted in a warning."""

_LEADING: Final = ("id", "seal_seq", "at", "integration_id", "organization_user_id", "direction")
_MIDDLE: Final = ("event", "event_id", "outcome", "reason", "columns", "request_id")
_TRAILING: Final = ("sealed_at", "hash_v", "prev_hash", "hash")


def export_columns() -> tuple[str, ...]:
    """The export's fields in order (the CSV header): the entry, then its seal."""
    return (*_LEADING, *_MIDDLE, *store_audit.export_fields(), *_TRAILING)


@dataclass(frozen=True, slots=True)
class ExportQuery:
    """Which entries to export: one person's, a time range (``since`` inclusive, ``until``
    exclusive, unix seconds), or both; and the format."""

    organization_user_id: str | None = None
    since: float | None = None
    until: float | None = None
    format: ExportFormat = "json"


def parse_time(value: str | None, name: str) -> float | None:
    """ISO-8601 (``2025-01-31T12:00:00Z``; no zone means UTC) or unix seconds; None if empty."""
    if value is None or not value.strip():
        return None
    text = value.strip()
    try:
        seconds = float(text)
    except ValueError:
        pass
    else:
        if math.isfinite(seconds):
            return seconds
    try:
        stamp = datetime.fromisoformat(text.replace("Z", "+00:00").replace("z", "+00:00"))
    except ValueError:
        shown = text if len(text) <= 40 else text[:39] + "…"
        raise InvalidInput(
            [
                Issue(
                    name,
                    f"'{shown}' is not a time; give ISO-8601 such as 2025-01-31T12:00:00Z, or "
                    "unix seconds.",
                )
            ]
        ) from None
    return (stamp if stamp.tzinfo else stamp.replace(tzinfo=UTC)).timestamp()


def export_query(
    organization_user_id: str | None,
    since: str | None,
    until: str | None,
    export_format: str,
) -> ExportQuery:
    """The query from the caller's strings; ``InvalidInput`` naming the bad one."""
    if export_format not in FORMATS:
        raise InvalidInput(
            [Issue("format", f"'{export_format[:20]}' is not a format; use csv or json.")]
        )
    start, end = parse_time(since, "from"), parse_time(until, "to")
    if start is not None and end is not None and start > end:
        raise InvalidInput([Issue("to", "'to' is before 'from'; swap them.")])
    user = organization_user_id if organization_user_id else None
    fmt: ExportFormat = "csv" if export_format == "csv" else "json"
    return ExportQuery(user, start, end, fmt)


async def _require(ctx: AppContext, integration_id: str) -> None:
    if await ctx.store.get_integration(integration_id) is None:
        raise NotFound(f"No integration has the id '{integration_id}'.")


async def verify(ctx: AppContext, integration_id: str) -> ChainReport:
    """Seal what is unsealed, then recompute the integration's whole chain."""
    await _require(ctx, integration_id)
    await ctx.store.seal_audit(integration_id)
    return await ctx.store.verify_audit(
        integration_id, unsealed_after_s=UNSEALED_AFTER_S, late_after_s=SEALED_LATE_AFTER_S
    )


def report_json(report: ChainReport) -> dict[str, Any]:
    bad = report.first_bad
    return {
        "integration_id": report.integration_id,
        "ok": report.ok,
        "checked": report.checked,
        "head_seq": report.head_seq,
        "head_hash": report.head_hash,
        "anchor_seq": report.anchor_seq,
        "anchor_hash": report.anchor_hash,
        "first_bad": None
        if bad is None
        else {
            "kind": bad.kind,
            "seal_seq": bad.seal_seq,
            "entry_id": bad.entry_id,
            "message": bad.message,
        },
        "unsealed": report.unsealed,
        "sealed_late": report.sealed_late,
        "warnings": list(report.warnings),
    }


def entry_json(entry: AuditEntry) -> dict[str, Any]:
    """One exported entry: its fields as hashed, then its seal."""
    return {
        "id": entry.id,
        "seal_seq": entry.seal_seq,
        "at": iso_us(entry.at),
        "integration_id": entry.integration_id,
        "organization_user_id": entry.organization_user_id,
        "direction": entry.direction,
        "event": entry.event,
        "event_id": entry.event_id,
        "outcome": entry.outcome,
        "reason": entry.reason,
        "columns": entry.columns,
        "request_id": entry.request_id,
        **entry.extra,
        "sealed_at": None if entry.sealed_at is None else iso_us(entry.sealed_at),
        "hash_v": entry.hash_v,
        "prev_hash": entry.prev_hash,
        "hash": entry.hash,
    }


def _compact(value: Any) -> str:
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False)


def _csv_rows(entries: list[AuditEntry], header: bool) -> str:
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\r\n")
    names = export_columns()
    if header:
        writer.writerow(names)
    for entry in entries:
        record = entry_json(entry)
        writer.writerow(
            [
                ""
                if record[name] is None
                else _compact(record[name])
                if isinstance(record[name], dict | list)
                else record[name]
                for name in names
            ]
        )
    return out.getvalue()


async def export(ctx: AppContext, integration_id: str, query: ExportQuery) -> AsyncIterator[str]:
    """Check the integration and seal its log now (errors surface here, before any output),
    then return the export as an iterator of text chunks."""
    await _require(ctx, integration_id)
    await ctx.store.seal_audit(integration_id)
    return _pages(ctx, integration_id, query)


async def _pages(ctx: AppContext, integration_id: str, query: ExportQuery) -> AsyncIterator[str]:
    after_id = 0
    first = True
    if query.format == "json":
        yield "["
    while True:
        page = await ctx.store.audit_entries(
            integration_id,
            organization_user_id=query.organization_user_id,
            since=query.since,
            until=query.until,
            after_id=after_id,
            limit=store_audit.PAGE,
        )
        if query.format == "csv":
            if page or first:
                yield _csv_rows(page, header=first)
        elif page:
            items = (_compact_entry(entry) for entry in page)
            yield ("\n" if first else ",\n") + ",\n".join(items)
        first = first and not page
        if len(page) < store_audit.PAGE:
            break
        after_id = page[-1].id
    if query.format == "json":
        yield "]\n" if first else "\n]\n"


def _compact_entry(entry: AuditEntry) -> str:
    return json.dumps(entry_json(entry), ensure_ascii=False, separators=(", ", ": "))
