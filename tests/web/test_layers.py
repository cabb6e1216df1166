"""The web layer is an entry point: it never commits, and calls the use cases for that."""

from __future__ import annotations

from pathlib import Path

from tests.api.test_transactions import transaction_handling

WEB = Path(__file__).resolve().parents[2] / "web"


def test_the_web_layer_never_commits_or_opens_sessions_itself() -> None:
    modules = sorted(WEB.glob("*.py"))
    assert WEB / "privacy.py" in modules
    found = {path.name: transaction_handling(path.read_text("utf-8")) for path in modules}
    assert {name: hits for name, hits in found.items() if hits} == {}
