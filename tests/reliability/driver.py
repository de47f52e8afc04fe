"""The reliability driver: a workload of Didomi `user.updated` deliveries, the Dataverse state it
must produce (computed here from the changes alone, never from the service), delivery to a
running service that counts only a 202 as an acknowledgement, and the checks of the sandbox
afterwards.

Every change carries its version twice: as Didomi's `new_entity.version`, which the service
orders by, and as the user metadata `cbversion`, which the integration maps to the String column
`new_cbversion`. So every write in the sandbox's per-row history names the change it applied,
and the history can be replayed against the changes sent:

- the versions our application writes to a contact strictly increase (a regression is an older
  change overwriting a newer one; a repeat is a change applied twice);
- every written version is one that was delivered for that user;
- after each write the row's `donotbulkemail` is the value of the version it now holds;
- `donotbulkemail` is never written with the value it already had;
- the final row is exactly the expected state, and users that received nothing were not touched.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import random
import threading
import time
import uuid
from collections import Counter
from collections.abc import Callable, Iterable, Sequence
from concurrent.futures import Future
from dataclasses import dataclass, field
from typing import Any

import httpx

from tests.support.sandbox import SandboxClient

VERSION_COLUMN = "new_cbversion"
VERSION_KEY = "cbversion"
PROPERTIES: list[dict[str, Any]] = [
    {"id": "donotbulkemail", "value": "consents_purposes_newsletter_enabled", "transform": "not"},
    {"id": VERSION_COLUMN, "value": f"metadata_{VERSION_KEY}"},
]
EPOCH = dt.datetime(2026, 1, 1, tzinfo=dt.UTC)
CREATE_CHUNK = 500


def version_label(version: int) -> str:
    return f"{version:07d}"


# -- the workload ----------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Change:
    """One consent change of one user: Didomi's user at `version`, newsletter on or off."""

    user: str
    version: int
    enabled: bool

    def body(self) -> dict[str, Any]:
        """The `user.updated` webhook Didomi would send for this change."""
        at = (EPOCH + dt.timedelta(seconds=self.version)).isoformat().replace("+00:00", "Z")
        return {
            "type": "user.updated",
            "parameters": {
                "source": {"id": f"ev-{self.user}-{self.version}", "created_at": at},
                "old_entity": {"organization_user_id": self.user, "version": self.version - 1},
                "new_entity": {
                    "id": f"didomi-{self.user}",
                    "organization_user_id": self.user,
                    "version": self.version,
                    "updated_at": at,
                    "metadata": {VERSION_KEY: version_label(self.version)},
                    "consents": {"purposes": [{"id": "newsletter", "enabled": self.enabled}]},
                },
            },
        }


@dataclass(frozen=True, slots=True)
class ContactState:
    """The two mapped columns of a contact."""

    donotbulkemail: bool
    version: str | None


UNTOUCHED = ContactState(donotbulkemail=False, version=None)


@dataclass
class Workload:
    users: list[str]
    changes: list[Change]  # each distinct change once, in the order they happened
    deliveries: list[Change]  # what is posted, in posting order (maybe shuffled, duplicated)

    @classmethod
    def generate(
        cls,
        *,
        changes: int,
        users: int,
        seed: int,
        shuffle: bool = False,
        duplicate_rate: float = 0.0,
    ) -> Workload:
        """`changes` changes spread at random over `users` users (some may get none).

        Per user the versions are 1, 2, 3… in the order they happened; newsletter consent is
        drawn at random for each. Unshuffled, deliveries follow that order (duplicates at the
        end); shuffled, any version of a user may arrive after a newer one.
        """
        rng = random.Random(seed)
        run = uuid.uuid4().hex[:6]
        emails = [f"rel{run}-{i:05d}@example.com" for i in range(users)]
        versions: Counter[str] = Counter()
        happened: list[Change] = []
        for _ in range(changes):
            user = rng.choice(emails)
            versions[user] += 1
            happened.append(Change(user, versions[user], rng.random() < 0.5))
        deliveries = list(happened)
        deliveries += rng.sample(happened, int(len(happened) * duplicate_rate))
        if shuffle:
            rng.shuffle(deliveries)
        return cls(users=emails, changes=happened, deliveries=deliveries)

    def expected(self) -> dict[str, ContactState]:
        """Per user, the state of the newest version delivered (untouched without any)."""
        newest: dict[str, Change] = {}
        for change in self.changes:
            if change.user not in newest or change.version > newest[change.user].version:
                newest[change.user] = change
        return {
            user: (
                ContactState(not newest[user].enabled, version_label(newest[user].version))
                if user in newest
                else UNTOUCHED
            )
            for user in self.users
        }

    def values_by_version(self) -> dict[str, dict[str, bool]]:
        """Per user: version label → the donotbulkemail value that version maps to."""
        table: dict[str, dict[str, bool]] = {user: {} for user in self.users}
        for change in self.changes:
            table[change.user][version_label(change.version)] = not change.enabled
        return table


# -- delivery --------------------------------------------------------------------------------


class UnexpectedAnswer(AssertionError):
    """The service refused a well-formed, authenticated delivery: a bug, not a transient."""


@dataclass
class DeliveryReport:
    posted: int = 0  # deliveries in the workload
    acknowledged: int = 0  # 202s (exactly one per delivery)
    duplicates: int = 0  # 202s that said the delivery was a duplicate
    attempts: int = 0
    not_acknowledged: Counter[str] = field(default_factory=Counter)  # why an attempt failed
    elapsed_s: float = 0.0

    @property
    def server_errors(self) -> int:
        return sum(n for reason, n in self.not_acknowledged.items() if reason.startswith("5"))

    def summary(self) -> str:
        rate = self.acknowledged / self.elapsed_s if self.elapsed_s else 0.0
        failed = ", ".join(f"{k}: {v}" for k, v in sorted(self.not_acknowledged.items()))
        return (
            f"{self.acknowledged} deliveries acknowledged in {self.elapsed_s:.1f} s "
            f"({rate:.0f}/s; {self.duplicates} as duplicates; {self.attempts} attempts"
            f"{'; not acknowledged: ' + failed if failed else ''})"
        )


class Deliverer:
    """Posts webhook bodies to one integration, each retried until it gets a 202.

    Only a 202 counts: a refused connection, a timeout, a reset or a 5xx while the service is
    being killed is retried with the same body (so the service may see it twice and must apply
    it once). A 401 fetches a new token. Any other answer is a bug and raises.
    """

    def __init__(
        self,
        base_url: str,
        integration_id: str,
        webhook_auth: dict[str, Any],
        *,
        concurrency: int = 32,
        give_up_after_s: float = 300.0,
    ) -> None:
        self.base_url = base_url
        self.path = f"/webhooks/didomi/{integration_id}"
        self.auth = webhook_auth
        self.concurrency = concurrency
        self.give_up_after_s = give_up_after_s
        self.report = DeliveryReport()
        self.finished = threading.Event()
        self._token: str | None = None
        self._token_lock: asyncio.Lock | None = None

    def run(self, bodies: Sequence[dict[str, Any]]) -> DeliveryReport:
        try:
            return asyncio.run(self._run(bodies))
        finally:
            self.finished.set()

    def start(self, bodies: Sequence[dict[str, Any]]) -> Future[DeliveryReport]:
        """Deliver in a background thread (the caller meanwhile kills and restarts processes)."""
        future: Future[DeliveryReport] = Future()

        def target() -> None:
            try:
                future.set_result(self.run(bodies))
            except BaseException as exc:
                future.set_exception(exc)

        threading.Thread(target=target, name="deliverer", daemon=True).start()
        return future

    async def _run(self, bodies: Sequence[dict[str, Any]]) -> DeliveryReport:
        self._token_lock = asyncio.Lock()
        self.report.posted = len(bodies)
        started = time.monotonic()
        queue: asyncio.Queue[dict[str, Any]] = asyncio.Queue()
        for body in bodies:
            queue.put_nowait(body)
        limits = httpx.Limits(max_connections=self.concurrency)
        async with httpx.AsyncClient(base_url=self.base_url, timeout=30.0, limits=limits) as client:
            await asyncio.gather(*(self._lane(client, queue) for _ in range(self.concurrency)))
        self.report.elapsed_s = time.monotonic() - started
        return self.report

    async def _lane(self, client: httpx.AsyncClient, queue: asyncio.Queue[dict[str, Any]]) -> None:
        while not queue.empty():
            await self._deliver(client, queue.get_nowait())

    async def _deliver(self, client: httpx.AsyncClient, body: dict[str, Any]) -> None:
        deadline = time.monotonic() + self.give_up_after_s
        pause = 0.05
        while True:
            if time.monotonic() > deadline:
                raise AssertionError(
                    f"a delivery got no 202 within {self.give_up_after_s:.0f} s; "
                    f"{self.report.summary()}"
                )
            self.report.attempts += 1
            reason = await self._attempt(client, body)
            if reason is None:
                return
            self.report.not_acknowledged[reason] += 1
            await asyncio.sleep(pause * random.uniform(0.5, 1.5))
            pause = min(1.0, pause * 2)

    async def _attempt(self, client: httpx.AsyncClient, body: dict[str, Any]) -> str | None:
        """None when acknowledged; otherwise why not."""
        try:
            token = await self._get_token(client)
            response = await client.post(
                self.path, json=body, headers={"Authorization": f"Bearer {token}"}
            )
        except httpx.TransportError as exc:  # refused, reset, timed out: not an acknowledgement
            return type(exc).__name__
        if response.status_code == 202:
            answer = response.json()
            if answer.get("accepted") is not True:
                raise UnexpectedAnswer(f"202 without accepted=true: {response.text[:300]}")
            self.report.acknowledged += 1
            self.report.duplicates += bool(answer.get("duplicate"))
            return None
        if response.status_code == 401:
            self._token = None if self._token == token else self._token
            return "401"
        if response.status_code >= 500:
            return str(response.status_code)
        raise UnexpectedAnswer(
            f"POST {self.path}: {response.status_code} {response.text[:500]} for {body}"
        )

    async def _get_token(self, client: httpx.AsyncClient) -> str:
        assert self._token_lock is not None
        async with self._token_lock:
            if self._token is None:
                response = await client.post(
                    "/oauth/token",
                    data={
                        "grant_type": "client_credentials",
                        "client_id": self.auth["client_id"],
                        "client_secret": self.auth["client_secret"],
                    },
                )
                if response.status_code != 200:
                    if response.status_code >= 500:
                        raise httpx.TransportError(f"token endpoint {response.status_code}")
                    raise UnexpectedAnswer(f"/oauth/token: {response.status_code} {response.text}")
                self._token = str(response.json()["access_token"])
            return self._token


# -- the sandbox side --------------------------------------------------------------------------


def prepare_sandbox(sandbox: SandboxClient) -> dict[str, Any]:
    """Add the version column and a separate app that seeds contacts (so that its writes are
    not confused with ours in the history); returns that app."""
    sandbox.add_column(VERSION_COLUMN, "String")
    return sandbox.add_app("reliability-seeder", ["System Administrator"])


def service_app(sandbox: SandboxClient) -> str:
    """How the history names the application user the service writes as (the default app)."""
    return str(sandbox.principals()["apps"][0]["name"])


def create_contacts(
    sandbox: SandboxClient, emails: Sequence[str], app: dict[str, Any]
) -> dict[str, str]:
    """Create one contact per email with CreateMultiple; email → contactid."""
    for start in range(0, len(emails), CREATE_CHUNK):
        targets = [
            {
                "@odata.type": "Microsoft.Dynamics.CRM.contact",
                "emailaddress1": email,
                "lastname": "Reliability",
            }
            for email in emails[start : start + CREATE_CHUNK]
        ]
        sandbox.dv(
            "POST",
            "contacts/Microsoft.Dynamics.CRM.CreateMultiple",
            expect=200,
            json={"Targets": targets},
            app=app,
        )
    rows = read_contacts(sandbox, ["contactid", "emailaddress1"])
    ids = {str(row["emailaddress1"]): str(row["contactid"]) for row in rows}
    missing = [e for e in emails if e not in ids]
    assert not missing, f"{len(missing)} contacts were not created, e.g. {missing[:3]}"
    return ids


def read_contacts(sandbox: SandboxClient, select: Iterable[str]) -> list[dict[str, Any]]:
    """Every contact of the sandbox, following `@odata.nextLink`."""
    return read_rows(sandbox, "contacts", select)


def read_rows(
    sandbox: SandboxClient, entity_set: str, select: Iterable[str]
) -> list[dict[str, Any]]:
    """Every row of `entity_set` through the Web API, following `@odata.nextLink`."""
    headers = {
        "Authorization": f"Bearer {sandbox.token()}",
        "Prefer": "odata.maxpagesize=5000",
    }
    url: str | None = f"{sandbox.base_url}/api/data/v9.2/{entity_set}?$select={','.join(select)}"
    rows: list[dict[str, Any]] = []
    while url is not None:
        page = sandbox.x.get(url, headers=headers).json()
        rows.extend(page["value"])
        url = page.get("@odata.nextLink")
    return rows


# -- waiting and checking ------------------------------------------------------------------------


def wait_until_drained(
    status: Callable[[], dict[str, Any]], *, timeout: float, settle_s: float = 0.0
) -> dict[str, Any]:
    """Poll the integration's status until nothing is pending (connection errors tolerated,
    e.g. while a process restarts); returns the last status."""
    deadline = time.monotonic() + timeout
    last: dict[str, Any] | str = "no answer yet"
    while time.monotonic() < deadline:
        try:
            last = status()
        except (httpx.TransportError, AssertionError) as exc:
            last = f"{type(exc).__name__}: {exc}"
        else:
            if last["pending"] == 0:
                if settle_s:
                    time.sleep(settle_s)
                    last = status()
                    if last["pending"] != 0:
                        continue
                return last
        time.sleep(0.25)
    raise AssertionError(f"still pending after {timeout:.0f} s: {last}")


@dataclass
class Verdict:
    wrong: list[str] = field(default_factory=list)  # final-state mismatches
    history: list[str] = field(default_factory=list)  # write-order problems
    writes: int = 0  # writes by our app to the mapped contacts
    users_written: int = 0
    max_writes_per_user: int = 0

    def summary(self) -> str:
        return (
            f"{self.writes} writes to {self.users_written} contacts "
            f"(at most {self.max_writes_per_user} for one user); "
            f"{len(self.wrong)} wrong rows, {len(self.history)} history problems"
        )

    def assert_exact(self) -> None:
        problems = self.wrong[:15] + self.history[:15]
        assert not self.wrong and not self.history, self.summary() + ":\n  " + "\n  ".join(problems)


def _written_columns(write: dict[str, Any]) -> dict[str, Any]:
    columns = write["columns"]
    assert isinstance(columns, dict), (
        f"the sandbox history must list the values written, not only column names: {write!r}"
    )
    return columns


def check_history(
    user: str,
    writes: Sequence[dict[str, Any]],
    values: dict[str, bool],
    our_app: str,
) -> list[str]:
    """Replay one contact's write history; problems found (see the module docstring)."""
    problems: list[str] = []
    state: dict[str, Any] = {}
    last_version: str | None = None
    for index, write in enumerate(writes):
        columns = _written_columns(write)
        before = dict(state)
        state.update(columns)
        if write.get("app") != our_app:
            continue
        where = f"{user} write #{index} {columns}"
        version = columns.get(VERSION_COLUMN)
        if version is None:
            problems.append(f"{where}: a write by the service that names no version")
            continue
        if version not in values:
            problems.append(f"{where}: version {version} was never delivered for this user")
            continue
        if last_version is not None and version <= last_version:
            kind = "applied twice" if version == last_version else "regressed"
            problems.append(f"{where}: version {version} after {last_version} ({kind})")
        last_version = version
        if "donotbulkemail" in columns and columns["donotbulkemail"] == before.get(
            "donotbulkemail", False
        ):
            problems.append(f"{where}: donotbulkemail rewritten with the value it had")
        if state.get("donotbulkemail", False) != values[version]:
            problems.append(
                f"{where}: donotbulkemail is {state.get('donotbulkemail', False)} "
                f"but version {version} says {values[version]}"
            )
    return problems


def verify(
    sandbox: SandboxClient,
    workload: Workload,
    contact_ids: dict[str, str],
    *,
    our_app: str,
    others: Iterable[str] = (),
    history: bool = True,
) -> Verdict:
    """Compare every contact with the expected state; replay each one's write history.

    `others` are contacts a test drives by other means; any further contact is an error."""
    verdict = Verdict()
    rows = {
        str(row["emailaddress1"]): row
        for row in read_contacts(
            sandbox, ["contactid", "emailaddress1", "donotbulkemail", VERSION_COLUMN]
        )
    }
    expected = workload.expected()
    for user, want in expected.items():
        row = rows.get(user)
        if row is None:
            verdict.wrong.append(f"{user}: contact missing")
            continue
        got = ContactState(bool(row["donotbulkemail"]), row.get(VERSION_COLUMN))
        if got != want:
            verdict.wrong.append(f"{user}: expected {want}, found {got}")
    strangers = set(rows) - set(expected) - set(others)
    if strangers:
        verdict.wrong.append(f"{len(strangers)} contacts nobody asked for, e.g. {min(strangers)}")
    if not history:
        return verdict
    values = workload.values_by_version()
    for user in workload.users:
        writes = sandbox.history(contact_ids[user])
        ours = [w for w in writes if w.get("app") == our_app]
        verdict.writes += len(ours)
        verdict.users_written += bool(ours)
        verdict.max_writes_per_user = max(verdict.max_writes_per_user, len(ours))
        if not values[user] and ours:
            verdict.history.append(f"{user}: received nothing but was written {len(ours)} times")
        verdict.history += check_history(user, writes, values[user], our_app)
    return verdict
