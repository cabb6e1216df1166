"""``memberguard demo``: a realistic programme to try the gate on.

Loads synthetic members (``cli.demo_data``) through the vault's validation and
encryption, with their consent history, in batches of one transaction each;
every batch is one ``member.import`` audit entry naming the members it created.
Then it registers the demo clients, runs the SMS gateway's campaign (the reads the
tour's breach incident finds in the log) and prints their keys and curl commands.
"""

from __future__ import annotations

import random
from collections.abc import Callable, Collection, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from itertools import islice
from typing import Any

from sqlalchemy import func, select

from cli.demo_data import generate_members, plan_consents
from consent.models import ConsentState
from consent.registry import ImportedConsent
from gate.clients import client_state, register_client, reissue_key
from gate.context import Services
from gate.imports import import_members
from gate.reads import Decided, ReadRequest, decide_reads
from principals import OPERATOR_ACTOR
from vault.members import lookup, normalise_lookup
from vault.models import VaultDataKey, VaultMember

BATCH = 1000
# How many generated members the tour looks through for member A.
TOUR_SEARCH = 1000
# The SMS gateway's campaign: how many members it reads, under which purpose.
CAMPAIGN_CLIENT = "sms_gateway"
CAMPAIGN_PURPOSE = "marketing_sms"
CAMPAIGN_SIZE = 20


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
    # The brand app's consent screen: it records consent and reads no purpose,
    # so it may record any grant, separate consents included.
    DemoClient("app", "client", (), ("consents:read", "consents:write")),
    DemoClient("sms_gateway", "client", ("marketing_sms",)),
    DemoClient("analytics", "client", ("analytics",)),
    DemoClient(
        "pos",
        "client",
        ("membership", "customer_service", "birthday_benefits", "identity_verification"),
        ("members:write", "consents:write"),
    ),
    DemoClient("dpo", "dpo"),
    DemoClient("admin", "admin"),
)


def member_count(services: Services) -> int:
    with services.reading() as session:
        return session.scalar(select(func.count()).select_from(VaultMember)) or 0


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
    def history(member_id: str, member: Mapping[str, Any]) -> list[ImportedConsent]:
        registered = datetime.fromisoformat(str(member["registered_at"])).replace(tzinfo=UTC)
        events: list[ImportedConsent] = []
        for plan in plan_consents(member, rng):
            given = registered + timedelta(days=rng.randint(0, 30))
            if plan.status == "withdrawn":
                events.append(
                    ImportedConsent(member_id, plan.purpose, "granted", plan.channel, given)
                )
                given = min(now, given + timedelta(days=rng.randint(30, 900)))
            status: Any = plan.status
            events.append(ImportedConsent(member_id, plan.purpose, status, plan.channel, given))
        return events

    import_members(services, batch, source="demo", history=history)


def ensure_clients(services: Services) -> dict[str, str]:
    """Create the demo clients, or replace existing ones' keys. Returns name → key.

    A demo client an operator revoked stays revoked (and gets no key).
    """
    keys: dict[str, str] = {}
    for spec in DEMO_CLIENTS:
        state = client_state(services, spec.name)
        if state == "active":
            # The keys printed last time stop working.
            keys[spec.name] = reissue_key(
                services, actor=OPERATOR_ACTOR, name=spec.name, replace=True
            )
        elif state is None:
            keys[spec.name] = register_client(
                services,
                actor=OPERATOR_ACTOR,
                name=spec.name,
                role=spec.role,
                purposes=list(spec.purposes),
                scopes=list(spec.scopes),
                request_id=None,
            ).key
    return keys


@dataclass(frozen=True)
class TourMembers:
    granted: str  # granted marketing_sms: the member who signs in in the tour
    phone: str  # their (synthetic) phone, to sign in with
    without: str  # no marketing_sms consent


def sample_members(services: Services, *, seed: int) -> TourMembers | None:
    """The tour's two members: A, who granted marketing_sms (with the phone A signs in with),
    and B, who has not.

    A's phone comes from the generator, not the vault: the demo data are
    deterministic for a seed, so the n-th generated member is the n-th loaded,
    and the blind index says which id holds a generated phone. Nothing is
    decrypted, so there is no read to record.
    """
    with services.reading() as session:
        loaded = session.scalar(select(func.count()).select_from(VaultMember)) or 0
        with_sms = select(ConsentState.member_id).where(
            ConsentState.purpose == "marketing_sms", ConsentState.status == "granted"
        )
        granted = None
        # The first generated members are the first loaded: a home loaded with another
        # seed matches none, so the search stops early rather than try every member.
        for member in islice(generate_members(loaded, seed=seed), TOUR_SEARCH):
            phone = normalise_lookup("phone", member["phone"])
            found = lookup(session, keyring=services.keyring, field_name="phone", normalised=phone)
            if len(found) != 1:  # loaded with another seed, or deleted in an earlier tour
                continue
            if session.scalar(with_sms.where(ConsentState.member_id == found[0])) is not None:
                granted = (found[0], phone)
                break
        without = session.scalar(
            select(VaultMember.id)
            .join(VaultDataKey, VaultDataKey.member_id == VaultMember.id)
            .where(VaultMember.id.not_in(with_sms))
            .order_by(VaultMember.id)
            .limit(1)
        )
    if granted is None or without is None:
        return None
    return TourMembers(granted=granted[0], phone=granted[1], without=without)


def run_sms_campaign(
    services: Services, key: str, *, exclude: Collection[str], size: int = CAMPAIGN_SIZE
) -> int:
    """The SMS gateway reads ``size`` members who granted marketing_sms, as a campaign
    would before sending; returns how many reads were released.

    Through the gate's own read path (``decide_reads``, as the API's group commit calls
    it): each read decided under the log-head lock and recorded as a ``member.read``
    entry of the gateway, then decrypted. So the log shows what the gateway received,
    and the tour's breach incident ("the gateway's key leaked") finds these members.
    ``exclude``: the tour's member A, whom the gateway reads in the tour itself. Run at
    every start of the demo, so that a tour on an older home still finds a campaign
    within its "yesterday".
    """
    with services.reading() as session:
        member_ids = session.scalars(
            select(ConsentState.member_id)
            .join(VaultDataKey, VaultDataKey.member_id == ConsentState.member_id)
            .where(
                ConsentState.purpose == CAMPAIGN_PURPOSE,
                ConsentState.status == "granted",
                ConsentState.member_id.not_in(list(exclude)),
            )
            .order_by(ConsentState.member_id)
            .limit(size)
        ).all()
    if not member_ids:
        return 0
    outcomes = decide_reads(
        services,
        [
            ReadRequest(
                credential=key,
                member_id=member_id,
                purpose=CAMPAIGN_PURPOSE,
                request_id=None,
                roles=("client",),
            )
            for member_id in member_ids
        ],
    )
    released = 0
    for outcome in outcomes:
        if isinstance(outcome, Decided):
            outcome.release(services)  # what the gateway's answer would carry
            released += 1
    return released
