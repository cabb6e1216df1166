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
from sqlalchemy import delete, select
from sqlalchemy.orm import Session

from audit.log import AuditUnavailable
from audit.queries import EntryFilter, page_entries
from audit.uow import AuditedUnitOfWork
from cli.demo_data import generate_members
from consent.registry import ImportedConsent
from core.errors import Unauthenticated
from core.ids import new_id
from gate.clients import register_client
from gate.context import Services
from gate.export import export_members
from gate.imports import import_members
from gate.reads import Decided, ReadRequest, decide_reads
from principals import OPERATOR_ACTOR, Actor
from principals.clients import authenticate
from tests.api.conftest import auth, grant
from tests.conftest import Keys
from vault.keys import Keyring
from vault.masking import apply_view, pseudonym
from vault.members import SealedMember, load_sealed
from vault.models import VaultDataKey, VaultMember

# Consent histories, cycled over the members: only "granted" admits to personalization.
HISTORIES = ("granted", "granted", "withdrawn", "refused", "none")
MEMBERS = 14  # two full batches of settings.export_batch_size (7), then an empty one


@pytest.fixture
def actor(services: Services) -> Actor:
    """A registered analytics client, as authentication would return it."""
    issued = register_client(
        services,
        actor=OPERATOR_ACTOR,
        name="personalization-test",
        role="client",
        purposes=["personalization"],
        scopes=[],
        request_id=None,
    )
    with services.reading() as session:
        return authenticate(session, issued.key)


@dataclasses.dataclass
class Exported:
    lines: list[dict[str, Any]]
    body: str
    granted: set[str]
    others: set[str]


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
            grant(app_client, keys.app, member_id, "personalization")
        if history == "withdrawn":
            grant(
                app_client,
                keys.crm,
                member_id,
                "personalization",
                "withdrawn",
                "2026-11-02T10:00:00Z",
            )
        if history == "refused":
            grant(app_client, keys.app, member_id, "personalization", "refused")
        (granted if history == "granted" else others).add(member_id)
        # Consent for another purpose must not admit a member to analytics.
        grant(app_client, keys.app, member_id, "marketing_sms")

    response = app_client.get("/v1/members?purpose=personalization", headers=auth(keys.recs))
    assert response.status_code == 200, response.text
    assert response.headers["content-type"].startswith("application/x-ndjson")
    lines = [json.loads(line) for line in response.text.splitlines()]
    trailer = lines.pop()  # a complete export ends with its counts
    assert trailer == {
        "trailer": {"batches": 3, "examined": MEMBERS, "released": len(lines), "damaged": 0}
    }
    return Exported(
        lines=lines,
        body=response.text,
        granted=granted,
        others=others,
    )


def test_export_releases_exactly_the_members_with_analytics_consent(exported: Exported) -> None:
    released = [line["id"] for line in exported.lines]
    assert len(released) == len(set(released))  # nobody twice
    assert set(released) == exported.granted
    assert len(exported.granted) > 0 and len(exported.others) > 0


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
    exports = EntryFilter(action="member.export", actor=keys.ids["recs"])
    entries, _ = page_entries(session, exports, cursor=None, limit=100)
    named = {m for e in entries for m in e["members"]}
    assert named == exported.granted
    for member in exported.others:
        found, _ = page_entries(
            session, EntryFilter(member=member, action="member.export"), cursor=None, limit=10
        )
        assert found == []


@pytest.mark.parametrize(
    ("client", "purpose"),
    [("recs", "personalization"), ("crm", "customer_service")],
)
def test_export_lines_are_byte_for_byte_what_the_single_member_read_path_releases(
    exported: Exported, services: Services, keys: Keys, client: str, purpose: str
) -> None:
    """The export's own release path (views and pseudonym key resolved once per
    export) must give what the single-member read path (``decide_reads``, then
    ``Decided.release``) gives, key order included: clients match on these bytes."""
    credential = getattr(keys, client)
    with services.reading() as session:
        actor = authenticate(session, credential)
    lines = list(export_members(services, actor=actor, purpose=purpose, request_id=None).lines)

    admitted = exported.granted | (exported.others if purpose == "customer_service" else set())
    key = services.keyring.pseudonym_key_for(actor.id)
    members = sorted(admitted)
    reads = [
        ReadRequest(
            credential=credential,
            member_id=member,
            purpose=purpose,
            request_id=None,
            roles=("client",),
        )
        for member in members
    ]
    outcomes = decide_reads(services, reads)
    assert all(isinstance(outcome, Decided) for outcome in outcomes), outcomes
    expected = {
        member: {
            "id": member,
            "fields": outcome.release(services).fields,  # type: ignore[union-attr]
        }
        for member, outcome in zip(members, outcomes, strict=True)
    }

    # And both are what the policy's views give, computed here without the
    # release class they share.
    views = services.policy.purposes[purpose].fields
    with services.reading() as session:
        sealed = load_sealed(session, members, views)
    for member in members:
        values = sealed[member].open(services.keyring)
        assert expected[member]["fields"] == {
            name: pseudonym(key, member)
            if view == "pseudonym"
            else apply_view(services.policy.fields[name].type, view, values[name])
            for name, view in views.items()
            if name in values
        }

    def ndjson(line: dict[str, Any]) -> str:
        return json.dumps(line, ensure_ascii=False, separators=(",", ":"))

    assert len(lines) == len(expected)
    assert {line["id"]: ndjson(line) for line in lines} == {
        line["id"]: ndjson(line) for line in expected.values()
    }
    assert any(line["fields"] for line in lines)


# -- each batch decides and records afresh ----------------------------------------


def batch_members(services: Services, session: Session, count: int) -> list[str]:
    """``count`` members with analytics consent, in the order the export reads them."""
    load_consenting_members(services, count, seed=3)
    return list(session.scalars(select(VaultMember.id).order_by(VaultMember.id)))


def test_a_consent_withdrawn_during_an_export_takes_effect_in_the_next_batch(
    app_client: TestClient, services: Services, keys: Keys, session: Session
) -> None:
    members = batch_members(services, session, 2 * services.settings.export_batch_size)
    withdrawn = members[services.settings.export_batch_size + 2]  # in the second batch
    with services.reading() as session:
        actor = authenticate(session, keys.recs)
    export = export_members(services, actor=actor, purpose="personalization", request_id=None)
    first = next(export.lines)  # the first batch is decided, the second is not
    grant(app_client, keys.app, withdrawn, "personalization", "withdrawn", "2026-11-02T10:00:00Z")
    released = [first["id"], *(line["id"] for line in export.lines)]
    assert released == [m for m in members if m != withdrawn]
    named = page_entries(
        session, EntryFilter(member=withdrawn, action="member.export"), cursor=None, limit=10
    )[0]
    assert named == []


def test_a_member_whose_data_key_was_shredded_is_neither_released_nor_named(
    services: Services, session: Session, actor: Actor
) -> None:
    members = batch_members(services, session, services.settings.export_batch_size + 3)
    shredded = members[2]
    with services.uow() as uow:
        uow.session.execute(delete(VaultDataKey).where(VaultDataKey.member_id == shredded))
        uow.commit()
    export = export_members(services, actor=actor, purpose="personalization", request_id=None)
    released = [line["id"] for line in export.lines]
    assert released == [m for m in members if m != shredded]
    named = page_entries(
        session, EntryFilter(member=shredded, action="member.export"), cursor=None, limit=10
    )[0]
    assert named == []


def test_an_export_batch_whose_audit_commit_fails_releases_nothing_of_it(
    services: Services, session: Session, actor: Actor, monkeypatch: pytest.MonkeyPatch
) -> None:
    members = batch_members(services, session, 2 * services.settings.export_batch_size)
    commits = 0
    commit = AuditedUnitOfWork.commit

    def failing_second_commit(self: AuditedUnitOfWork) -> list:
        nonlocal commits
        commits += 1
        if commits == 2:
            raise AuditUnavailable("the audit log could not be committed (test)")
        return commit(self)

    opened: list[str] = []
    open_member = SealedMember.open

    def counting_open(self: SealedMember, keyring: Keyring) -> dict[str, Any]:
        opened.append(self.member_id)
        return open_member(self, keyring)

    monkeypatch.setattr(AuditedUnitOfWork, "commit", failing_second_commit)
    monkeypatch.setattr(SealedMember, "open", counting_open)
    export = export_members(services, actor=actor, purpose="personalization", request_id=None)
    released = []
    with pytest.raises(AuditUnavailable):
        for line in export.lines:
            released.append(line)
    first_batch = members[: services.settings.export_batch_size]
    # A batch is opened before its entry is written (so that the entry names
    # only members whose lines exist), and its lines are sent only after the
    # commit: the second batch was opened, then dropped.
    assert opened == members
    assert [line["id"] for line in released] == first_batch
    for member in members[services.settings.export_batch_size :]:
        named = page_entries(
            session, EntryFilter(member=member, action="member.export"), cursor=None, limit=10
        )[0]
        assert named == []


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
                ImportedConsent(m, "personalization", "granted", "app", collected)
            ],
        )


def export_peak(services: Services, actor: Actor) -> tuple[int, int]:
    """(lines released, peak traced bytes) while consuming a whole export."""
    gc.collect()
    tracemalloc.start()
    try:
        started = export_members(services, actor=actor, purpose="personalization", request_id=None)
        released = sum(1 for _ in started.lines)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    return released, peak


def test_export_memory_stays_flat_as_the_member_count_grows(
    services: Services, actor: Actor
) -> None:
    services = dataclasses.replace(
        services, settings=services.settings.model_copy(update={"export_batch_size": BATCH})
    )
    load_consenting_members(services, SMALL, seed=1)
    export_peak(services, actor)  # warm caches so the small run is not inflated
    released_small, peak_small = export_peak(services, actor)
    load_consenting_members(services, LARGE - SMALL, seed=2)
    released_large, peak_large = export_peak(services, actor)
    assert (released_small, released_large) == (SMALL, LARGE)
    assert peak_large < 1.5 * peak_small + SLACK, (peak_small, peak_large)


def test_an_actor_whose_client_does_not_exist_gets_nothing(
    services: Services, session: Session, actor: Actor
) -> None:
    batch_members(services, session, 3)
    ghost = dataclasses.replace(actor, id=new_id())  # never registered
    with pytest.raises(Unauthenticated):
        export = export_members(services, actor=ghost, purpose="personalization", request_id=None)
        next(iter(export.lines))
