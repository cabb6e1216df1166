"""The NDJSON export: only admitted members, each one logged, in constant memory."""

from __future__ import annotations

import dataclasses
import gc
import json
import tracemalloc
from datetime import UTC, datetime
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy.orm import Session

from audit.queries import EntryFilter, page_entries
from cli.demo_data import generate_members
from consent.registry import ImportedConsent
from gate.clients import Actor
from gate.context import Services
from gate.export import export_members
from gate.imports import import_members
from tests.api.conftest import auth, grant
from tests.conftest import Keys
from vault.masking import pseudonym

# Consent histories, cycled over the members: only "granted" admits to analytics.
HISTORIES = ("granted", "granted", "withdrawn", "refused", "none")
MEMBERS = 14  # two full batches of services.export_batch_size (7), then an empty one


@dataclasses.dataclass
class Exported:
    lines: list[dict[str, Any]]
    body: str
    granted: set[str]
    others: set[str]
    pseudonyms: dict[str, str]  # member id → the analytics client's pseudonym


@pytest.fixture
def exported(app_client: TestClient, keys: Keys, services: Services) -> Exported:
    granted: set[str] = set()
    others: set[str] = set()
    for n, member in enumerate(generate_members(MEMBERS, seed=7)):
        created = app_client.post("/v1/members", json=member, headers=auth(keys.crm))
        assert created.status_code == 201, created.text
        member_id = created.json()["id"]
        history = HISTORIES[n % len(HISTORIES)]
        if history in ("granted", "withdrawn"):
            grant(app_client, keys.crm, member_id, "analytics")
        if history == "withdrawn":
            grant(app_client, keys.crm, member_id, "analytics", "withdrawn", "2026-11-02T10:00:00Z")
        if history == "refused":
            grant(app_client, keys.crm, member_id, "analytics", "refused")
        (granted if history == "granted" else others).add(member_id)
        # Consent for another purpose must not admit a member to analytics.
        grant(app_client, keys.crm, member_id, "marketing_sms")

    response = app_client.get("/v1/members?purpose=analytics", headers=auth(keys.analytics))
    assert response.status_code == 200, response.text
    assert response.headers["content-type"].startswith("application/x-ndjson")
    key = services.keyring.pseudonym_key_for(keys.ids["analytics"])
    return Exported(
        lines=[json.loads(line) for line in response.text.splitlines()],
        body=response.text,
        granted=granted,
        others=others,
        pseudonyms={m: pseudonym(key, m) for m in granted | others},
    )


def test_export_releases_exactly_the_members_with_analytics_consent(exported: Exported) -> None:
    released = [line["pseudonym"] for line in exported.lines]
    assert len(released) == len(set(released))  # nobody twice
    assert set(released) == {exported.pseudonyms[m] for m in exported.granted}
    assert len(exported.granted) > 0 and len(exported.others) > 0


def test_export_lines_carry_the_pseudonym_and_never_the_member_id(exported: Exported) -> None:
    assert exported.lines
    for line in exported.lines:
        assert set(line) == {"pseudonym", "fields"}
        assert "name" not in line["fields"] and "phone" not in line["fields"]
    for member in exported.granted | exported.others:
        assert member not in exported.body


def test_every_exported_member_is_named_by_a_member_export_entry(
    exported: Exported, session: Session
) -> None:
    for member in exported.granted:
        entries, _ = page_entries(
            session, EntryFilter(member=member, action="member.export"), cursor=None, limit=10
        )
        assert entries, f"released member {member} has no member.export entry"
        assert all(member in e["members"] and e["decision"] == "permit" for e in entries)


def test_members_not_exported_appear_in_no_member_export_entry(
    exported: Exported, session: Session, keys: Keys
) -> None:
    exports = EntryFilter(action="member.export", actor=keys.ids["analytics"])
    entries, _ = page_entries(session, exports, cursor=None, limit=100)
    named = {m for e in entries for m in e["members"]}
    assert named == exported.granted
    for member in exported.others:
        found, _ = page_entries(
            session, EntryFilter(member=member, action="member.export"), cursor=None, limit=10
        )
        assert found == []


# -- memory -------------------------------------------------------------------

SMALL, LARGE = 200, 2000
BATCH = 25
SLACK = 256 * 1024  # bytes: allocator noise, statement caches


def load_consenting_members(services: Services, count: int, *, seed: int) -> None:
    """Members with analytics consent, imported the way `memberguard demo` does it."""
    collected = datetime(2026, 1, 5, tzinfo=UTC)
    generated = list(generate_members(count, seed=seed))
    for start in range(0, count, 500):
        import_members(
            services,
            generated[start : start + 500],
            source="test",
            history=lambda m, _member: [
                ImportedConsent(m, "analytics", "granted", "app", collected)
            ],
        )


def export_peak(services: Services, actor: Actor) -> tuple[int, int]:
    """(lines released, peak traced bytes) while consuming a whole export."""
    gc.collect()
    tracemalloc.start()
    try:
        started = export_members(services, actor=actor, purpose="analytics", request_id=None)
        released = sum(1 for _ in started.lines)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    return released, peak


def test_export_memory_stays_flat_as_the_member_count_grows(services: Services) -> None:
    services = dataclasses.replace(services, export_batch_size=BATCH)
    actor = Actor(
        id="analyticsclient234567abc",
        name="analytics",
        role="client",
        purposes=frozenset({"analytics"}),
        scopes=frozenset(),
    )
    load_consenting_members(services, SMALL, seed=1)
    export_peak(services, actor)  # warm caches so the small run is not inflated
    released_small, peak_small = export_peak(services, actor)
    load_consenting_members(services, LARGE - SMALL, seed=2)
    released_large, peak_large = export_peak(services, actor)
    assert (released_small, released_large) == (SMALL, LARGE)
    assert peak_large < 1.5 * peak_small + SLACK, (peak_small, peak_large)
