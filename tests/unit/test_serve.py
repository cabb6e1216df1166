"""``memberguard serve`` believes X-Forwarded-For only from the proxies it is told to trust."""

from __future__ import annotations

from typing import Any

import pytest
import uvicorn

from cli.main import _serve


def served_with(monkeypatch: pytest.MonkeyPatch, trusted: str | None) -> dict[str, Any]:
    seen: dict[str, Any] = {}
    monkeypatch.setattr(uvicorn, "run", lambda app, **options: seen.update(options))
    _serve("127.0.0.1", 8000, 1, trusted_proxies=trusted)
    return seen


def test_without_trusted_proxies_the_peer_is_the_client(monkeypatch: pytest.MonkeyPatch) -> None:
    options = served_with(monkeypatch, None)
    assert options["proxy_headers"] is False
    assert "forwarded_allow_ips" not in options


def test_named_proxies_are_believed(monkeypatch: pytest.MonkeyPatch) -> None:
    options = served_with(monkeypatch, "10.0.0.5,10.0.0.6")
    assert options["proxy_headers"] is True
    assert options["forwarded_allow_ips"] == "10.0.0.5,10.0.0.6"
