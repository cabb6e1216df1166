"""Every web route, like every API endpoint (tests/api/test_transactions.py), begins and
ends its transactions in one thread and leaves none open: the pages call the same use
cases, through the same dependencies, on a database of their own with real commits."""

from __future__ import annotations

import re
import threading
from typing import Any

from sqlalchemy import func, select

from audit.models import AuditEntryMember
from gate.clients import register_client
from gate.operator import cut_checkpoint
from principals import OPERATOR_ACTOR
from tests.api.conftest import MEMBER, code_in, outbox_messages, web_routes
from tests.api.test_transactions import Live, create_member, live  # noqa: F401 - the fixture
from tests.web.conftest import csrf_of


def test_every_web_route_begins_and_ends_its_transactions_in_one_thread(
    live: Live,  # noqa: F811
) -> None:
    client = live.client
    member = create_member(live)
    outbox = live.services.settings.resolved_outbox_dir
    walked: set[tuple[str, str]] = set()
    test_thread = threading.get_ident()

    def call(method: str, route: str, path: str, expected: int, **data: str) -> Any:
        began = len(live.transactions.all)
        if method == "POST":
            section = "/console" if path.startswith("/console") else "/privacy"
            token = csrf_of(client.get(section + ("/sign-in" if "sign-in" in path else "/")))
            began = len(live.transactions.all)
            response = client.post(path, data={"csrf": token, **data}, follow_redirects=False)
        else:
            response = client.get(path, follow_redirects=False)
        assert response.status_code == expected, (method, path, response.text[:500])
        assert live.transactions.open() == [], f"{method} {path} left a transaction open"
        assert live.transactions.crossed_threads() == [], f"{method} {path}"
        assert live.engine.pool.checkedout() == 0, path  # type: ignore[attr-defined]
        ran = live.transactions.all[began:]
        assert all(b.thread != test_thread for b in ran), path
        walked.add((method, route))
        return response

    p = "/privacy"
    call("GET", p + "/sign-in", p + "/sign-in", 200)
    call("GET", p + "/", p + "/", 303)  # not signed in yet
    call("POST", p + "/sign-in", p + "/sign-in", 303, identifier=MEMBER["phone"])
    call("GET", p + "/sign-in/code", p + "/sign-in/code", 200)
    call(
        "POST",
        p + "/sign-in/code",
        p + "/sign-in/code",
        303,
        code=code_in(outbox_messages(outbox)[-1]),
    )
    call("GET", p + "/", p + "/", 200)
    call("GET", p + "/data", p + "/data", 200)
    call("GET", p + "/consents", p + "/consents", 200)
    call("POST", p + "/consents", p + "/consents", 303, purpose="marketing_sms", status="withdrawn")
    call("GET", p + "/access-log", p + "/access-log", 200)
    cut_checkpoint(live.services)
    with live.services.reading() as session:
        first = session.scalar(
            select(func.min(AuditEntryMember.seq)).where(AuditEntryMember.member_id == member)
        )
    call("GET", p + "/access-log/{seq}/verify", f"{p}/access-log/{first}/verify", 200)
    call("GET", p + "/requests", p + "/requests", 200)
    call("POST", p + "/requests", p + "/requests", 303, type="access")
    page = client.get(p + "/requests").text
    (copy,) = re.findall(r"/privacy/requests/([\w-]+)/copy", page)
    call("GET", p + "/requests/{rights_request}/copy", f"{p}/requests/{copy}/copy", 200)
    call(
        "POST", p + "/requests", p + "/requests", 303, type="correction", field="name", value="王五"
    )
    page = client.get(p + "/requests").text
    (waiting,) = re.findall(r"/privacy/requests/([\w-]+)/cancel", page)
    call("POST", p + "/requests/{rights_request}/cancel", f"{p}/requests/{waiting}/cancel", 303)
    call("GET", p + "/requests/delete", p + "/requests/delete", 200)
    call("POST", p + "/requests/delete", p + "/requests/delete", 422)  # not confirmed
    _walk_console(live, call, client)
    call("POST", p + "/sign-out", p + "/sign-out", 303)
    client.get(p + "/sign-in")
    call("POST", p + "/sign-in", p + "/sign-in", 303, identifier=MEMBER["phone"])
    client.get(p + "/sign-in/code")
    call(
        "POST",
        p + "/sign-in/code",
        p + "/sign-in/code",
        303,
        code=code_in(outbox_messages(outbox)[-1]),
    )
    call("POST", p + "/requests/delete", p + "/requests/delete", 303, confirm="delete")
    call("GET", "/static/{name}", "/static/site.css", 200)

    routes = set(web_routes(client.app))  # type: ignore[arg-type]
    assert len(routes) >= 15
    assert routes - walked == set(), "add these web routes to the walk"
    assert live.head_lock_is_free()


def _walk_console(live: Live, call: Any, client: Any) -> None:  # noqa: F811
    """The console's routes, as a DPO uses them on a correction waiting for review."""
    key = register_client(
        live.services,
        actor=OPERATOR_ACTOR,
        name="dpo",
        role="dpo",
        purposes=[],
        scopes=[],
        request_id=None,
    ).key
    token = csrf_of(client.get("/privacy/requests"))
    client.post(
        "/privacy/requests",
        data={"csrf": token, "type": "correction", "field": "name", "value": "赵六"},
    )
    c = "/console"
    call("GET", c + "/sign-in", c + "/sign-in", 200)
    call("GET", c + "/", c + "/", 303)  # not signed in yet
    call("POST", c + "/sign-in", c + "/sign-in", 303, key=key)
    call("GET", c + "/", c + "/", 200)
    page = call("GET", c + "/requests", c + "/requests", 200).text
    # The open correction's row (the member's earlier requests are listed too).
    (rid,) = [
        found[0]
        for row in page.split("<tr")
        if "status-in_progress" in row or "status-submitted" in row
        for found in [re.findall(r'href="/console/requests/([\w-]+)"', row)]
    ]
    r = f"{c}/requests/{rid}"
    call("GET", c + "/requests/{rights_request}", r, 200)
    call("POST", c + "/requests/{rights_request}/holds", r + "/holds", 303, reason="litigation")
    (hold,) = re.findall(r"/holds/([\w-]+)/release", client.get(r).text)
    call(
        "POST",
        c + "/requests/{rights_request}/holds/{hold_id}/release",
        f"{r}/holds/{hold}/release",
        303,
    )
    call(
        "POST",
        c + "/requests/{rights_request}/extend",
        r + "/extend",
        409,
        reason="x",
        until="2099-01-01",
    )
    call("POST", c + "/requests/{rights_request}/reject", r + "/reject", 303, reason="proof needed")
    call("POST", c + "/requests/{rights_request}/approve", r + "/approve", 409)
    call("POST", c + "/sign-out", c + "/sign-out", 303)
