"""Screenshots of the privacy centre's main pages, for the README.

    .venv/bin/python -m tests.web.screenshots [OUT_DIR]     (default: docs/screenshots)

Runs memberguard on a scratch home (SQLite, fresh keys), signs a synthetic member in
with Debian's Chromium, walks the pages and writes each at phone (390x844) and desktop
(1280x800) widths, as ``<page>-phone.png`` and ``<page>-desktop.png``. Made by the same
code as the browser tests (tests/web/site.py), so that they show what the tests check.
"""

from __future__ import annotations

import sys
import tempfile
from pathlib import Path
from typing import Any

from cli.main import run_init
from core.settings import Settings
from gate.context import build_services
from gate.operator import cut_checkpoint
from tests.web.site import CHROMIUM, MEMBER, Site, live_site

SIZES = {"phone": (390, 844), "desktop": (1280, 800)}
ROOT = Path(__file__).resolve().parents[2]


def _sign_in(page: Any, site: Site) -> None:
    page.goto("/privacy/sign-in")
    page.locator("#identifier").fill(MEMBER["phone"])
    page.locator("form button[type=submit]").click()
    page.wait_for_url("**/privacy/sign-in/code")
    page.locator("#code").fill(site.latest_code())
    page.locator("form button[type=submit]").click()
    page.wait_for_url("**/privacy/")


def take(site: Site, out: Path) -> list[Path]:
    from playwright.sync_api import sync_playwright

    written: list[Path] = []
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=str(CHROMIUM))
        try:
            for size, (width, height) in SIZES.items():
                context = browser.new_context(
                    base_url=site.url,
                    viewport={"width": width, "height": height},
                    device_scale_factor=1,
                )
                page = context.new_page()

                def shot(
                    name: str, *, full: bool = False, size: str = size, page: Any = page
                ) -> None:
                    path = out / f"{name}-{size}.png"
                    page.screenshot(path=str(path), full_page=full)
                    written.append(path)

                page.goto("/privacy/sign-in")
                shot("sign-in")
                _sign_in(page, site)
                page.goto("/privacy/data")
                shot("my-data", full=True)
                page.goto("/privacy/consents")
                shot("consents")
                page.goto("/privacy/access-log")
                shot("access-log")
                page.locator("li.entry", has_text="crm").get_by_role("link").first.click()
                page.locator("#proof-result.verified").wait_for()
                shot("verified")
                page.goto("/privacy/requests")
                if page.locator("a[download]").count() == 0:
                    page.locator("form input[value=access] ~ button").click()
                shot("requests", full=size == "desktop")
                page.goto("/privacy/requests/delete")
                shot("delete")
                page.goto("/privacy/consents?lang=en")
                shot("consents-en")
                page.goto("/privacy/sign-in?lang=zh")
                context.close()
        finally:
            browser.close()
    return written


def main(argv: list[str]) -> int:
    out = Path(argv[0]) if argv else ROOT / "docs" / "screenshots"
    out.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory() as home:
        settings = Settings(home=Path(home), worker_in_server=False, log_level="WARNING")
        run_init(settings, echo=False)
        services = build_services(settings)
        try:
            with live_site(services) as site:
                cut_checkpoint(services)  # the crm's read, inside a signed checkpoint
                for path in take(site, out):
                    print(path.relative_to(ROOT) if path.is_relative_to(ROOT) else path)
        finally:
            services.rate_limits.close()
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
