"""The privacy centre in real Chromium (Debian's, driven by Playwright): what a member
does, end to end, against a live server; and axe-core's accessibility checks.

Chromium is ``/usr/bin/chromium`` (``apt-get install chromium``; ``.ci/run`` installs
it), axe-core the file ``MEMBERGUARD_AXE_JS`` names (``.ci/run`` installs it from the
npm registry into a scratch folder). Without them these tests skip, saying why, and
with ``CI=true`` they fail.
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import func, select

from audit.models import AuditEntryMember
from core.db import build_engine, session_factory
from gate.operator import cut_checkpoint
from tests.conftest import IN_CI, FreshDatabase, ServicesFor
from tests.web.site import CHROMIUM, MEMBER, Site, live_site

pytestmark = pytest.mark.backends("sqlite")  # one real server is enough; the flows are the API's

AXE_ENV = "MEMBERGUARD_AXE_JS"


def _missing(what: str) -> None:
    if IN_CI:
        pytest.fail(f"CI=true: {what}", pytrace=False)
    pytest.skip(what)


@pytest.fixture(scope="module")
def chromium() -> Iterator[Any]:
    if not CHROMIUM.exists():
        _missing(f"no Chromium at {CHROMIUM} (apt-get install chromium)")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=str(CHROMIUM))
        try:
            yield browser
        finally:
            browser.close()


@pytest.fixture
def site(fresh_database: FreshDatabase, services_for: ServicesFor) -> Iterator[Site]:
    engine = build_engine(fresh_database.url)
    try:
        services = services_for(session_factory(engine), session_factory(engine, read_only=True))
        with live_site(services) as running:
            yield running
    finally:
        engine.dispose()


@pytest.fixture
def page(chromium: Any, site: Site) -> Iterator[Any]:
    context = chromium.new_context(base_url=site.url, accept_downloads=True)
    context.set_default_timeout(10_000)
    tab = context.new_page()
    errors: list[str] = []
    tab.on("pageerror", lambda error: errors.append(str(error)))
    tab.on(
        "console",
        lambda message: errors.append(message.text) if message.type == "error" else None,
    )
    try:
        yield tab
    finally:
        context.close()
    # A CSP violation or a script error shows in the console: none is expected.
    assert errors == []


def sign_in(page: Any, site: Site, identifier: str = MEMBER["phone"]) -> None:
    page.goto("/privacy/sign-in?lang=en")
    page.get_by_label("Mobile number or e-mail address").fill(identifier)
    page.get_by_role("button", name="Send me a code").click()
    page.wait_for_url("**/privacy/sign-in/code")
    page.get_by_label("6-digit code").fill(site.latest_code())
    page.get_by_role("button", name="Sign in").click()
    page.wait_for_url("**/privacy/")


def test_a_member_signs_in_sees_masked_data_and_withdraws_a_consent(page: Any, site: Site) -> None:
    sign_in(page, site)
    assert page.get_by_role("status").inner_text() == "You are signed in."
    page.get_by_role("link", name="My data").first.click()
    page.wait_for_url("**/privacy/data")
    body = page.locator("main").inner_text()
    assert "138****5678" in body and MEMBER["phone"] not in body and MEMBER["name"] not in body
    page.get_by_role("button", name="Reveal everything").click()
    page.wait_for_url("**/privacy/data?show=all")
    assert MEMBER["name"] in page.locator("main").inner_text()

    read = f"/v1/members/{site.member_id}?purpose=marketing_sms"
    sms = {"Authorization": f"Bearer {site.keys['sms_gateway']}"}
    with site.api() as api:
        assert api.get(read, headers=sms).status_code == 200
        page.get_by_role("link", name="My consents").click()
        page.wait_for_url("**/privacy/consents")
        switch = page.locator("#purpose-marketing_sms").get_by_role("switch")
        assert switch.get_attribute("aria-checked") == "true"
        switch.click()
        page.get_by_role("status").filter(has_text="withdrawn").wait_for()
        switch = page.locator("#purpose-marketing_sms").get_by_role("switch")
        assert switch.get_attribute("aria-checked") == "false"
        refused = api.get(read, headers=sms)
    assert refused.status_code == 403 and refused.json()["type"] == "consent-required"


def test_a_member_verifies_an_access_log_entry_in_the_browser(page: Any, site: Site) -> None:
    cut_checkpoint(site.services)  # the crm's read is then inside a signed checkpoint
    sign_in(page, site)
    page.get_by_role("link", name="Who received my data").first.click()
    read = page.locator("li.entry", has_text="crm").filter(has_text="read your data").first
    read.get_by_role("link", name=re.compile("Verify")).click()
    result = page.locator("#proof-result")
    result.filter(has_text=re.compile("Verified|Not verified")).wait_for()
    assert result.inner_text().startswith("Verified: entry"), result.inner_text()
    assert "signed by memberguard.test/audit+" in result.inner_text()


def test_a_tampered_proof_is_not_verified(page: Any, site: Site) -> None:
    cut_checkpoint(site.services)
    sign_in(page, site)
    page.goto("/privacy/access-log?lang=en")
    href = page.locator("li.entry", has_text="crm").get_by_role("link").first.get_attribute("href")

    def tamper(route: Any) -> None:
        response = route.fetch()
        text = response.text()
        proof = json.loads(re.search(r'id="proof-data">(.*?)</script>', text, re.S).group(1))  # type: ignore[union-attr]
        leaf = proof["leaf_hash"]
        flipped = ("0" if leaf[0] != "0" else "1") + leaf[1:]
        route.fulfill(response=response, body=text.replace(leaf, flipped))

    page.route(f"**{href}", tamper)
    page.goto(href)
    result = page.locator("#proof-result")
    result.filter(has_text=re.compile("Verified|Not verified")).wait_for()
    assert result.inner_text().startswith("Not verified"), result.inner_text()


def test_a_member_downloads_a_copy_then_deletes_and_can_no_longer_sign_in(
    page: Any, site: Site
) -> None:
    sign_in(page, site)
    page.get_by_role("link", name="My requests").first.click()
    page.wait_for_url("**/privacy/requests")
    page.get_by_role("button", name="Ask for a copy").click()
    page.get_by_role("status").filter(has_text="download your copy").wait_for()
    with page.expect_download() as download:
        page.get_by_role("link", name="Download my copy").click()
    copy = json.loads(Path(download.value.path()).read_text("utf-8"))
    assert copy["format"] == "memberguard.copy/1" and copy["fields"]["name"] == MEMBER["name"]
    assert re.search(r"was due|due in|due today", page.locator("li.request").first.inner_text())

    page.get_by_role("link", name="Ask for deletion…").click()
    page.get_by_role("button", name="Delete my data").click()  # not confirmed: the browser asks
    assert page.url.endswith("/privacy/requests/delete")
    assert page.locator("#confirm:invalid").count() == 1  # the box is required
    page.get_by_label("I understand: delete all my data and end my membership.").check()
    page.get_by_role("button", name="Delete my data").click()
    page.wait_for_url("**/privacy/sign-in")
    page.get_by_role("status").filter(has_text="deleted").wait_for()

    sent = site.sent()
    page.get_by_label("Mobile number or e-mail address").fill(MEMBER["phone"])
    page.get_by_role("button", name="Send me a code").click()
    page.wait_for_url("**/privacy/sign-in/code")
    assert site.sent() == sent  # no code: no one holds that number any more
    page.goto("/privacy/data")
    assert page.url.endswith("/privacy/sign-in")


def test_the_privacy_centre_works_without_javascript(chromium: Any, site: Site) -> None:
    context = chromium.new_context(base_url=site.url, java_script_enabled=False)
    try:
        tab = context.new_page()
        sign_in(tab, site)
        tab.goto("/privacy/consents?lang=en")
        tab.locator("#purpose-marketing_email").get_by_role("switch").click()
        tab.get_by_role("status").filter(has_text="withdrawn").wait_for()
        tab.goto("/privacy/requests")
        tab.get_by_role("button", name="Ask for a copy").click()
        tab.get_by_role("link", name="Download my copy").wait_for()
    finally:
        context.close()


# -- accessibility --------------------------------------------------------------------------

PAGES = [
    "/privacy/",
    "/privacy/data",
    "/privacy/consents",
    "/privacy/access-log",
    "/privacy/requests",
    "/privacy/requests/delete",
]


@pytest.fixture(scope="module")
def axe_js() -> Path:
    path = os.environ.get(AXE_ENV)
    if not path or not Path(path).is_file():
        _missing(f"{AXE_ENV} names no axe-core script (.ci/run installs it from npm)")
    return Path(path)  # type: ignore[arg-type]


def test_axe_finds_no_serious_violation_on_the_sign_in_pages(
    chromium: Any, site: Site, axe_js: Path
) -> None:
    context = chromium.new_context(base_url=site.url, bypass_csp=True)
    found: dict[str, list[str]] = {}
    try:
        tab = context.new_page()
        tab.goto("/privacy/sign-in?lang=en")
        found.update(audit(tab, axe_js))
        tab.get_by_label("Mobile number or e-mail address").fill(MEMBER["phone"])
        tab.get_by_role("button", name="Send me a code").click()
        tab.wait_for_url("**/privacy/sign-in/code")
        found.update(audit(tab, axe_js))
        tab.get_by_label("6-digit code").fill("12")
        tab.get_by_role("button", name="Sign in").click()  # the error state
        found.update(audit(tab, axe_js))
    finally:
        context.close()
    assert found == {}


def test_axe_finds_no_serious_violation_on_any_signed_in_page(
    chromium: Any, site: Site, axe_js: Path
) -> None:
    cut_checkpoint(site.services)
    with site.services.reading() as session:
        first = session.scalar(
            select(func.min(AuditEntryMember.seq)).where(
                AuditEntryMember.member_id == site.member_id
            )
        )
    context = chromium.new_context(base_url=site.url, bypass_csp=True)
    found: dict[str, list[str]] = {}
    try:
        tab = context.new_page()
        sign_in(tab, site)
        tab.goto("/privacy/requests")
        tab.get_by_role("button", name="Ask for a copy").click()  # a request to list
        for path in [*PAGES, f"/privacy/access-log/{first}/verify", "/privacy/data?show=all"]:
            for lang in ("zh", "en"):
                separator = "&" if "?" in path else "?"
                tab.goto(f"{path}{separator}lang={lang}")
                found.update(audit(tab, axe_js))
    finally:
        context.close()
    assert found == {}


def audit(tab: Any, axe_js: Path) -> dict[str, list[str]]:
    """axe-core's serious and critical violations on the page shown, by its URL."""
    tab.add_script_tag(path=str(axe_js))
    result = tab.evaluate("async () => await axe.run(document)")
    bad = [
        f"{v['id']} ({v['impact']}): {[n['target'] for n in v['nodes']][:3]}"
        for v in result["violations"]
        if v["impact"] in ("serious", "critical")
    ]
    return {tab.url: bad} if bad else {}
