"""The privacy centre over HTTP, without a browser: what each page does, and what keeps it
safe (headers, CSRF, cookies, sessions, URLs). The same flows in real Chromium are in
test_browser.py."""

from __future__ import annotations

import re
from datetime import timedelta
from http.cookies import SimpleCookie
from pathlib import Path
from typing import Any

from fastapi.testclient import TestClient
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from api.app import create_app
from audit.entry import parse_entry
from audit.models import AuditEntry
from consent.models import ConsentEvent
from gate.context import Services
from gate.operator import cut_checkpoint
from tests.api.conftest import MEMBER, auth, code_in, grant, outbox_messages
from tests.conftest import NOW, Keys, ServicesFor, ticking_clock
from tests.web.conftest import Browser, csrf_of
from web.security import CONTENT_SECURITY_POLICY
from web.setup import WEB_PREFIXES

SIGNED_IN_PAGES = [
    "/privacy/",
    "/privacy/data",
    "/privacy/data?show=all",
    "/privacy/consents",
    "/privacy/access-log",
    "/privacy/requests",
    "/privacy/requests/delete",
]
PERSONAL = [
    MEMBER["name"],
    MEMBER["phone"],
    MEMBER["email"],
    MEMBER["email"].lower(),
    MEMBER["id_number"],
    MEMBER["address"],
]


def audit_size(session: Session) -> int:
    return session.scalar(select(func.count()).select_from(AuditEntry)) or 0


def entries(session: Session, action: str) -> list[dict[str, Any]]:
    rows = session.scalars(
        select(AuditEntry.entry).where(AuditEntry.action == action).order_by(AuditEntry.seq)
    )
    return [parse_entry(bytes(raw)) for raw in rows]


def assert_secure_headers(response: Any) -> None:
    assert response.headers["Content-Security-Policy"] == CONTENT_SECURITY_POLICY
    assert response.headers["X-Content-Type-Options"] == "nosniff"
    assert response.headers["Referrer-Policy"] == "no-referrer"


def cookie_attributes(response: Any) -> dict[str, str]:
    """Each Set-Cookie of the response, by cookie name: its attribute text, lower case."""
    found = {}
    for header in response.headers.get_list("set-cookie"):
        name = SimpleCookie(header).keys().__iter__().__next__()
        found[name] = header.lower()
    return found


# -- headers -------------------------------------------------------------------------------


def test_every_web_page_and_file_carries_the_strict_security_headers(
    signed_in: Browser, services: Services
) -> None:
    cut_checkpoint(services)  # so that an entry's verify page has a checkpoint
    log = signed_in.get("/privacy/access-log")
    seq = re.findall(r"/privacy/access-log/(\d+)/verify", log.text)[-1]
    pages = [
        *SIGNED_IN_PAGES,
        f"/privacy/access-log/{seq}/verify",
        "/static/site.css",
        "/static/proof.js",
        "/privacy/no-such-page",  # the 404, too
        "/static/no-such-file.js",
    ]
    for path in pages:
        response = signed_in.get(path)
        assert response.status_code in (200, 404), (path, response.status_code)
        assert_secure_headers(response)
    # No inline script, handler or style anywhere: the CSP would block them.
    for path in [*SIGNED_IN_PAGES, f"/privacy/access-log/{seq}/verify"]:
        text = signed_in.get(path).text
        assert "style=" not in text and "<style" not in text, path
        assert not re.search(r"<[^>]+\son[a-z]+\s*=", text), path
        for script in re.findall(r"<script[^>]*>", text):
            assert 'src="/static/' in script or 'type="application/json"' in script, path


def test_the_sign_in_pages_and_a_refused_form_carry_them_too(browser: Browser) -> None:
    for path in ("/privacy/sign-in", "/privacy/sign-in/code"):
        assert_secure_headers(browser.get(path))
    refused = browser.client.post("/privacy/sign-in", data={"identifier": MEMBER["phone"]})
    assert refused.status_code == 403
    assert_secure_headers(refused)


def test_the_api_keeps_its_own_headers(browser: Browser) -> None:
    # Swagger UI needs its inline script: the strict policy is for the web's paths only.
    assert "Content-Security-Policy" not in browser.get("/healthz").headers
    assert all(prefix in ("/privacy", "/console", "/static") for prefix in WEB_PREFIXES)


# -- CSRF ----------------------------------------------------------------------------------


def test_a_form_without_or_with_a_wrong_token_is_refused_and_changes_nothing(
    signed_in: Browser, app_client: TestClient, keys: Keys, member_id: str, session: Session
) -> None:
    grant(app_client, keys.app, member_id, "marketing_sms")
    page = signed_in.get("/privacy/consents")
    good = csrf_of(page)
    before = (audit_size(session), session.scalar(select(func.count(ConsentEvent.id))))
    form = {"purpose": "marketing_sms", "status": "withdrawn"}
    other = TestClient(signed_in.client.app).get("/privacy/sign-in")  # another browser's token
    for token in (
        None,
        "",
        "x" * 43,
        good[:-1] + ("A" if good[-1] != "A" else "B"),
        csrf_of(other),
    ):
        data = form if token is None else {**form, "csrf": token}
        refused = signed_in.client.post("/privacy/consents", data=data, follow_redirects=False)
        assert refused.status_code == 403, (token, refused.status_code)
        assert "csrf" not in refused.headers.get("location", "")
    assert (audit_size(session), session.scalar(select(func.count(ConsentEvent.id)))) == before
    state = app_client.get(f"/v1/members/{member_id}/consents", headers=auth(keys.crm)).json()
    assert state["purposes"]["marketing_sms"]["status"] == "granted"
    # The page's own token works.
    done = signed_in.client.post(
        "/privacy/consents", data={**form, "csrf": good}, follow_redirects=False
    )
    assert done.status_code == 303


def test_a_token_is_bound_to_the_session_it_was_shown_in(
    signed_in: Browser, member_id: str
) -> None:
    token = csrf_of(signed_in.get("/privacy/consents"))
    signed_in.client.cookies.set("mg_session", "mgm_" + "A" * 43)  # another (dead) session
    refused = signed_in.client.post(
        "/privacy/consents",
        data={"csrf": token, "purpose": "marketing_sms", "status": "withdrawn"},
        follow_redirects=False,
    )
    assert refused.status_code == 403


# -- cookies and sessions --------------------------------------------------------------------


def test_cookies_are_httponly_and_samesite_strict_and_not_secure_over_plain_http(
    browser: Browser, member_id: str
) -> None:
    page = browser.get("/privacy/sign-in")
    asked = browser.client.post(
        "/privacy/sign-in",
        data={"csrf": csrf_of(page), "identifier": MEMBER["phone"]},
        follow_redirects=False,
    )
    for response in (page, asked):
        for name, attributes in cookie_attributes(response).items():
            assert "httponly" in attributes and "samesite=strict" in attributes, name
            assert "secure" not in attributes, name  # plain HTTP: the browser would drop it
    assert set(cookie_attributes(asked)) == {"mg_challenge"}
    challenge = cookie_attributes(asked)["mg_challenge"]
    assert "path=/privacy/sign-in;" in challenge + ";"  # sent to the sign-in pages only
    age = int(re.search(r"max-age=(\d+)", challenge).group(1))  # type: ignore[union-attr]
    assert 590 <= age <= 600  # the code's 10 minutes


def test_cookies_are_secure_over_https(services: Services, outbox: Path, member_id: str) -> None:
    # Behind a trusted proxy uvicorn turns X-Forwarded-Proto: https into this scheme.
    with TestClient(create_app(services=services), base_url="https://testserver") as client:
        browser = Browser(client, outbox)
        page = browser.get("/privacy/sign-in")
        asked = client.post(
            "/privacy/sign-in",
            data={"csrf": csrf_of(page), "identifier": MEMBER["phone"]},
            follow_redirects=False,
        )
        code_page = browser.get("/privacy/sign-in/code")
        opened = client.post(
            "/privacy/sign-in/code",
            data={"csrf": csrf_of(code_page), "code": code_in(outbox_messages(outbox)[-1])},
            follow_redirects=False,
        )
        assert opened.status_code == 303
        for response, name in (
            (page, "mg_browser"),
            (asked, "mg_challenge"),
            (opened, "mg_session"),
        ):
            attributes = cookie_attributes(response)[name]
            assert "secure" in attributes and "httponly" in attributes, name
            assert "samesite=strict" in attributes, name


def test_the_session_cookie_lives_as_long_as_the_member_token(
    browser: Browser, member_id: str, services: Services
) -> None:
    page = browser.get("/privacy/sign-in")
    browser.client.post(
        "/privacy/sign-in", data={"csrf": csrf_of(page), "identifier": MEMBER["phone"]}
    )
    code_page = browser.get("/privacy/sign-in/code")
    code = code_in(outbox_messages(browser.outbox)[-1])
    opened = browser.client.post(
        "/privacy/sign-in/code",
        data={"csrf": csrf_of(code_page), "code": code},
        follow_redirects=False,
    )
    assert opened.status_code == 303 and opened.headers["location"] == "/privacy/"
    attributes = cookie_attributes(opened)["mg_session"]
    minutes = services.settings.member_token_minutes
    age = int(re.search(r"max-age=(\d+)", attributes).group(1))  # type: ignore[union-attr]
    assert minutes * 60 - 5 <= age <= minutes * 60
    assert "httponly" in attributes and "samesite=strict" in attributes


def test_every_page_but_sign_in_needs_a_session(browser: Browser, member_id: str) -> None:
    for path in SIGNED_IN_PAGES:
        response = browser.get(path, follow_redirects=False)
        assert response.status_code == 303, path
        assert response.headers["location"] == "/privacy/sign-in", path
    assert browser.get("/privacy/sign-in").status_code == 200


def test_signing_out_ends_the_session_for_good(signed_in: Browser) -> None:
    session_token = signed_in.client.cookies.get("mg_session")
    out = signed_in.submit("/privacy/", "/privacy/sign-out", {}, follow=False)
    assert out.status_code == 303 and out.headers["location"] == "/privacy/sign-in"
    assert (
        'mg_session=""' in out.headers["set-cookie"]
        or "max-age=0" in out.headers["set-cookie"].lower()
    )
    # Replaying the old cookie gets nothing: the session ended on the server.
    signed_in.client.cookies.set("mg_session", session_token or "")
    again = signed_in.get("/privacy/data", follow_redirects=False)
    assert again.status_code == 303 and again.headers["location"] == "/privacy/sign-in"


def test_an_expired_session_sends_the_member_to_sign_in(
    signed_in: Browser, services_for: ServicesFor, session_factory: Any
) -> None:
    minutes = signed_in.client.app.state.settings.member_token_minutes  # type: ignore[attr-defined]
    later = services_for(session_factory, clock=ticking_clock(NOW + timedelta(minutes=minutes + 1)))
    with TestClient(create_app(services=later)) as client:
        client.cookies.update(signed_in.client.cookies)
        response = client.get("/privacy/data", follow_redirects=False)
    assert response.status_code == 303 and response.headers["location"] == "/privacy/sign-in"


# -- sign-in ----------------------------------------------------------------------------------


def test_a_wrong_code_says_how_many_tries_are_left(browser: Browser, member_id: str) -> None:
    browser.submit("/privacy/sign-in", "/privacy/sign-in", {"identifier": MEMBER["phone"]})
    code = code_in(outbox_messages(browser.outbox)[-1])
    wrong_code = f"{(int(code) + 1) % 1_000_000:06d}"
    wrong = browser.submit(
        "/privacy/sign-in/code", "/privacy/sign-in/code", {"code": wrong_code}, follow=False
    )
    assert wrong.status_code == 401
    assert 'aria-invalid="true"' in wrong.text
    english = browser.submit(
        "/privacy/sign-in/code?lang=en", "/privacy/sign-in/code", {"code": wrong_code}
    )
    assert "You can try 3 more times." in english.text
    # The right code still opens the session until the challenge burns.
    opened = browser.submit("/privacy/sign-in/code", "/privacy/sign-in/code", {"code": code})
    assert opened.url.path == "/privacy/"


def test_a_member_signs_in_with_their_email_address_too(browser: Browser, member_id: str) -> None:
    opened = browser.sign_in(MEMBER["email"].upper())
    assert opened.status_code == 200 and opened.url.path == "/privacy/"
    assert browser.get("/privacy/data").status_code == 200


def test_an_unknown_contact_gets_the_same_page_as_a_member(
    browser: Browser, member_id: str
) -> None:
    member = browser.submit("/privacy/sign-in", "/privacy/sign-in", {"identifier": MEMBER["phone"]})
    stranger = browser.submit("/privacy/sign-in", "/privacy/sign-in", {"identifier": "13900000000"})
    assert member.status_code == stranger.status_code == 200
    assert member.url.path == stranger.url.path == "/privacy/sign-in/code"
    tokenless = re.sub(CSRF_TOKEN_RE, "", member.text) == re.sub(CSRF_TOKEN_RE, "", stranger.text)
    assert tokenless


CSRF_TOKEN_RE = r'value="[A-Za-z0-9_-]{43}"'


def test_a_malformed_contact_is_refused_without_echoing_it(browser: Browser) -> None:
    refused = browser.submit(
        "/privacy/sign-in", "/privacy/sign-in", {"identifier": "not-a-phone-123"}
    )
    assert refused.status_code == 422
    assert "not-a-phone-123" not in refused.text


# -- my data ----------------------------------------------------------------------------------


def test_my_data_is_masked_until_revealed_and_each_view_is_recorded(
    signed_in: Browser, session: Session
) -> None:
    masked = signed_in.get("/privacy/data")
    assert masked.status_code == 200
    for value in (MEMBER["name"], MEMBER["phone"], MEMBER["id_number"], MEMBER["address"]):
        assert value not in masked.text
    assert "138****5678" in masked.text and "张*" in masked.text
    revealed = signed_in.get("/privacy/data?show=all")
    assert MEMBER["name"] in revealed.text and MEMBER["id_number"] in revealed.text
    first, second = entries(session, "member.self_read")[-2:]
    assert first["fields"]["name"] == "masked" and first["fields"]["tier"] == "clear"
    assert set(second["fields"].values()) == {"clear"}


# -- my consents ------------------------------------------------------------------------------


def test_withdrawing_a_consent_in_the_form_refuses_the_next_read_for_that_purpose(
    signed_in: Browser, app_client: TestClient, keys: Keys, member_id: str
) -> None:
    grant(app_client, keys.app, member_id, "marketing_sms")
    read = f"/v1/members/{member_id}?purpose=marketing_sms"
    assert app_client.get(read, headers=auth(keys.sms)).status_code == 200
    page = signed_in.get("/privacy/consents")
    assert 'value="marketing_sms"' in page.text
    done = signed_in.submit(
        "/privacy/consents",
        "/privacy/consents",
        {"purpose": "marketing_sms", "status": "withdrawn"},
    )
    assert done.status_code == 200 and done.url.path == "/privacy/consents"
    assert 'role="status"' in done.text  # the flash says so
    refused = app_client.get(read, headers=auth(keys.sms))
    assert refused.status_code == 403
    assert refused.json()["type"] == "consent-required"


def test_separate_consents_are_shown_on_their_own_each_with_its_notice(
    signed_in: Browser,
) -> None:
    page = signed_in.get("/privacy/consents?lang=en").text
    ordinary, separate = page.split('id="separate-title"')
    assert 'value="partner_sharing"' in separate and 'value="identity_verification"' in separate
    assert 'value="partner_sharing"' not in ordinary and 'value="marketing_sms"' in ordinary
    assert (
        "partner-2026-01" in separate
        and "https://brand.example/privacy/partner-sharing/2026-01" in separate
    )
    # One purpose per form: a separate consent can never be bundled from this page.
    for form in re.findall(r"<form[^>]*/privacy/consents.*?</form>", page, re.S):
        assert len(re.findall(r'name="purpose"', form)) == 1


def test_granting_a_separate_consent_from_its_own_form(
    signed_in: Browser, app_client: TestClient, keys: Keys, member_id: str
) -> None:
    signed_in.submit(
        "/privacy/consents",
        "/privacy/consents",
        {"purpose": "partner_sharing", "status": "granted"},
    )
    state = app_client.get(f"/v1/members/{member_id}/consents", headers=auth(keys.crm)).json()
    assert state["purposes"]["partner_sharing"]["status"] == "granted"


# -- who received my data -----------------------------------------------------------------------


def test_the_access_log_lists_recipients_by_name_newest_first(
    signed_in: Browser, app_client: TestClient, keys: Keys, member_id: str
) -> None:
    assert (
        app_client.get(
            f"/v1/members/{member_id}?purpose=customer_service", headers=auth(keys.crm)
        ).status_code
        == 200
    )
    page = signed_in.get("/privacy/access-log?lang=en").text
    seqs = [int(s) for s in re.findall(r"/privacy/access-log/(\d+)/verify", page)]
    assert seqs == sorted(seqs, reverse=True) and len(seqs) >= 3
    assert "crm" in page and "read your data" in page


def test_the_verify_page_embeds_a_proof_that_checks_against_the_signed_checkpoint(
    signed_in: Browser, app_client: TestClient, keys: Keys, member_id: str, services: Services
) -> None:
    import base64
    import json

    from audit.checkpoint import parse_checkpoint, verify_note
    from audit.entry import leaf_hash
    from audit.merkle import verify_inclusion

    app_client.get(f"/v1/members/{member_id}?purpose=customer_service", headers=auth(keys.crm))
    cut_checkpoint(services)
    log = signed_in.get("/privacy/access-log").text
    newest = re.findall(r"/privacy/access-log/(\d+)/verify", log)[0]
    page = signed_in.get(f"/privacy/access-log/{newest}/verify")
    assert page.status_code == 200
    embedded = re.search(
        r'<script type="application/json" id="proof-data">(.*?)</script>', page.text, re.S
    )
    assert embedded is not None and "proof.js" in page.text
    proof = json.loads(embedded.group(1))
    entry = base64.b64decode(proof["entry"])
    assert leaf_hash(entry).hex() == proof["leaf_hash"]
    text = verify_note(proof["checkpoint"], verifier=proof["verifier_key"])
    checkpoint = parse_checkpoint(text)
    verify_inclusion(
        bytes.fromhex(proof["leaf_hash"]),
        proof["leaf_index"],
        proof["tree_size"],
        [bytes.fromhex(h) for h in proof["hashes"]],
        checkpoint.root,
    )


def test_an_entry_newer_than_the_checkpoint_says_so_and_another_members_is_not_found(
    signed_in: Browser, app_client: TestClient, keys: Keys, session: Session
) -> None:
    log = signed_in.get("/privacy/access-log?lang=en").text
    newest = re.findall(r"/privacy/access-log/(\d+)/verify", log)[0]
    pending = signed_in.get(f"/privacy/access-log/{newest}/verify?lang=en")
    assert pending.status_code == 404 and "Not signed yet" in pending.text
    other = app_client.post(
        "/v1/members",
        json={**MEMBER, "phone": "13900001111", "email": None},
        headers=auth(keys.crm),
    )
    assert other.status_code == 201, other.text
    theirs = max(session.scalars(select(AuditEntry.seq)))
    refused = signed_in.get(f"/privacy/access-log/{theirs}/verify")
    assert refused.status_code == 404


# -- my requests ------------------------------------------------------------------------------


def test_an_access_request_gives_a_copy_to_download(
    signed_in: Browser, member_id: str, session: Session
) -> None:
    done = signed_in.submit("/privacy/requests", "/privacy/requests", {"type": "access"})
    assert done.status_code == 200 and done.url.path == "/privacy/requests"
    link = re.search(r'href="(/privacy/requests/([\w-]+)/copy)"', done.text)
    assert link is not None
    copy = signed_in.get(link.group(1))
    assert copy.status_code == 200
    assert copy.headers["content-disposition"].startswith("attachment;")
    assert_secure_headers(copy)
    document = copy.json()
    assert document["format"] == "memberguard.copy/1" and document["member_id"] == member_id
    assert document["fields"]["name"] == MEMBER["name"]
    assert entries(session, "rights.download")


def test_a_request_shows_its_status_and_due_date_in_words_and_as_a_date(
    signed_in: Browser,
) -> None:
    signed_in.submit(
        "/privacy/requests",
        "/privacy/requests",
        {"type": "correction", "field": "name", "value": "张四"},
    )
    page = signed_in.get("/privacy/requests?lang=en").text
    assert "Correction" in page and "Received" in page
    assert re.search(r"due in \d+ days, on [A-Z][a-z]+ \d{1,2}, \d{4}", page), page
    zh = signed_in.get("/privacy/requests?lang=zh").text
    assert re.search(r"还有 \d+ 天到期（\d{4}年\d{1,2}月\d{1,2}日）", zh)


def test_a_correction_of_a_self_service_field_applies_at_once(
    signed_in: Browser,
) -> None:
    new_address = "浙江省杭州市文三路1号"
    signed_in.submit(
        "/privacy/requests",
        "/privacy/requests",
        {"type": "correction", "field": "address", "value": new_address},
    )
    assert new_address in signed_in.get("/privacy/data?show=all").text


def test_deletion_needs_the_confirmation_step_then_the_member_cannot_sign_in(
    signed_in: Browser, app_client: TestClient, keys: Keys, member_id: str, session: Session
) -> None:
    unconfirmed = signed_in.submit("/privacy/requests/delete", "/privacy/requests/delete", {})
    assert unconfirmed.status_code == 422
    assert (
        app_client.get(
            f"/v1/members/{member_id}?purpose=customer_service", headers=auth(keys.crm)
        ).status_code
        == 200
    )
    # Only the confirmation form deletes: the generic request form refuses the type.
    generic = signed_in.submit("/privacy/requests", "/privacy/requests", {"type": "deletion"})
    assert generic.status_code == 400
    done = signed_in.submit(
        "/privacy/requests/delete", "/privacy/requests/delete", {"confirm": "delete"}, follow=False
    )
    assert done.status_code == 303 and done.headers["location"] == "/privacy/sign-in"
    assert (
        app_client.get(
            f"/v1/members/{member_id}?purpose=customer_service", headers=auth(keys.crm)
        ).status_code
        == 404
    )
    # Signed out, and signing in again sends no code.
    assert signed_in.get("/privacy/data", follow_redirects=False).status_code == 303
    sent = len(list(signed_in.outbox.iterdir()))
    again = signed_in.submit(
        "/privacy/sign-in", "/privacy/sign-in", {"identifier": MEMBER["phone"]}
    )
    assert again.url.path == "/privacy/sign-in/code"
    assert len(list(signed_in.outbox.iterdir())) == sent


# -- language ---------------------------------------------------------------------------------


def test_chinese_by_default_english_with_lang_en_remembered_in_a_cookie(
    browser: Browser,
) -> None:
    zh = browser.get("/privacy/sign-in")
    assert '<html lang="zh-CN">' in zh.text and "登录您的隐私中心" in zh.text
    en = browser.get("/privacy/sign-in?lang=en")
    assert '<html lang="en">' in en.text and "Sign in to your privacy centre" in en.text
    assert "mg_lang=en" in en.headers["set-cookie"]
    remembered = browser.get("/privacy/sign-in")
    assert "Sign in to your privacy centre" in remembered.text
    back = browser.get("/privacy/sign-in?lang=zh")
    assert "登录您的隐私中心" in back.text


# -- URLs ----------------------------------------------------------------------------------


def test_nothing_personal_is_ever_in_a_url(
    browser: Browser, app_client: TestClient, keys: Keys, member_id: str
) -> None:
    seen: list[str] = []

    def record(response: Any) -> None:
        seen.append(str(response.request.url))
        if "location" in response.headers:
            seen.append(response.headers["location"])

    browser.client.event_hooks["response"].append(record)
    grant(app_client, keys.app, member_id, "marketing_sms")
    browser.sign_in()
    code = code_in(outbox_messages(browser.outbox)[-1])
    session_token = browser.client.cookies.get("mg_session")
    assert session_token
    for path in SIGNED_IN_PAGES:
        browser.get(path)
    browser.submit(
        "/privacy/consents",
        "/privacy/consents",
        {"purpose": "marketing_sms", "status": "withdrawn"},
    )
    browser.submit("/privacy/requests", "/privacy/requests", {"type": "access"})
    browser.submit("/privacy/requests/delete", "/privacy/requests/delete", {"confirm": "delete"})
    assert len(seen) > 20 and any("/privacy/sign-in/code" in url for url in seen)
    for url in seen:
        for value in [*PERSONAL, code, session_token, "13812345678"]:
            assert value not in url, url
        assert "identifier" not in url and "code=" not in url and "csrf" not in url
