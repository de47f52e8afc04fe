"""`serve.settle_heap`: the garbage-collector settings the long-running commands apply once
start-up is over."""

from __future__ import annotations

import gc
from collections.abc import Iterator

import pytest

from consentbridge.serve import YOUNG_GC_THRESHOLD, settle_heap


@pytest.fixture
def restored_gc() -> Iterator[None]:
    threshold = gc.get_threshold()
    yield
    gc.unfreeze()
    gc.set_threshold(*threshold)


def test_start_up_objects_leave_the_collectors_reach(restored_gc: None) -> None:
    gc.unfreeze()
    long_lived = [object() for _ in range(10)]  # kept alive until frozen
    settle_heap()
    assert gc.get_freeze_count() > len(long_lived)
    assert gc.get_threshold()[0] == YOUNG_GC_THRESHOLD


def test_garbage_in_cycles_is_still_collected(restored_gc: None) -> None:
    settle_heap()

    class Node:
        other: object = None

    first, second = Node(), Node()
    first.other, second.other = second, first
    collected_before = sum(stat["collected"] for stat in gc.get_stats())
    del first, second
    gc.collect()
    assert sum(stat["collected"] for stat in gc.get_stats()) >= collected_before + 2
