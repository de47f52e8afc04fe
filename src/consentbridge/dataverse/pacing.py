"""Execution-time pacing for one application user: never start a request that Dataverse's
combined-execution-time limit would refuse.

Why: Dataverse allows each application user 1,200 s of execution per sliding 5-minute window
(MS Learn api-limits; 429 `0x80072321` beyond). With bulk writes that costs far more than the
request count or the concurrency limit: an UpdateMultiple of 1,000 contacts runs ~24 s, so five
in flight spend 5 s of execution per second and exhaust a window in 4 minutes. A client that
only reacts to 429s then stalls for the `Retry-After` of every lane, again and again.

What Dataverse tells us: every answer carries `x-ms-ratelimit-time-remaining-xrm-requests`, the
execution seconds left in the window *after* that request was charged. The window slides, so
the budget refills exactly as old charges leave it; a long burst can be charged at most the
limit per window length on average (4 s/s at the defaults), whatever the parallelism.

The model — a token bucket of execution seconds whose level is read off the headers:

- ``remaining`` is the last time-remaining seen (from any request of this application user;
  in a worker, from any worker's, through the store: `consentbridge.sync.budget`), with when.
  It only grows between observations (the window only frees), so it is a safe lower bound.
- Every request in flight has *committed* its expected charge: the next headers will show it
  spent. The charge of a request is estimated from how long requests of its operation took
  (an EWMA of their durations; the server's execution time is at most the round trip), so a
  lookup commits half a second and an UpdateMultiple of 1,000 rows ~24 s.
- A request may start when ``remaining - committed (ours and the other workers') - its own
  charge ≥ reserve``, the reserve being `RESERVE_SHARE` of the largest remaining seen (the
  limit): it absorbs estimates that are short and other workers' requests not yet reported.
  A request expected to cost more than the whole limit may start alone (nothing else in
  flight anywhere, ``remaining`` above the reserve: Dataverse admits it, as it refuses only
  once the window is spent), so it cannot wait forever.
- Counting what is in flight against what is left now is safe but costs throughput: in a
  steady burst the window holds *c*·W of charges and the requests in flight *c*·d more (d: a
  request's duration), so the rate *c* could not pass L / (W + d) — 96 % of the ceiling with
  12 s requests and W = 300 s, 71 % with a 30 s window. So the pacer also counts the refill it
  is sure of: its own charges (answered at *t*, each entered the window then) leave it at
  *t* + W, and those leaving before the new request would be answered are credited. W is
  Dataverse's documented 300 s (`CONSENTBRIDGE_DATAVERSE_WINDOW_S`); other workers' charges
  are not known to this process and are never credited. A request also needs what is left
  *now* (with the refill up to now) above the reserve, since Dataverse refuses a request while
  the window is full, whatever frees later.
- Beyond that the refill is not guessed: while the gate is shut and none of our requests is
  out (so no answer will bring fresh headers), a cheap probe (`WhoAmI`, one base cost) reads
  the level again every `PROBE_EVERY_S` (every `EXHAUSTED_PROBE_S` when it read 0, since a
  probe is then refused).

So from idle a burst first spends the window at the concurrency the `x-ms-dop-hint` allows
(faster than the window refills: a short burst beats 4 s/s, as it may), then runs exactly as
fast as charges leave the window — the execution-time ceiling — without a 429. Concurrency stays
the other lever (`AdaptiveLimiter`: up to `x-ms-dop-hint`); this module never raises it.
"""

from __future__ import annotations

from collections import deque
from typing import Final

TIME_REMAINING_HEADER: Final = "x-ms-ratelimit-time-remaining-xrm-requests"
RESERVE_SHARE: Final = 0.02  # of the limit, kept unspent (24 s of 1,200)
PROBE_EVERY_S: Final = 1.0
EXHAUSTED_PROBE_S: Final = 5.0
DEFAULT_CHARGE_S: Final = 1.0  # an operation never timed yet
WINDOW_S: Final = 300.0  # Dataverse's documented window (MS Learn api-limits)
CHARGE_EWMA: Final = 0.3  # weight of the newest duration


def parse_time_remaining(value: str | None) -> float | None:
    """``x-ms-ratelimit-time-remaining-xrm-requests`` in seconds: Dataverse writes ``1,199.46``
    (grouping commas, two decimals). Read liberally (a decimal comma as in ``1.199,46`` too);
    None when absent or unreadable."""
    if value is None:
        return None
    text = value.strip().replace(" ", "").replace("\u00a0", "")
    if "," in text and "." in text and text.rfind(",") > text.rfind("."):
        text = text.replace(".", "").replace(",", ".")
    else:
        text = text.replace(",", "")
    try:
        seconds = float(text)
    except ValueError:
        return None
    return seconds if seconds == seconds and seconds >= 0 else None  # NaN and negatives: unread


class ExecutionPacer:
    """The execution-time budget of one application user as this process sees it (pure: the
    caller passes the clock)."""

    def __init__(
        self,
        *,
        reserve_share: float = RESERVE_SHARE,
        probe_every_s: float = PROBE_EVERY_S,
        window_s: float | None = WINDOW_S,
    ) -> None:
        self.reserve_share = reserve_share
        self.probe_every_s = probe_every_s
        self.window_s = window_s  # None: credit no refill at all
        self._charged: deque[tuple[float, float]] = deque()  # (unix time answered, charge)
        self.remaining: float | None = None  # seconds left in the window, last seen
        self.observed_at = 0.0  # unix time of that observation
        self.limit = 0.0  # the most remaining ever seen: the window's limit, or less
        self.others_committed = 0.0  # other workers' requests in flight, as last reported
        self.last_probe = 0.0
        self._committed: dict[int, float] = {}
        self._charges: dict[str, float] = {}
        self._next_ticket = 0

    # -- what Dataverse says ---------------------------------------------------------------

    def observe(self, remaining: float, at: float) -> None:
        """A time-remaining header read at unix time ``at`` (older ones are ignored)."""
        self.limit = max(self.limit, remaining)
        if at >= self.observed_at:
            self.remaining, self.observed_at = remaining, at

    def adopt(
        self, remaining: float | None, at: float, limit: float | None, others_committed: float
    ) -> None:
        """The shared view from the store: the newest observation any worker made, the limit,
        and what the other workers have in flight."""
        if remaining is not None:
            self.observe(remaining, at)
        self.limit = max(self.limit, limit or 0.0)
        self.others_committed = max(0.0, others_committed)

    # -- requests ----------------------------------------------------------------------------

    def charge_of(self, operation: str) -> float:
        """The expected charge of one request of ``operation``."""
        known = self._charges.get(operation)
        if known is not None:
            return known
        return max(self._charges.values(), default=DEFAULT_CHARGE_S)

    def timed(self, operation: str, seconds: float, at: float | None = None) -> None:
        """A request of ``operation`` took ``seconds`` (an upper bound of its charge) and was
        answered at unix time ``at`` (then its charge entered the window)."""
        before = self._charges.get(operation)
        self._charges[operation] = (
            seconds if before is None else before + CHARGE_EWMA * (seconds - before)
        )
        if at is not None and self.window_s is not None:
            self._charged.append((at, seconds))
            horizon = at - 2 * self.window_s
            while self._charged and self._charged[0][0] < horizon:
                self._charged.popleft()

    def leaving(self, since: float, until: float) -> float:
        """Seconds of our own charges that leave the window between ``since`` and ``until``
        (a charge answered at *t* leaves at *t* + window): the refill we can count on. Other
        workers' charges are not known here, so the refill is never overestimated by them."""
        if self.window_s is None or until <= since:
            return 0.0
        window = self.window_s
        return sum(c for at, c in self._charged if since < at + window <= until)

    def start(self, charge: float) -> int:
        """A request starts, committing ``charge``; returns its ticket for `finish`."""
        self._next_ticket += 1
        self._committed[self._next_ticket] = charge
        return self._next_ticket

    def finish(self, ticket: int) -> None:
        self._committed.pop(ticket, None)

    @property
    def committed(self) -> float:
        """Seconds this process's requests in flight are expected to be charged."""
        return sum(self._committed.values())

    @property
    def reserve(self) -> float:
        return self.reserve_share * self.limit

    def headroom(self, now: float | None = None, charge: float = 0.0) -> float | None:
        """Seconds that may still be committed (None: no header seen, so no pacing): what is
        left, plus our charges that leave the window before a request of ``charge`` started
        ``now`` is answered, less what is in flight and the reserve."""
        if self.remaining is None:
            return None
        refill = 0.0 if now is None else self.leaving(self.observed_at, now + charge)
        return self.remaining + refill - self.committed - self.others_committed - self.reserve

    def allows(self, charge: float, now: float | None = None) -> bool:
        headroom = self.headroom(now, charge)
        if headroom is None:
            return True
        assert self.remaining is not None
        # Dataverse must admit it now (a window already full refuses it, whatever frees later).
        left_now = self.remaining + (0.0 if now is None else self.leaving(self.observed_at, now))
        if headroom >= charge and left_now > self.reserve:
            return True
        # A request larger than the whole budget would wait forever: let it start alone, when
        # Dataverse still admits requests (it refuses only once the window is spent).
        idle = not self._committed and self.others_committed <= 0
        too_large = charge > self.limit - self.reserve
        return idle and too_large and self.remaining is not None and self.remaining > self.reserve

    def probe_due(self, now: float) -> bool:
        """The gate is shut and no answer of ours will refresh the level: read it again?"""
        if self.remaining is None or self._committed:
            return False
        every = self.probe_every_s if self.remaining > 0 else EXHAUSTED_PROBE_S
        return now - max(self.observed_at, self.last_probe) >= every

    def wait_hint(self, now: float) -> float:
        """How long a shut gate waits before looking again (answers wake it sooner)."""
        every = self.probe_every_s if (self.remaining or 0.0) > 0 else EXHAUSTED_PROBE_S
        return max(0.05, max(self.observed_at, self.last_probe) + every - now)
