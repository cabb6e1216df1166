"""``memberguard demo``: a realistic programme to try the gate on.

Loads synthetic members (``cli.demo_data``) through the vault's validation and
encryption, with their consent history, in batches of one transaction each;
every batch is one ``member.import`` audit entry naming the members it created.
Then it registers the demo clients and prints their keys and curl commands.
"""

from __future__ import annotations

import random
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from sqlalchemy import func, select

from audit.log import Record, append_entry
from cli.demo_data import generate_members, plan_consents
from consent.models import ConsentState
from consent.registry import ImportedConsent, import_consents
from gate.clients import OPERATOR_ACTOR, add_client, find_client, issue_key
from gate.context import Services, commit_audited
from vault.members import create_members_bulk, validate_values
from vault.models import VaultMember

BATCH = 1000


@dataclass(frozen=True)
class DemoClient:
    name: str
    role: str
    purposes: tuple[str, ...] = ()
    scopes: tuple[str, ...] = ()


DEMO_CLIENTS = (
    DemoClient(
        "crm",
        "client",
        (
            "membership",
            "customer_service",
            "marketing_sms",
            "marketing_email",
            "birthday_benefits",
            "personalization",
        ),
        ("members:write", "consents:read", "consents:write"),
    ),
    DemoClient("sms_gateway", "client", ("marketing_sms",)),
    DemoClient("analytics", "client", ("analytics",)),
    DemoClient(
        "pos",
        "client",
        ("membership", "customer_service", "birthday_benefits", "identity_verification"),
        ("members:write", "consents:write"),
    ),
    DemoClient("dpo", "auditor"),
    DemoClient("admin", "admin"),
)


def member_count(services: Services) -> int:
    with services.uow() as uow:
        return uow.session.scalar(select(func.count()).select_from(VaultMember)) or 0


def load_members(services: Services, n: int, *, seed: int, progress: Callable[[int], None]) -> None:
    rng = random.Random(seed)
    now = services.clock()
    batch: list[dict[str, object]] = []
    for member in generate_members(n, seed=seed):
        batch.append(member)
        if len(batch) == BATCH:
            _load_batch(services, batch, rng, now)
            progress(len(batch))
            batch = []
    if batch:
        _load_batch(services, batch, rng, now)
        progress(len(batch))


def _load_batch(
    services: Services, batch: list[dict[str, object]], rng: random.Random, now: datetime
) -> None:
    policy = services.policy
    clean = [
        {k: v for k, v in validate_values(policy, member, partial=False).items() if v is not None}
        for member in batch
    ]
    with services.uow() as uow:
        ids = create_members_bulk(
            uow.session, policy=policy, keyring=services.keyring, batch=clean, clock=services.clock
        )
        events: list[ImportedConsent] = []
        for member_id, member in zip(ids, batch, strict=True):
            registered = datetime.fromisoformat(str(member["registered_at"])).replace(tzinfo=UTC)
            for plan in plan_consents(member, rng):
                given = registered + timedelta(days=rng.randint(0, 30))
                if plan.status == "withdrawn":
                    events.append(
                        ImportedConsent(member_id, plan.purpose, "granted", plan.channel, given)
                    )
                    given = min(now, given + timedelta(days=rng.randint(30, 900)))
                events.append(
                    ImportedConsent(member_id, plan.purpose, plan.status, plan.channel, given)
                )  # type: ignore[arg-type]
        appended = append_entry(
            uow.session,
            Record(
                action="member.import",
                decision="permit",
                reason="operator",
                policy=policy.version,
                actor=OPERATOR_ACTOR.id,
                actor_role=OPERATOR_ACTOR.role,
                members=ids,
                detail={"source": "demo", "members": len(ids), "consent_events": len(events)},
            ),
            clock=services.clock,
        )
        import_consents(
            uow.session,
            policy=policy,
            events=events,
            recorded_by=OPERATOR_ACTOR.id,
            audit_seq=appended.seq,
            now=now,
        )
        commit_audited(uow)


def ensure_clients(services: Services) -> dict[str, str]:
    """Create the demo clients, or replace existing ones' keys. Returns name → key."""
    keys: dict[str, str] = {}
    for spec in DEMO_CLIENTS:
        with services.uow() as uow:
            existing = find_client(uow.session, spec.name)
            if existing is not None and existing.revoked_at is None:
                keys[spec.name] = issue_key(
                    uow.session,
                    policy=services.policy,
                    client_id=existing.id,
                    actor=OPERATOR_ACTOR,
                    clock=services.clock,
                    replace=True,  # the keys printed last time stop working
                )
            elif existing is None:
                keys[spec.name] = add_client(
                    uow.session,
                    policy=services.policy,
                    name=spec.name,
                    role=spec.role,
                    purposes=list(spec.purposes),
                    scopes=list(spec.scopes),
                    actor=OPERATOR_ACTOR,
                    request_id=None,
                    clock=services.clock,
                ).key
            commit_audited(uow)
    return keys


def sample_members(services: Services) -> tuple[str | None, str | None]:
    """One member who granted marketing_sms and one who has not (for the curl tour)."""
    with services.uow() as uow:
        session = uow.session
        granted = session.scalar(
            select(ConsentState.member_id)
            .where(ConsentState.purpose == "marketing_sms", ConsentState.status == "granted")
            .order_by(ConsentState.member_id)
            .limit(1)
        )
        with_sms = select(ConsentState.member_id).where(
            ConsentState.purpose == "marketing_sms", ConsentState.status == "granted"
        )
        without = session.scalar(
            select(VaultMember.id)
            .where(VaultMember.id.not_in(with_sms))
            .order_by(VaultMember.id)
            .limit(1)
        )
        return granted, without
