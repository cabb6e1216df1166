"""No transaction outlives its endpoint's thread (the stall the HTTP bench found).

Each endpoint calls one use case, which opens, commits (or rolls back) and
closes its own unit of work inside the thread it runs in; the key check is a
short read-only transaction of its own. A transaction left open across a
threadpool hop holds SQLite's write lock, or the log-head row lock elsewhere,
while it waits for a free thread: under load every thread then waits for it.

These tests run the app on a database of its own (``fresh_database``) with
real commits, so a transaction left open is a real lock, seen from another
connection, and a real connection checked out of the pool.
"""

from __future__ import annotations

import ast
import re
import sqlite3
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient
from httpx import Response
from sqlalchemy import Engine, event, func, select
from sqlalchemy.engine import make_url
from sqlalchemy.exc import OperationalError
from sqlalchemy.orm import Session, SessionTransaction, sessionmaker

import audit.uow
from api.app import create_app
from audit.log import HEAD_ID, lock_head
from audit.models import AuditCheckpoint, AuditEntryMember, AuditHead
from audit.uow import AuditedUnitOfWork
from core.db import build_engine, session_factory
from core.ids import new_id
from feed.models import FeedEvent
from gate.clients import list_clients, register_client
from gate.context import Services
from gate.operator import cut_checkpoint
from principals import OPERATOR_ACTOR
from tests.api.conftest import MEMBER, app_routes, auth, code_in, outbox_messages, sign_in
from tests.conftest import FreshDatabase, ServicesFor

API = Path(__file__).resolve().parents[2] / "api"
# A consent change every rule accepts, collected before the suite's NOW.
CONSENT = {
    "purposes": ["marketing_sms"],
    "status": "granted",
    "channel": "app",
    "collected_at": "2026-11-01T10:00:00+08:00",
}


@dataclass
class Began:
    session: Session
    transaction: SessionTransaction
    thread: int
    ended_in: int | None = None


@dataclass
class Transactions:
    """Every root transaction the services' sessions began: in which thread, ended in which."""

    all: list[Began] = field(default_factory=list)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def watch(self, factory: sessionmaker[Session]) -> None:
        event.listen(factory, "after_transaction_create", self._created)
        event.listen(factory, "after_transaction_end", self._ended)

    def _created(self, session: Session, transaction: SessionTransaction) -> None:
        if transaction.parent is None:
            with self._lock:
                self.all.append(Began(session, transaction, threading.get_ident()))

    def _ended(self, session: Session, transaction: SessionTransaction) -> None:
        if transaction.parent is None:
            with self._lock:
                for began in self.all:
                    if began.transaction is transaction:
                        began.ended_in = threading.get_ident()

    def open(self) -> list[Began]:
        with self._lock:
            return [b for b in self.all if b.ended_in is None]

    def crossed_threads(self) -> list[Began]:
        with self._lock:
            return [b for b in self.all if b.ended_in is not None and b.ended_in != b.thread]


@dataclass
class Live:
    """The app on a database of its own, its transactions watched."""

    database: FreshDatabase
    engine: Engine
    services: Services
    client: TestClient
    transactions: Transactions
    crm: str
    auditor: str
    admin: str

    def head_lock_is_free(self) -> bool:
        """Can another connection take the log-head lock within a second?"""
        if self.database.backend == "sqlite":
            path = make_url(self.database.url).database
            assert path is not None
            conn = sqlite3.connect(path, timeout=1, isolation_level=None)
            try:
                conn.execute("BEGIN IMMEDIATE")  # the write lock every audited transaction holds
                conn.execute("ROLLBACK")
                return True
            except sqlite3.OperationalError:  # database is locked
                return False
            finally:
                conn.close()
        probe = build_engine(self.database.url)
        try:
            with probe.connect() as conn:
                if self.database.backend == "postgresql":
                    conn.exec_driver_sql("SET lock_timeout = '1s'")
                else:
                    conn.exec_driver_sql("SET SESSION innodb_lock_wait_timeout = 1")
                try:
                    conn.execute(
                        select(AuditHead.size).where(AuditHead.id == HEAD_ID).with_for_update()
                    ).one()
                    return True
                except OperationalError:  # lock timeout
                    return False
                finally:
                    conn.rollback()
        finally:
            probe.dispose()

    def assert_nothing_left_open(self) -> None:
        assert self.transactions.open() == []
        assert self.engine.pool.checkedout() == 0  # type: ignore[attr-defined]
        assert self.transactions.crossed_threads() == []


@pytest.fixture
def live(fresh_database: FreshDatabase, services_for: ServicesFor) -> Iterator[Live]:
    engine = build_engine(fresh_database.url)
    sessions = session_factory(engine)
    read_sessions = session_factory(engine, read_only=True)
    transactions = Transactions()
    transactions.watch(sessions)
    transactions.watch(read_sessions)
    services = services_for(sessions, read_sessions)

    def key(name: str, role: str, purposes: list[str], scopes: list[str]) -> str:
        return register_client(
            services,
            actor=OPERATOR_ACTOR,
            name=name,
            role=role,
            purposes=purposes,
            scopes=scopes,
            request_id=None,
        ).key

    crm = key(
        "crm",
        "client",
        # Not marketing_sms: CONSENT grants it, and a client may not grant
        # a purpose it reads itself.
        ["membership", "customer_service", "analytics"],
        ["members:write", "consents:read", "consents:write"],
    )
    auditor = key("auditor", "auditor", [], [])
    admin = key("admin", "admin", [], [])
    try:
        with TestClient(create_app(services=services), raise_server_exceptions=False) as client:
            yield Live(fresh_database, engine, services, client, transactions, crm, auditor, admin)
    finally:
        for began in transactions.open():  # only a failed test leaves any
            began.session.rollback()
            began.session.close()
        engine.dispose()


def count_locks(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """Count the log-head locks the units of work take (one per ``with services.uow()``)."""
    taken: list[int] = []
    real = audit.uow.lock_head

    def counting(session: Session) -> Any:
        taken.append(threading.get_ident())
        return real(session)

    monkeypatch.setattr(audit.uow, "lock_head", counting)
    return taken


def create_member(live: Live) -> str:
    created = live.client.post("/v1/members", json=MEMBER, headers=auth(live.crm))
    assert created.status_code == 201, created.text
    return created.json()["id"]


def fail_under_the_lock(live: Live, taken: list[int]) -> Response:
    """A consent change for a well-formed id no member has: the use case takes the
    lock, then finds no member and raises (404) inside its unit of work."""
    before = len(taken)
    response = live.client.post(
        f"/v1/members/{new_id()}/consents", json=CONSENT, headers=auth(live.crm)
    )
    assert response.status_code == 404, response.text
    assert response.json()["type"] == "not-found"
    assert len(taken) == before + 1  # it did fail after taking the lock
    return response


def test_a_write_that_fails_under_the_lock_leaves_no_transaction_and_the_next_goes_through(
    live: Live, monkeypatch: pytest.MonkeyPatch
) -> None:
    member = create_member(live)
    taken = count_locks(monkeypatch)
    for _ in range(3):  # not once by luck: each failure releases what it took
        fail_under_the_lock(live, taken)
        live.assert_nothing_left_open()
        assert live.head_lock_is_free()

    # The next writes go through, the same use case included. (No timing is
    # asserted: the checks above see a leaked transaction or a held lock
    # directly, and a write stuck behind one would fail, not just be slow.)
    create_member(live)
    recorded = live.client.post(
        f"/v1/members/{member}/consents", json=CONSENT, headers=auth(live.crm)
    )
    assert recorded.status_code == 201, recorded.text
    live.assert_nothing_left_open()
    assert live.head_lock_is_free()


def test_the_checks_see_a_unit_of_work_that_a_failing_use_case_leaves_open(
    live: Live, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The test above can fail: a use case whose unit of work is not closed when
    it raises leaves a transaction holding the lock, and the checks see it."""
    assert live.head_lock_is_free()
    taken = count_locks(monkeypatch)
    leaked: list[Session] = []

    def leak(self: AuditedUnitOfWork, *_exc: object) -> None:
        leaked.append(self.session)  # neither rolled back nor closed

    monkeypatch.setattr(AuditedUnitOfWork, "__exit__", leak)
    fail_under_the_lock(live, taken)
    assert len(leaked) == 1
    assert [b.session for b in live.transactions.open()] == leaked
    assert live.engine.pool.checkedout() == 1  # type: ignore[attr-defined]
    assert not live.head_lock_is_free()
    with pytest.raises(AssertionError):
        live.assert_nothing_left_open()

    leaked[0].rollback()
    leaked[0].close()
    assert live.head_lock_is_free()
    assert live.transactions.open() == []


def test_the_checks_see_a_transaction_that_crosses_threads(live: Live) -> None:
    """A transaction begun in one thread and ended in another (what a unit of work
    opened by a dependency and closed by the endpoint does) is caught."""
    session = live.services.sessions()
    opener = threading.Thread(target=lock_head, args=(session,))
    opener.start()
    opener.join(10)
    assert not live.head_lock_is_free()
    session.rollback()  # here, in the test's thread
    session.close()
    assert live.head_lock_is_free()
    assert len(live.transactions.crossed_threads()) == 1
    with pytest.raises(AssertionError):
        live.assert_nothing_left_open()


@dataclass(frozen=True)
class Call:
    method: str
    route: str  # the route's path template
    path: str
    key: str | None
    status: int
    json: dict[str, Any] | None = None
    headers: dict[str, str] = field(default_factory=dict)


def every_endpoint(live: Live) -> list[Call]:
    """Calls (successes and failures) of every endpoint the app has, in an order that works."""
    member = create_member(live)
    revoked = register_client(
        live.services,
        actor=OPERATOR_ACTOR,
        name="to-be-revoked",
        role="client",
        purposes=[],
        scopes=[],
        request_id=None,
    ).client["id"]
    cut_checkpoint(live.services)  # a second checkpoint, to relate to the first
    with live.services.reading() as session:
        first, second = session.scalars(
            select(AuditCheckpoint.size).order_by(AuditCheckpoint.size)
        ).all()
    unknown = new_id()
    crm, auditor, admin = live.crm, live.auditor, live.admin
    m, c, a = "/v1/members", "/v1/clients", "/v1/audit"
    # A member signed in, and a challenge of theirs still open.
    me, verify = "/v1/me", "/v1/me/login/verify"
    proof = me + "/access-log/{seq}/proof"
    outbox = live.services.settings.resolved_outbox_dir
    token = sign_in(live.client, outbox, phone=MEMBER["phone"])
    pending = live.client.post(me + "/login", json={"phone": MEMBER["phone"]}).json()["challenge"]
    code = code_in(outbox_messages(outbox)[-1])
    wrong = f"{(int(code) + 1) % 1_000_000:06d}"
    own_consent = {"purposes": ["marketing_email"], "status": "granted"}
    bundled = {"purposes": ["partner_sharing", "marketing_email"], "status": "granted"}
    # Rights requests: a DPO, a client that relays requests, and requests waiting.
    dpo, care = (
        register_client(
            live.services,
            actor=OPERATOR_ACTOR,
            name=name,
            role=role,
            purposes=[],
            scopes=scopes,
            request_id=None,
        ).key
        for name, role, scopes in (("dpo", "dpo", []), ("care", "client", ["rights:submit"]))
    )
    r, verified = "/v1/requests", {"verification": {"method": "sms_code"}}

    def relayed(body: dict[str, Any]) -> str:
        response = live.client.post(
            f"{m}/{member}/requests", json={**body, **verified}, headers=auth(care)
        )
        assert response.status_code == 201, response.text
        return response.json()["id"]

    access = relayed({"type": "access"})
    approve, reject, cancel = (
        relayed({"type": "correction", "changes": {field: value}})
        for field, value in (("name", "王五"), ("birthday", "1991-02-03"), ("gender", "女"))
    )
    hold = live.client.post(
        f"{m}/{member}/holds", json={"reason": "case 1"}, headers=auth(dpo)
    ).json()["id"]
    # Webhooks: the crm client's, to a public address literal (no DNS needed).
    (hooked,) = (c["id"] for c in list_clients(live.services) if c["name"] == "crm")
    hook, wh = {"url": "https://93.184.215.14/hook"}, c + "/{client_id}/webhook"
    # The change feed: a client that read the member is told of crm's update.
    reader = register_client(
        live.services,
        actor=OPERATOR_ACTOR,
        name="reader",
        role="client",
        purposes=["customer_service"],
        scopes=[],
        request_id=None,
    ).key
    read = live.client.get(f"{m}/{member}?purpose=customer_service", headers=auth(reader))
    assert read.status_code == 200, read.text
    patched = live.client.patch(f"{m}/{member}", json={"tier": "金卡"}, headers=auth(crm))
    assert patched.status_code == 200, patched.text
    with live.services.reading() as session:
        (told,) = session.scalars(select(FeedEvent.id)).all()
    ev = "/v1/events"
    # The member's first entry (their creation), inside the checkpoint cut above.
    with live.services.reading() as session:
        created = session.scalar(
            select(func.min(AuditEntryMember.seq)).where(AuditEntryMember.member_id == member)
        )
    # A breach incident over every member, and the steps of its walk-through.
    inc, i = "/v1/incidents", "/v1/incidents/{incident_id}"
    incident_body = {
        "title": "t",
        "description": "d",
        "detected_at": "2026-11-01T00:00:00+00:00",
        "severity": "low",
        "scope": {"kind": "all"},
    }
    incident = live.client.post(inc, json=incident_body, headers=auth(dpo)).json()["id"]
    at = f"{inc}/{incident}"
    assessment = {"consequences": "c", "measures": "m", "member_advice": "a"}
    notified = {"at": "2026-11-02T00:00:00+00:00", "authority": "CAC"}
    return [
        Call("GET", "/healthz", "/healthz", None, 200),
        Call("GET", "/readyz", "/readyz", None, 200),
        Call("GET", "/openapi.json", "/openapi.json", crm, 200),
        Call("GET", "/docs", "/docs", crm, 200),
        Call("GET", "/docs/assets/{name}", "/docs/assets/swagger-ui.css", crm, 200),
        Call("POST", m, m, crm, 201, json=MEMBER),
        Call("POST", m, m, crm, 422, json={"name": ""}),
        Call("PATCH", m + "/{member_id}", f"{m}/{member}", crm, 200, json={"tier": "银卡"}),
        Call("PATCH", m + "/{member_id}", f"{m}/{unknown}", crm, 404, json={"tier": "银卡"}),
        Call("POST", m + "/{member_id}/consents", f"{m}/{member}/consents", crm, 201, CONSENT),
        Call("POST", m + "/{member_id}/consents", f"{m}/{unknown}/consents", crm, 404, CONSENT),
        Call("GET", m + "/{member_id}/consents", f"{m}/{member}/consents", crm, 200),
        Call("GET", m + "/{member_id}/consents", f"{m}/{unknown}/consents", crm, 404),
        Call(
            "POST",
            m + "/lookup",
            f"{m}/lookup",
            crm,
            200,
            json={"phone": MEMBER["phone"], "purpose": "customer_service"},
        ),
        Call("GET", m, f"{m}?purpose=analytics", crm, 200),
        Call("GET", m, f"{m}?purpose=delivery", crm, 403),
        Call("GET", m + "/{member_id}", f"{m}/{member}?purpose=customer_service", crm, 200),
        Call("GET", m + "/{member_id}", f"{m}/{unknown}?purpose=customer_service", crm, 404),
        Call("GET", m + "/{member_id}/access-log", f"{m}/{member}/access-log", auditor, 200),
        Call("GET", a + "/entries", f"{a}/entries", auditor, 200),
        Call(
            "GET",
            a + "/entries",
            a + "/entries",
            auditor,
            200,
            headers={"Accept": "application/x-ndjson"},
        ),
        Call(
            "GET",
            a + "/entries",
            a + "/entries",
            auditor,
            200,
            headers={"Accept": "text/csv"},
        ),
        Call("GET", a + "/head", f"{a}/head", auditor, 200),
        Call("GET", a + "/checkpoint", f"{a}/checkpoint", auditor, 200),
        Call("GET", a + "/entries/{seq}/proof", f"{a}/entries/1/proof", auditor, 200),
        Call("GET", a + "/consistency", f"{a}/consistency?from={first}&to={second}", auditor, 200),
        Call("GET", a + "/public-key", f"{a}/public-key", auditor, 200),
        Call("GET", c, c, admin, 200),
        Call("POST", c, c, admin, 201, json={"name": "new-client", "role": "auditor"}),
        Call("POST", c, c, admin, 409, json={"name": "new-client", "role": "auditor"}),
        Call("DELETE", c + "/{client_id}", f"{c}/{revoked}", admin, 204),
        Call("DELETE", c + "/{client_id}", f"{c}/{revoked}", admin, 409),
        Call("DELETE", c + "/{client_id}", f"{c}/{unknown}", admin, 404),
        Call("POST", wh, f"{c}/{hooked}/webhook", admin, 201, json=hook),
        Call("POST", wh, f"{c}/{hooked}/webhook", admin, 422, json={"url": "http://127.0.0.1/"}),
        Call("GET", wh, f"{c}/{hooked}/webhook", admin, 200),
        Call("POST", wh + "/rotate", f"{c}/{hooked}/webhook/rotate", admin, 200),
        Call("GET", c + "/{client_id}/deliveries", f"{c}/{hooked}/deliveries", admin, 200),
        Call("DELETE", wh, f"{c}/{hooked}/webhook", admin, 204),
        Call("DELETE", wh, f"{c}/{hooked}/webhook", admin, 404),
        Call("POST", m, m, admin, 403, json=MEMBER),  # refused by the role dependency
        # A member: signing in (no credential), then with the member's token.
        Call("POST", me + "/login", me + "/login", None, 202, json={"phone": MEMBER["phone"]}),
        Call("POST", verify, verify, None, 401, json={"challenge": pending, "code": wrong}),
        Call("POST", verify, verify, None, 200, json={"challenge": pending, "code": code}),
        Call("GET", me, me, token, 200),
        Call("GET", me, me, crm, 403),
        Call("GET", me + "/consents", me + "/consents", token, 200),
        Call("POST", me + "/consents", me + "/consents", token, 201, json=own_consent),
        Call("POST", me + "/consents", me + "/consents", token, 422, json=bundled),
        Call("GET", me + "/access-log", me + "/access-log", token, 200),
        Call("GET", proof, f"{me}/access-log/{created}/proof", token, 200),
        Call("GET", proof, f"{me}/access-log/1/proof", token, 404),  # not the member's
        Call("GET", m + "/{member_id}", f"{m}/{member}?purpose=membership", token, 403),
        # Rights requests: the member's, a relayed one, the DPO's queue and holds.
        # Not access: the member's copy (relayed above) is still available, so another is a 409.
        Call(
            "POST",
            me + "/requests",
            me + "/requests",
            token,
            201,
            json={"type": "correction", "changes": {"address": "浙江省杭州市文三路 1 号"}},
        ),
        Call("POST", me + "/requests", me + "/requests", token, 422, json={"type": "fax"}),
        Call("GET", me + "/requests", me + "/requests", token, 200),
        Call("GET", me + "/requests/{rights_request}", f"{me}/requests/{access}", token, 200),
        Call("GET", me + "/requests/{rights_request}", f"{me}/requests/{unknown}", token, 404),
        Call(
            "GET",
            me + "/requests/{rights_request}/copy",
            f"{me}/requests/{access}/copy",
            token,
            200,
        ),
        Call(
            "POST",
            me + "/requests/{rights_request}/cancel",
            f"{me}/requests/{cancel}/cancel",
            token,
            200,
        ),
        Call(
            "POST",
            m + "/{member_id}/requests",
            f"{m}/{member}/requests",
            care,
            201,
            json={"type": "correction", "changes": {"email": "z.san@example.com"}, **verified},
        ),
        Call("GET", r, r, dpo, 200),
        Call("GET", r + "/{rights_request}", f"{r}/{approve}", dpo, 200),
        Call("POST", r + "/{rights_request}/approve", f"{r}/{approve}/approve", dpo, 200),
        Call("POST", r + "/{rights_request}/approve", f"{r}/{approve}/approve", dpo, 409),
        Call(
            "POST",
            r + "/{rights_request}/reject",
            f"{r}/{reject}/reject",
            dpo,
            200,
            json={"reason": "no evidence"},
        ),
        Call(
            "POST",
            r + "/{rights_request}/extend",
            f"{r}/{reject}/extend",
            dpo,
            409,
            json={"reason": "x", "until": "2099-01-01"},
        ),
        Call("POST", m + "/{member_id}/holds", f"{m}/{member}/holds", dpo, 201, {"reason": "c2"}),
        Call("GET", m + "/{member_id}/holds", f"{m}/{member}/holds", dpo, 200),
        Call(
            "DELETE",
            m + "/{member_id}/holds/{hold_id}",
            f"{m}/{member}/holds/{hold}",
            dpo,
            200,
        ),
        Call("GET", ev, ev, reader, 200),
        Call("GET", ev, f"{ev}?after=1", reader, 200),
        Call("POST", ev + "/{event_id}/ack", f"{ev}/{told}/ack", reader, 200),
        Call("POST", ev + "/{event_id}/ack", f"{ev}/{told}/ack", crm, 404),
        Call("POST", inc, inc, dpo, 201, json=incident_body),
        Call("POST", inc, inc, dpo, 422, json={**incident_body, "scope": {"kind": "vault"}}),
        Call("GET", inc, inc, dpo, 200),
        Call("GET", i, at, dpo, 200),
        Call("GET", i, f"{inc}/{unknown}", dpo, 404),
        Call("GET", i + "/affected", at + "/affected", dpo, 200),
        Call("GET", i + "/report", at + "/report", dpo, 200),
        Call("POST", i + "/authority-notified", at + "/authority-notified", dpo, 409, notified),
        Call("POST", i + "/assess", at + "/assess", dpo, 200, json=assessment),
        Call("POST", i + "/authority-notified", at + "/authority-notified", dpo, 200, notified),
        Call(
            "POST", i + "/notify-members", at + "/notify-members", dpo, 202, {"channels": ["sms"]}
        ),
        Call("GET", i + "/notices", at + "/notices", dpo, 200),
        Call("POST", i + "/close", at + "/close", dpo, 200, json={"summary": "s"}),
        Call("POST", i + "/close", at + "/close", dpo, 409, json={"summary": "s"}),
        Call("GET", ev, ev, dpo, 200),
        Call("POST", me + "/logout", me + "/logout", token, 204),
        Call("POST", me + "/logout", me + "/logout", token, 401),
    ]


def test_every_endpoint_begins_and_ends_its_transactions_in_one_thread(live: Live) -> None:
    calls = every_endpoint(live)
    routes = set(app_routes(live.client.app))  # type: ignore[arg-type]
    assert len(routes) >= 15  # the walk sees the API (an empty one would pass vacuously)
    uncovered = routes - {(call.method, call.route) for call in calls}
    assert uncovered == set(), "add these endpoints to every_endpoint()"

    test_thread = threading.get_ident()
    for call in calls:
        began = len(live.transactions.all)
        headers = {**call.headers, **(auth(call.key) if call.key else {})}
        response = live.client.request(call.method, call.path, json=call.json, headers=headers)
        assert response.status_code == call.status, (call, response.text)
        where = f"{call.method} {call.path}"
        assert live.transactions.open() == [], f"{where} left a transaction open"
        assert live.transactions.crossed_threads() == [], f"{where} ended one in another thread"
        assert live.engine.pool.checkedout() == 0, where  # type: ignore[attr-defined]
        ran = live.transactions.all[began:]
        assert all(b.thread != test_thread for b in ran), where  # the app's threads, not ours
        if call.route not in ("/healthz", "/v1/audit/public-key"):
            assert ran, f"{where} began no transaction: the check above saw nothing"
    assert live.head_lock_is_free()


# -- the API layer never commits ------------------------------------------------

COMMIT_CALL = re.compile(r"\.commit\s*\(")
SESSION_NAMES = {"Session", "sessionmaker", "scoped_session"}


def transaction_handling(source: str) -> list[str]:
    """What in ``source`` handles a transaction itself: ``.commit(`` anywhere in
    the text, any ``commit`` attribute (a call or a reference), an import of
    SQLAlchemy's ORM sessions."""
    found = [f"`{m.group()}` at offset {m.start()}" for m in COMMIT_CALL.finditer(source)]
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Attribute) and node.attr == "commit":
            found.append(f"`.commit` on line {node.lineno}")
        elif isinstance(node, ast.ImportFrom) and (node.module or "").startswith("sqlalchemy"):
            found.extend(
                f"import of {alias.name} on line {node.lineno}"
                for alias in node.names
                if alias.name in SESSION_NAMES or alias.name == "orm"
            )
        elif isinstance(node, ast.Import):
            found.extend(
                f"import of {alias.name} on line {node.lineno}"
                for alias in node.names
                if alias.name.startswith("sqlalchemy.orm")
            )
    return found


def api_modules() -> list[Path]:
    return sorted([*API.glob("*.py"), *(API / "routers").glob("*.py")])


def test_the_api_layer_never_commits_or_opens_sessions_itself() -> None:
    modules = api_modules()
    assert API / "deps.py" in modules and API / "routers" / "members.py" in modules
    found = {
        str(path.relative_to(API.parent)): transaction_handling(path.read_text("utf-8"))
        for path in modules
    }
    assert {path: hits for path, hits in found.items() if hits} == {}


@pytest.mark.parametrize(
    "source",
    [
        "def f(uow):\n    uow.commit()\n",
        "def f(session):\n    session.commit ()\n",
        "def f(session):\n    return session.commit\n",
        "from sqlalchemy.orm import Session\n",
        "from sqlalchemy import orm\n",
        "import sqlalchemy.orm\n",
    ],
)
def test_the_commit_check_finds_what_it_looks_for(source: str) -> None:
    assert transaction_handling(source) != []


def test_the_commit_check_leaves_other_code_alone() -> None:
    source = (
        "from sqlalchemy import text\n"
        "from sqlalchemy.exc import SQLAlchemyError\n"
        "def f(services):\n    return services.reading()\n"
    )
    assert transaction_handling(source) == []
