"""A live memberguard for browser tests and screenshots: the app served by uvicorn in a
thread, on a port of its own, over a database of its own, with a member and the demo's
kind of clients; and Debian's Chromium, driven by Playwright (never a downloaded one)."""

from __future__ import annotations

import os
import re
import socket
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import httpx
import uvicorn

from api.app import create_app
from gate.clients import register_client
from gate.context import Services
from notify.outbox import read_outbox
from principals import OPERATOR_ACTOR

CHROMIUM = Path(os.environ.get("MEMBERGUARD_CHROMIUM", "/usr/bin/chromium"))
CODE = re.compile(r"(?<!\d)(\d{6})(?!\d)")
MEMBER = {
    "name": "李小红",
    "phone": "13812345678",
    "email": "xiaohong.li@example.com",
    "birthday": "1992-08-09",
    "gender": "女",
    "address": "广东省深圳市南山区科技园路88号",
    "id_number": "11010519491231002X",
    "tier": "金卡",
    "points_balance": 3200,
    "registered_at": "2021-03-04",
    "channel": "app",
    "home_store": "SZ-012",
}
CONSENT_AT = "2026-11-01T10:00:00+08:00"


@dataclass
class Site:
    url: str
    services: Services
    keys: dict[str, str]
    member_id: str

    def api(self) -> httpx.Client:
        return httpx.Client(base_url=self.url, timeout=10)

    def latest_code(self) -> str:
        messages = list(read_outbox(self.services.settings.resolved_outbox_dir))
        (code,) = CODE.findall(messages[-1]["body"])
        return code

    def sent(self) -> int:
        return len(list(read_outbox(self.services.settings.resolved_outbox_dir)))


def _keys(services: Services) -> dict[str, str]:
    specs = {
        "crm": ("client", ["membership", "customer_service"], ["members:write", "consents:read"]),
        "app": ("client", [], ["consents:read", "consents:write"]),
        "sms_gateway": ("client", ["marketing_sms"], []),
    }
    return {
        name: register_client(
            services,
            actor=OPERATOR_ACTOR,
            name=name,
            role=role,
            purposes=purposes,
            scopes=scopes,
            request_id=None,
        ).key
        for name, (role, purposes, scopes) in specs.items()
    }


@contextmanager
def serve(services: Services) -> Iterator[str]:
    """The app on 127.0.0.1, a free port; its base URL. Stopped on exit."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    config = uvicorn.Config(
        create_app(services=services), log_level="warning", lifespan="on", access_log=False
    )
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    deadline = time.monotonic() + 15
    while not server.started:
        if time.monotonic() > deadline or not thread.is_alive():
            raise RuntimeError("the test server did not start")
        time.sleep(0.02)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(timeout=15)
        sock.close()


@contextmanager
def live_site(services: Services) -> Iterator[Site]:
    """``services`` served, with the demo's kind of clients and one member whose data a
    client has read (what the access log is for)."""
    keys = _keys(services)
    with serve(services) as base, httpx.Client(base_url=base, timeout=10) as api:
        created = api.post(
            "/v1/members", json=MEMBER, headers={"Authorization": f"Bearer {keys['crm']}"}
        )
        assert created.status_code == 201, created.text
        member_id = created.json()["id"]
        for purpose in ("marketing_sms", "marketing_email"):
            granted = api.post(
                f"/v1/members/{member_id}/consents",
                json={
                    "purposes": [purpose],
                    "status": "granted",
                    "channel": "app",
                    "collected_at": CONSENT_AT,
                },
                headers={"Authorization": f"Bearer {keys['app']}"},
            )
            assert granted.status_code == 201, granted.text
        read = api.get(
            f"/v1/members/{member_id}?purpose=customer_service",
            headers={"Authorization": f"Bearer {keys['crm']}"},
        )
        assert read.status_code == 200, read.text
        yield Site(base, services, keys, member_id)
