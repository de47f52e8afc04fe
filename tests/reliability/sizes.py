"""How big each reliability run is: sized for `make test` on a 2-core machine (each test well
under a minute), and larger under `make chaos` (``CONSENTBRIDGE_CHAOS=1``)."""

from __future__ import annotations

import os
from dataclasses import dataclass

CHAOS = os.environ.get("CONSENTBRIDGE_CHAOS") == "1"


@dataclass(frozen=True)
class Size:
    changes: int
    users: int
    kills: int = 0


def size(test: Size, chaos: Size) -> Size:
    return chaos if CHAOS else test


DISORDER = size(Size(2000, 300), Size(20000, 2000))
FAULTS = size(Size(1500, 300), Size(20000, 2000))
CRASH = size(Size(3000, 500, kills=6), Size(20000, 2000, kills=24))
MULTIPROCESS = size(Size(2000, 300), Size(20000, 2000))

# Upper bound for one whole run (pytest-timeout) and for each of its waits.
RUN_TIMEOUT_S = 3600.0 if CHAOS else 300.0
