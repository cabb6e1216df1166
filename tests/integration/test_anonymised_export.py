"""Pseudonymous exports are anonymised: pseudonym order, generalised values, k-anonymity.

The review's attack: two analytics clients' exports listed rows in member-id
order, so they aligned by position, and exact balances and dates in clear were
unique per member and matched the customer-service export, which carries ids.
Also here: a damaged ciphertext is skipped and reported, never claimed.
"""

from __future__ import annotations

import dataclasses
import json
from collections import Counter
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import select, update
from sqlalchemy.orm import Session

import gate.export
from audit.queries import EntryFilter, page_entries
from cli.demo_data import generate_members
from consent.registry import ConsentChange, ImportedConsent
from gate.clients import register_client
from gate.consents import record_member_consent
from gate.context import Services
from gate.export import export_members
from gate.imports import import_members
from gate.reads import Decided, ReadRequest, decide_reads
from gate.writes import update_member_record
from principals import OPERATOR_ACTOR, Actor
from principals.clients import authenticate
from tests.api.conftest import auth
from tests.conftest import Keys
from vault.masking import pseudonym
from vault.models import VaultField

K = 5  # the default policy's analytics k_anonymity
COLLECTED = datetime(2026, 1, 5, tzinfo=UTC)

# (group size, the quasi-identifiers every member of the group shares)
GROUPS = [
    (6, {"gender": "女", "tier": "金卡", "points_balance": 1200, "registered_at": "2021-03-04"}),
    (5, {"gender": "男", "tier": "普通", "points_balance": 300, "registered_at": "2024-07-01"}),
    (3, {"gender": "男", "tier": "钻石", "points_balance": 60_000, "registered_at": "2019-01-01"}),
    (1, {"gender": "未知", "tier": "银卡", "points_balance": 7_000, "registered_at": "2023-05-05"}),
]


def load_groups(services: Services, groups: list[tuple[int, dict[str, Any]]]) -> list[list[str]]:
    """Members with analytics consent, in groups sharing the released values; ids per group."""
    total = sum(size for size, _ in groups)
    generated = iter(generate_members(total, seed=11))
    batch: list[dict[str, Any]] = []
    for size, shared in groups:
        for n in range(size):
            # Exact values differ inside a group (the views generalise them away).
            member = {**next(generated), **shared, "channel": "app"}
            member["points_balance"] = shared["points_balance"] + n
            member["registered_at"] = shared["registered_at"][:5] + f"0{1 + n % 9}-1{n % 9}"
            batch.append(member)
    ids = import_members(
        services,
        batch,
        source="test",
        history=lambda m, _member: [ImportedConsent(m, "analytics", "granted", "app", COLLECTED)],
    )
    out, start = [], 0
    for size, _ in groups:
        out.append(ids[start : start + size])
        start += size
    return out


@pytest.fixture
def analytics(services: Services) -> Callable[[str], Actor]:
    def register(name: str) -> Actor:
        issued = register_client(
            services,
            actor=OPERATOR_ACTOR,
            name=name,
            role="client",
            purposes=["analytics"],
            scopes=[],
            request_id=None,
        )
        with services.reading() as session:
            return authenticate(session, issued.key)

    return register


def export_lines(services: Services, actor: Actor) -> tuple[list[dict[str, Any]], dict]:
    started = export_members(services, actor=actor, purpose="analytics", request_id=None)
    lines = list(started.lines)
    return lines, started.trailer["trailer"]


def export_entries(session: Session, actor: Actor) -> list[dict[str, Any]]:
    found = EntryFilter(action="member.export", actor=actor.id)
    return page_entries(session, found, cursor=None, limit=100)[0]


def test_rows_come_in_pseudonym_order_so_two_clients_exports_do_not_line_up(
    services: Services, analytics: Callable[[str], Actor]
) -> None:
    groups = load_groups(services, [(12, GROUPS[0][1]), (12, GROUPS[1][1])])
    first, second = analytics("analytics-a"), analytics("analytics-b")
    rows_a, _ = export_lines(services, first)
    rows_b, _ = export_lines(services, second)
    members = [m for group in groups for m in group]
    key_a = services.keyring.pseudonym_key_for(first.id)
    key_b = services.keyring.pseudonym_key_for(second.id)
    by_pseudonym_a = {pseudonym(key_a, m): m for m in members}
    by_pseudonym_b = {pseudonym(key_b, m): m for m in members}
    order_a = [by_pseudonym_a[row["pseudonym"]] for row in rows_a]
    order_b = [by_pseudonym_b[row["pseudonym"]] for row in rows_b]
    assert sorted(order_a) == sorted(members) == sorted(order_b)
    assert [row["pseudonym"] for row in rows_a] == sorted(row["pseudonym"] for row in rows_a)
    # Neither follows member-id order, and position i is not the same member.
    assert order_a != sorted(members) and order_b != sorted(members)
    assert sum(a == b for a, b in zip(order_a, order_b, strict=True)) < len(members) // 2


def test_every_released_combination_is_shared_by_k_rows_and_smaller_groups_are_suppressed(
    services: Services, session: Session, analytics: Callable[[str], Actor]
) -> None:
    groups = load_groups(services, GROUPS)
    actor = analytics("analytics-k")
    rows, trailer = export_lines(services, actor)

    combinations = Counter(json.dumps(row["fields"], sort_keys=True) for row in rows)
    assert min(combinations.values()) >= K
    assert len(rows) == 6 + 5
    # The generalising views of the policy, not the exact values.
    assert {row["fields"]["points_balance"] for row in rows} == {"1000-4999", "0-999"}
    assert {row["fields"]["registered_at"] for row in rows} == {"2021", "2024"}
    assert all(set(row) == {"pseudonym", "fields"} for row in rows)

    suppressed = {"k": K, "small_groups": 3 + 1, "changed_during_export": 0, "damaged": 0}
    assert trailer == {"batches": 2, "examined": 15, "released": 11, "suppressed": suppressed}
    entries = export_entries(session, actor)
    assert [e["detail"]["batch"] for e in entries] == [1, 2]  # batch size 7
    assert entries[0]["detail"]["suppressed"] == suppressed
    named = [m for e in entries for m in e["members"]]
    assert sorted(named) == sorted(groups[0] + groups[1])  # exactly the rows released


@pytest.mark.parametrize("change", ["withdrawn", "updated"])
def test_a_group_shrunk_below_k_while_the_export_runs_is_suppressed_whole(
    change: str,
    services: Services,
    session: Session,
    keys: Keys,
    analytics: Callable[[str], Actor],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    groups = load_groups(services, GROUPS[:2])
    leaving = groups[1][0]  # of the group of exactly k
    actor = analytics("analytics-race")
    with services.reading() as reading:
        app = authenticate(reading, keys.app)
        crm = authenticate(reading, keys.crm)
    planned = gate.export._k_anonymous
    calls = 0

    def withdraw_after_the_plan(rows: list, k: int) -> list:
        nonlocal calls
        calls += 1
        if calls == 1 and change == "updated":
            # Same released values, but not the member the plan opened.
            update_member_record(
                services, actor=crm, member_id=leaving, values={"tier": "普通"}, request_id=None
            )
        elif calls == 1:  # the plan is made; the decision has not started
            record_member_consent(
                services,
                actor=app,
                member_id=leaving,
                change=ConsentChange(
                    purposes=["analytics"],
                    status="withdrawn",
                    channel="app",
                    collected_at=services.clock(),
                ),
                request_id=None,
            )
        return planned(rows, k)

    monkeypatch.setattr(gate.export, "_k_anonymous", withdraw_after_the_plan)
    rows, trailer = export_lines(services, actor)
    assert len(rows) == 6  # the other four of the group are suppressed with it
    assert trailer["suppressed"] == {
        "k": K,
        "small_groups": 4,
        "changed_during_export": 1,
        "damaged": 0,
    }
    named = {m for e in export_entries(session, actor) for m in e["members"]}
    assert named == set(groups[0])


def test_rows_are_what_the_single_read_path_releases_under_the_pseudonym_never_an_id(
    app_client: TestClient, services: Services, keys: Keys
) -> None:
    members = [m for group in load_groups(services, GROUPS[:2]) for m in group]
    response = app_client.get("/v1/members?purpose=analytics", headers=auth(keys.analytics))
    assert response.status_code == 200
    lines = [json.loads(line) for line in response.text.splitlines()][:-1]
    assert len(lines) == 11
    for member in members:
        assert member not in response.text
    # Each row's fields are byte for byte what a single gated read of that
    # member releases to the same client.
    key = services.keyring.pseudonym_key_for(keys.ids["analytics"])
    by_pseudonym = {pseudonym(key, m): m for m in members}
    reads = decide_reads(
        services,
        [
            ReadRequest(
                credential=keys.analytics,
                member_id=by_pseudonym[line["pseudonym"]],
                purpose="analytics",
                request_id=None,
                roles=("client",),
            )
            for line in lines
        ],
    )
    for line, outcome in zip(lines, reads, strict=True):
        assert isinstance(outcome, Decided), outcome
        single = outcome.release(services).fields
        assert json.dumps(line["fields"], ensure_ascii=False) == json.dumps(
            single, ensure_ascii=False
        )


def test_k_is_the_purposes_own(services: Services, analytics: Callable[[str], Actor]) -> None:
    purposes = dict(services.policy.purposes)
    purposes["analytics"] = purposes["analytics"].model_copy(update={"k_anonymity": 3})
    policy = services.policy.model_copy(update={"purposes": purposes})
    services = dataclasses.replace(services, policy=policy)
    load_groups(services, GROUPS)
    rows, trailer = export_lines(services, analytics("analytics-k3"))
    # The group of 3 now stays; the group of 1 still goes.
    assert len(rows) == 6 + 5 + 3
    assert trailer["suppressed"]["k"] == 3
    assert trailer["suppressed"]["small_groups"] == 1


def test_the_policy_check_warns_of_values_unique_per_member_in_a_pseudonymous_purpose(
    services: Services,
) -> None:
    assert services.policy.anonymity_warnings() == []
    data = services.policy.model_dump(mode="json")
    data["purposes"]["analytics"]["fields"].update(
        {"registered_at": "clear", "points_balance": "clear", "home_store": "clear"}
    )
    changed = type(services.policy).model_validate(data)
    warnings = changed.anonymity_warnings()
    assert len(warnings) == 3
    assert any(
        w.startswith("purposes.analytics.fields.registered_at:") and "'year'" in w for w in warnings
    )
    assert any("points_balance" in w and "'band'" in w for w in warnings)


# -- a damaged ciphertext (item 9 of the review) -----------------------------------


def corrupt(session: Session, member_id: str, field: str) -> None:
    ct = session.scalar(
        select(VaultField.value_ct).where(
            VaultField.member_id == member_id, VaultField.name == field
        )
    )
    assert ct is not None
    flipped = ct[:-1] + bytes([ct[-1] ^ 1])
    session.execute(
        update(VaultField)
        .where(VaultField.member_id == member_id, VaultField.name == field)
        .values(value_ct=flipped)
    )
    session.commit()


@pytest.mark.parametrize(
    ("client", "purpose", "label"),
    [("crm", "delivery", "id"), ("analytics", "analytics", "pseudonym")],
)
def test_a_damaged_member_is_skipped_named_in_a_vault_integrity_entry_and_never_claimed(
    app_client: TestClient,
    services: Services,
    session: Session,
    keys: Keys,
    client: str,
    purpose: str,
    label: str,
) -> None:
    members = [m for group in load_groups(services, GROUPS[:2]) for m in group]
    damaged = members[6]  # in the group of k=5 (and the second batch of 7)
    corrupt(session, damaged, "phone" if purpose == "delivery" else "gender")
    response = app_client.get(f"/v1/members?purpose={purpose}", headers=auth(getattr(keys, client)))
    assert response.status_code == 200
    lines = [json.loads(line) for line in response.text.splitlines()]
    trailer = lines.pop()["trailer"]
    entries = page_entries(
        session,
        EntryFilter(action="member.export", actor=keys.ids[client]),
        cursor=None,
        limit=100,
    )[0]
    named = {m for e in entries for m in e["members"]}
    assert damaged not in named
    assert sum(e["detail"]["released"] for e in entries) == len(lines) == trailer["released"]
    integrity = page_entries(session, EntryFilter(action="vault.integrity"), cursor=None, limit=10)[
        0
    ]
    assert [(e["members"], e["decision"], e["actor"]) for e in integrity] == [
        ([damaged], "deny", keys.ids[client])
    ]
    if purpose == "delivery":
        assert trailer["damaged"] == 1
        assert sorted(line["id"] for line in lines) == sorted(set(members) - {damaged})
    else:
        # The damaged member's group fell to 4: suppressed with it.
        assert trailer["suppressed"]["damaged"] == 1
        assert len(lines) == 6
    assert damaged not in response.text
