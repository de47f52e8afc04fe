"""The console's activity chart: buckets of written / unchanged / skipped / failed changes drawn
as stacked bars in an inline SVG, rendered on the server (no script, no library).

``activity_svg`` is pure: the same buckets and window always give the same markup. It scales
to its container (``viewBox`` with ``width: 100%``), so it never overflows a phone screen.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from datetime import UTC, datetime
from html import escape
from typing import Final, Protocol

SERIES: Final = (
    ("written", "#2f855a"),
    ("unchanged", "#9aa5b1"),
    ("skipped", "#b7791f"),
    ("failed", "#a3262a"),
)
WIDTH: Final = 720
HEIGHT: Final = 200
_PAD_LEFT: Final = 40
_PAD_BOTTOM: Final = 22


class Bucket(Protocol):
    @property
    def at(self) -> float: ...
    @property
    def written(self) -> int: ...
    @property
    def unchanged(self) -> int: ...
    @property
    def skipped(self) -> int: ...
    @property
    def failed(self) -> int: ...


def _count(bucket: Bucket, name: str) -> int:
    value: int = getattr(bucket, name)
    return value


def activity_svg(
    buckets: Sequence[Bucket], *, start: float, end: float, bucket_s: int, title: str
) -> str:
    """Stacked bars, one slot per ``bucket_s`` from ``start`` to ``end`` (unix seconds); an
    empty window says so. Each bar's ``<title>`` gives its time (UTC) and counts."""
    # The last slot is the bucket under way (``end`` is usually now, mid-bucket).
    slots = max(1, math.ceil((end - start) / bucket_s))
    plot_w = WIDTH - _PAD_LEFT
    plot_h = HEIGHT - _PAD_BOTTOM
    peak = max((sum(_count(b, s) for s, _ in SERIES) for b in buckets), default=0)
    parts = [
        f'<svg class="chart" viewBox="0 0 {WIDTH} {HEIGHT}" role="img" '
        f'aria-label="{escape(title)}">',
        f"<title>{escape(title)}</title>",
        f'<line x1="{_PAD_LEFT}" y1="{plot_h}" x2="{WIDTH}" y2="{plot_h}" stroke="#c5cad3"/>',
        f'<text x="{_PAD_LEFT - 4}" y="12" text-anchor="end" font-size="11">{peak}</text>',
        f'<text x="{_PAD_LEFT - 4}" y="{plot_h}" text-anchor="end" font-size="11">0</text>',
    ]
    if peak == 0:
        parts.append(
            f'<text x="{_PAD_LEFT + plot_w / 2:.0f}" y="{plot_h / 2:.0f}" text-anchor="middle" '
            'font-size="13" fill="#5a6472">No changes in this period</text>'
        )
    slot_w = plot_w / slots
    # A day of minutes is thinner than a pixel per slot: keep every bar visible.
    bar_w = max(slot_w * 0.8, 2.0)
    for bucket in buckets:
        index = int((bucket.at - start) // bucket_s)
        if not 0 <= index < slots:
            continue
        x = min(_PAD_LEFT + index * slot_w, WIDTH - bar_w)
        y = float(plot_h)
        label = ", ".join(f"{_count(bucket, s)} {s}" for s, _ in SERIES)
        parts.append(f'<g class="bar"><title>{_utc(bucket.at)}: {label}</title>')
        for name, colour in SERIES:
            height = _count(bucket, name) / peak * (plot_h - 4)
            if height <= 0:
                continue
            y -= height
            parts.append(
                f'<rect class="{name}" x="{x:.2f}" y="{y:.2f}" width="{bar_w:.2f}" '
                f'height="{height:.2f}" fill="{colour}"/>'
            )
        parts.append("</g>")
    parts.append(
        f'<text x="{_PAD_LEFT}" y="{HEIGHT - 6}" font-size="11">{_utc(start)}</text>'
        f'<text x="{WIDTH}" y="{HEIGHT - 6}" font-size="11" text-anchor="end">{_utc(end)}</text>'
    )
    parts.append("</svg>")
    return "".join(parts)


def totals(buckets: Sequence[Bucket]) -> dict[str, int]:
    """Each series summed over ``buckets``."""
    return {name: sum(_count(b, name) for b in buckets) for name, _ in SERIES}


def _utc(at: float) -> str:
    return datetime.fromtimestamp(at, UTC).strftime("%Y-%m-%d %H:%M UTC")
