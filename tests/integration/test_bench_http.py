"""Smoke tests of the HTTP benchmarks: consent churn and the ungated baseline.

The servers are real subprocesses on a real SQLite file (``bench.server``),
so these tests build their own home and run once, outside the ``backend``
fixture (``python -m bench --db URL`` covers the other databases by hand).
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from api.app import build_services, create_app
from bench import churn
from bench.baseline import PURPOSE, build_plain_table, create_baseline_app
from cli.demo import ensure_clients, load_members
from cli.main import run_init
from core.settings import Settings
from gate.context import Services
from vault.models import VaultMember

ROW_KEYS = {
    "suite",
    "name",
    "a",
    "a_value",
    "b",
    "b_value",
    "unit",
    "ratio",
    "target",
    "met",
    "notes",
}


@dataclass
class SmokeContext:
    """The fields of ``bench.context.BenchContext`` that the suites use."""

    quick: bool
    db_url: str | None
    home: Path
    members: int
    keys: dict[str, str]
    services: Services


@pytest.fixture
def bench_home(tmp_path: Path) -> Iterator[SmokeContext]:
    home = tmp_path / "home"
    settings = Settings(home=home, database_url=None)
    run_init(settings, echo=False)
    services = build_services(settings)
    load_members(services, 120, seed=1, progress=lambda _n: None)
    keys = ensure_clients(services)
    try:
        yield SmokeContext(
            quick=True, db_url=None, home=home, members=120, keys=keys, services=services
        )
    finally:
        services.dispose()


@pytest.mark.slow
def test_consent_churn_over_http_counts_zero_violations(bench_home: SmokeContext) -> None:
    rows = churn.run(bench_home, seconds=1.5, connections=4, members=8)
    assert len(rows) == 1
    row = rows[0]
    assert set(row) >= ROW_KEYS
    assert row["violations"] == 0, row["violation_examples"]
    assert row["met"] is True
    # The load really interleaved: reads of both outcomes and consent changes.
    assert row["reads"] > 0 and row["writes"] > 0
    assert row["permits"] > 0 and row["denies"] > 0
    assert row["reads_logged"] == row["reads"]


@pytest.mark.slow
def test_baseline_answers_the_same_field_set_as_the_gated_read(
    bench_home: SmokeContext,
) -> None:
    url = Settings(home=bench_home.home, database_url=None).resolved_database_url
    assert build_plain_table(bench_home.services, url) == 120
    with bench_home.services.reading() as session:
        member = session.query(VaultMember.id).order_by(VaultMember.id).first()[0]
    gated_app = create_app(services=bench_home.services)
    with TestClient(gated_app) as gated, TestClient(create_baseline_app(url)) as plain:
        a = gated.get(
            f"/v1/members/{member}",
            params={"purpose": PURPOSE},
            headers={"Authorization": f"Bearer {bench_home.keys['crm']}"},
        )
        b = plain.get(f"/plain/members/{member}")
        missing = plain.get("/plain/members/nobody")
    assert a.status_code == 200 and b.status_code == 200
    assert set(b.json()) == {"id", "fields"}
    assert sorted(a.json()["fields"]) == sorted(b.json()["fields"])
    # Clear views are equal; the gate masks contact data, the baseline does not.
    for name in ("tier", "points_balance", "registered_at", "home_store"):
        assert a.json()["fields"].get(name) == b.json()["fields"].get(name)
    assert missing.status_code == 404


# -- the churn checker has teeth (pure: no database) ------------------------------

M = "m" * 24


def _change(seq: int, status: str) -> dict[str, object]:
    return {
        "seq": seq,
        "action": "consent.change",
        "members": [M],
        "decision": "permit",
        "reason": f"consent-{status}",
        "detail": {"purposes": ["marketing_sms"], "status": status},
    }


def _read(seq: int, decision: str, reason: str) -> dict[str, object]:
    return {
        "seq": seq,
        "action": "member.read",
        "members": [M],
        "purpose": "marketing_sms",
        "decision": decision,
        "reason": reason,
    }


def test_churn_check_flags_a_permit_logged_after_a_withdrawal() -> None:
    entries = [
        _change(1, "granted"),
        _read(2, "permit", "legal-basis:consent"),
        _change(3, "withdrawn"),
        _read(4, "permit", "legal-basis:consent"),  # decided on a stale state
        _read(5, "deny", "consent-required"),
    ]
    found, count = churn.check(entries, members={M}, reads=[], changes=[])
    assert count == 1
    assert found.violations == ["entry 4: permit while consent is not granted"]


def test_churn_check_flags_a_refusal_while_granted_and_a_mismatched_answer() -> None:
    entries = [_change(1, "granted"), _read(2, "deny", "consent-required")]
    reads = [churn.Answer(M, 200, 2, sent=1.0, received=2.0)]  # a 200 naming a deny
    found, count = churn.check(entries, members={M}, reads=reads, changes=[])
    assert count == 2
    assert found.violations[0] == "entry 2: consent-required while consent is granted"
    assert found.violations[1].startswith("200 names entry 2")


def test_churn_check_flags_a_read_decided_before_an_acknowledged_change() -> None:
    entries = [_change(1, "withdrawn"), _read(2, "deny", "consent-required"), _change(3, "granted")]
    # The grant (seq 3) was acknowledged at t=5; a read sent at t=6 must be logged after it.
    changes = [churn.Change(M, 201, 3, sent=4.0, received=5.0, granted=True)]
    reads = [churn.Answer(M, 403, 2, sent=6.0, received=7.0)]
    _found, count = churn.check(entries, members={M}, reads=reads, changes=changes)
    assert count == 1
