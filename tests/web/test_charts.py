"""The activity chart is a pure function of its buckets: bar heights are proportional to the
counts, stacked in the series' order, placed in their time slot; each bar names its counts."""

from __future__ import annotations

import re
from dataclasses import dataclass

from consentbridge.web.charts import HEIGHT, activity_svg, totals

START = 1_800_000_000.0  # a whole hour


@dataclass(frozen=True)
class B:
    at: float
    written: int = 0
    unchanged: int = 0
    skipped: int = 0
    failed: int = 0


def rects(svg: str) -> list[dict[str, float | str]]:
    found = []
    for match in re.finditer(
        r'<rect class="(\w+)" x="([\d.]+)" y="([\d.]+)" width="([\d.]+)" height="([\d.]+)"', svg
    ):
        name, x, y, w, h = match.groups()
        found.append({"series": name, "x": float(x), "y": float(y), "w": float(w), "h": float(h)})
    return found


def test_bars_are_stacked_in_proportion_to_their_counts() -> None:
    buckets = [B(START, written=6, failed=2), B(START + 120, unchanged=4)]
    svg = activity_svg(buckets, start=START, end=START + 600, bucket_s=60, title="t")
    bars = rects(svg)
    assert [b["series"] for b in bars] == ["written", "failed", "unchanged"]
    written, failed, unchanged = bars
    # The peak bucket (8 changes) fills the plot; the others scale with it.
    assert written["h"] / failed["h"] == 3
    assert unchanged["h"] / (written["h"] + failed["h"]) == 0.5
    # Failed sits on top of written; both bars start from the axis.
    assert failed["y"] + failed["h"] == written["y"]
    assert round(written["y"] + written["h"]) == HEIGHT - 22
    # The third slot of ten: 2 slots to the right of the first bar.
    slot = (unchanged["x"] - written["x"]) / 2
    assert slot == (720 - 40) / 10


def test_each_bar_names_its_time_in_utc_and_its_counts() -> None:
    svg = activity_svg(
        [B(START, written=1, skipped=3)], start=START, end=START + 60, bucket_s=60, title="Day"
    )
    assert "<title>2027-01-15 08:00 UTC: 1 written, 0 unchanged, 3 skipped, 0 failed</title>" in svg
    assert 'aria-label="Day"' in svg


def test_an_empty_window_says_so_and_buckets_outside_it_are_left_out() -> None:
    empty = activity_svg([], start=START, end=START + 3600, bucket_s=60, title="t")
    assert "No changes in this period" in empty and "<rect" not in empty
    outside = activity_svg(
        [B(START - 60, written=5)], start=START, end=START + 60, bucket_s=60, title="t"
    )
    assert "<rect" not in outside


def test_the_title_is_escaped() -> None:
    svg = activity_svg([], start=START, end=START + 60, bucket_s=60, title="<b>&")
    assert "<b>" not in svg and "&lt;b&gt;&amp;" in svg


def test_totals_sum_each_series() -> None:
    assert totals([B(START, written=2, failed=1), B(START + 60, written=3, skipped=4)]) == {
        "written": 5,
        "unchanged": 0,
        "skipped": 4,
        "failed": 1,
    }


def test_the_bucket_under_way_has_its_slot() -> None:
    now = START + 600 + 25  # 25 s into the eleventh minute
    svg = activity_svg([B(START + 600, written=1)], start=START, end=now, bucket_s=60, title="t")
    (bar,) = rects(svg)
    assert bar["x"] + bar["w"] <= 720
    assert bar["x"] == round(40 + 10 * (720 - 40) / 11, 2)
