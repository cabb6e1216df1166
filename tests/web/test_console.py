"""The staff console over HTTP, without a browser: signing in with a staff key, the
session it opens, what keeps the forms safe, and the DPO's request pages."""

from __future__ import annotations

import re
from typing import Any

from fastapi.testclient import TestClient
from sqlalchemy import select
from sqlalchemy.orm import Session

from audit.models import AuditEntry
from gate.clients import revoke_client
from gate.context import Services
from principals import OPERATOR_ACTOR
from principals.models import GateClient, StaffSession
from tests.api.conftest import dpo_key  # noqa: F401 - fixture
from tests.conftest import Keys
from tests.web.conftest import Browser, csrf_of
from web.security import CONSOLE_COOKIE, CONTENT_SECURITY_POLICY


def console_sign_in(browser: Browser, key: str) -> Any:
    return browser.submit("/console/sign-in", "/console/sign-in", {"key": key})


def test_a_dpo_key_signs_in_to_a_session_cookie_that_never_holds_the_key(
    browser: Browser,
    dpo_key: str,  # noqa: F811
    session: Session,
) -> None:
    page = console_sign_in(browser, dpo_key)
    assert page.status_code == 200 and page.url.path == "/console/", page.text
    assert page.headers["Content-Security-Policy"] == CONTENT_SECURITY_POLICY
    cookie = browser.client.cookies.get(CONSOLE_COOKIE)
    assert cookie and cookie.startswith("mgs_") and dpo_key not in cookie
    assert dpo_key not in page.text
    (row,) = session.scalars(select(StaffSession)).all()
    assert row.token_hash != cookie and len(row.token_hash) == 64


def test_the_session_cookie_is_httponly_strict_and_scoped_to_the_console(
    browser: Browser,
    dpo_key: str,  # noqa: F811
) -> None:
    shown = browser.get("/console/sign-in")
    answer = browser.client.post(
        "/console/sign-in",
        data={"csrf": csrf_of(shown), "key": dpo_key},
        follow_redirects=False,
    )
    assert answer.status_code == 303
    header = next(h for h in answer.headers.get_list("set-cookie") if h.startswith(CONSOLE_COOKIE))
    lowered = header.lower()
    assert "httponly" in lowered and "samesite=strict" in lowered and "path=/console" in lowered
    max_age = int(re.search(r"max-age=(\d+)", lowered).group(1))  # type: ignore[union-attr]
    assert 8 * 3600 - 5 <= max_age <= 8 * 3600  # the 8-hour default


def test_a_wrong_key_is_refused_and_not_echoed(browser: Browser) -> None:
    wrong = "mg_" + "x" * 43
    page = console_sign_in(browser, wrong)
    assert page.status_code == 401 and wrong not in page.text
    assert CONSOLE_COOKIE not in browser.client.cookies


def test_a_system_key_cannot_sign_in(browser: Browser, keys: Keys) -> None:
    page = console_sign_in(browser, keys.crm)
    assert page.status_code == 403
    assert CONSOLE_COOKIE not in browser.client.cookies


def test_wrong_keys_from_one_address_are_rate_limited_even_for_a_right_key(
    browser: Browser,
    dpo_key: str,  # noqa: F811
) -> None:
    for _ in range(10):
        assert console_sign_in(browser, "mg_wrong").status_code == 401
    limited = console_sign_in(browser, dpo_key)
    assert limited.status_code == 429 and "Retry-After" in limited.headers


def test_revoking_the_key_ends_its_console_session(
    browser: Browser,
    services: Services,
    dpo_key: str,  # noqa: F811
) -> None:
    console_sign_in(browser, dpo_key)
    assert browser.get("/console/requests").url.path == "/console/requests"
    revoke_client(services, actor=OPERATOR_ACTOR, client="dpo", accept_name=True, request_id=None)
    after = browser.get("/console/requests")
    assert after.url.path == "/console/sign-in"
    assert console_sign_in(browser, dpo_key).status_code == 401


def test_signing_out_ends_the_session_on_the_server(
    browser: Browser,
    dpo_key: str,  # noqa: F811
) -> None:
    console_sign_in(browser, dpo_key)
    token = browser.client.cookies.get(CONSOLE_COOKIE)
    out = browser.submit("/console/", "/console/sign-out", {})
    assert out.url.path == "/console/sign-in"
    # The old token, replayed, no longer opens a page.
    with TestClient(browser.client.app, raise_server_exceptions=False) as other:
        other.cookies.set(CONSOLE_COOKIE, token, path="/console")
        assert other.get("/console/requests").url.path == "/console/sign-in"


def test_console_sign_in_and_sign_out_are_audited_and_wrong_keys_are_not(
    browser: Browser,
    services: Services,
    dpo_key: str,  # noqa: F811
) -> None:
    def logged() -> list[tuple[str, str | None, str]]:
        with services.reading() as session:
            rows = session.execute(
                select(AuditEntry.action, AuditEntry.actor, AuditEntry.decision).where(
                    AuditEntry.action.in_(["staff.signin", "staff.signout"])
                )
            ).all()
        return [tuple(row) for row in rows]

    console_sign_in(browser, "mg_" + "y" * 43)
    assert logged() == []
    console_sign_in(browser, dpo_key)
    browser.submit("/console/", "/console/sign-out", {})
    (dpo,) = {actor for _, actor, _ in logged()}
    assert logged() == [("staff.signin", dpo, "permit"), ("staff.signout", dpo, "permit")]
    with services.reading() as session:
        assert session.get(GateClient, dpo).name == "dpo"  # type: ignore[union-attr]


def test_a_form_without_its_csrf_token_is_refused(
    browser: Browser,
    dpo_key: str,  # noqa: F811
) -> None:
    browser.get("/console/sign-in")
    refused = browser.client.post("/console/sign-in", data={"key": dpo_key})
    assert refused.status_code == 403
    assert CONSOLE_COOKIE not in browser.client.cookies


def _correction(signed_in: Browser) -> None:
    signed_in.submit(
        "/privacy/requests",
        "/privacy/requests",
        {"type": "correction", "field": "name", "value": "张四"},
    )


def test_the_dpo_rejects_a_correction_with_a_reason_and_an_empty_one_is_refused(
    signed_in: Browser,
    dpo_key: str,  # noqa: F811
) -> None:
    _correction(signed_in)
    console_sign_in(signed_in, dpo_key)
    queue = signed_in.get("/console/requests?lang=en")
    assert queue.status_code == 200 and "Request queue" in queue.text
    (request_id,) = re.findall(r'href="/console/requests/([^"?]+)"', queue.text)
    page = f"/console/requests/{request_id}"
    empty = signed_in.submit(page, f"{page}/reject", {"reason": "  "})
    assert empty.status_code == 422
    done = signed_in.submit(page, f"{page}/reject", {"reason": "需要身份证明"})
    assert done.status_code == 200 and done.url.path == page
    assert "需要身份证明" in done.text
    mine = signed_in.get("/privacy/requests").text
    assert "需要身份证明" in mine


def test_an_auditor_cannot_see_the_queue_or_approve(
    signed_in: Browser,
    keys: Keys,
    dpo_key: str,  # noqa: F811
) -> None:
    _correction(signed_in)
    console_sign_in(signed_in, keys.auditor)
    home = signed_in.get("/console/")
    assert home.status_code == 200 and "/console/requests" not in home.text
    assert signed_in.get("/console/requests").status_code == 403
    approve = signed_in.client.post(
        "/console/requests/anything/approve", data={"csrf": csrf_of(home)}
    )
    assert approve.status_code == 403


def test_the_console_is_chinese_by_default_and_english_on_request(
    browser: Browser,
) -> None:
    assert "员工控制台" in browser.get("/console/sign-in").text
    assert "Staff console" in browser.get("/console/sign-in?lang=en").text
