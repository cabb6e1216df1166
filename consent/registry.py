"""Recording consent and reading its current state.

``consent_state`` is derived from ``consent_event`` (the latest event per
member and purpose wins) and kept in the same transaction, so a read decided
after a withdrawal commits sees the withdrawal. Nothing caches consent.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Collection
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, Literal

from sqlalchemy import bindparam, insert, select
from sqlalchemy.orm import Session

from consent.models import ConsentEvent, ConsentReceipt, ConsentState
from consent.receipt import build_receipt
from core.errors import Conflict, Forbidden, InvalidInput
from policies.decide import ConsentFact, UnknownPurpose
from policies.model import Policy

RecordableStatus = Literal["granted", "withdrawn", "refused"]
# Touchpoints (POS tills, offline apps) may sync late, but not from the future.
MAX_CLOCK_SKEW = timedelta(minutes=5)
EARLIEST_COLLECTION = datetime(2000, 1, 1, tzinfo=UTC)


def effective_at(collected_at: datetime, recorded_at: datetime) -> datetime:
    """When a change takes effect: when it was collected, but never later than when
    memberguard recorded it, so a clock running ahead at a touchpoint cannot make a
    grant outrank a withdrawal recorded after it."""
    return min(collected_at, recorded_at)


def supersedes(status: str, at: datetime, current_status: str, current_at: datetime) -> bool:
    """Does a change (status, at) replace the current state? Later wins; on a tie,
    a withdrawal or refusal wins over a grant."""
    if at != current_at:
        return at > current_at
    return status != "granted" or current_status == "granted"


class BundledConsent(Conflict):
    """PIPL Arts. 23, 29, 39: a separate consent must be given on its own."""

    slug = "bundled-consent"
    title = "Separate consent cannot be bundled"


@dataclass(frozen=True, slots=True)
class ConsentChange:
    purposes: list[str]
    status: RecordableStatus
    channel: str
    collected_at: datetime
    notice_version: str | None = None


@dataclass(frozen=True, slots=True)
class RecordedConsent:
    audit_seq: int
    events: list[dict[str, Any]]
    receipt: dict[str, Any] | None
    # The state each purpose is in after this change: an event collected
    # earlier than the current state's does not change it.
    state: dict[str, dict[str, Any]]
    # The purposes whose current state this change set (all of them, unless an
    # event arrived later than a newer one and lost to it): what the change
    # feed tells (``feed.events.consent_changed``).
    took_effect: tuple[str, ...] = ()


def new_receipt_id(change: ConsentChange) -> str | None:
    """A grant gets a receipt; withdrawals and refusals do not."""
    return str(uuid.uuid4()) if change.status == "granted" else None


class SeparateConsentAlone(InvalidInput):
    """A member grants a separate consent in a request of its own (``check_own_change``)."""

    slug = "separate-consent-alone"
    title = "Separate consent must be given alone"


def check_own_change(policy: Policy, change: ConsentChange) -> None:
    """A member's own grant (``/v1/me/consents``): a purpose that needs separate consent
    is granted alone, one per request, so that the member's screen can only ever
    show it on its own (PIPL Arts. 23, 29, 39).

    Checked before ``check_change`` (whose ``bundled-consent`` 409 answers
    clients for the same rule): from a member this is a malformed request, 422.
    Withdrawals may name several purposes at once: withdrawing must be as easy
    as granting was. Unknown purposes are left to ``check_change``.
    """
    if change.status != "granted" or len(change.purposes) < 2:
        return
    spec = policy.purposes
    separate = [p for p in change.purposes if p in spec and spec[p].separate_consent]
    if separate:
        raise SeparateConsentAlone(
            "a purpose that needs separate consent is granted on its own, one per request: "
            + ", ".join(separate),
            separate_purposes=separate,
        )


def check_recorder(
    policy: Policy,
    change: ConsentChange,
    *,
    recorder_purposes: frozenset[str],
    recorder_collects_only: bool,
    recorder_is_member: bool = False,
) -> None:
    """Separation of duties: may this client record this change?

    Anyone with ``consents:write`` may record a withdrawal or a refusal: the
    member's "no" must reach the registry by whatever touchpoint heard it. A
    grant is different, since it opens data to someone:

    - a client may not record a grant for a purpose it may itself read (it
      would be granting itself access);
    - a separate consent (sensitive data, third parties, cross-border,
      PIPL Arts. 29, 23, 39) is granted by the member themselves
      (``recorder_is_member``: the member's own act, through ``/v1/me``, one such
      purpose per request) or by a client whose only job is collecting consent
      (``Actor.collects_consent_only``).
    """
    if change.status != "granted":
        return
    own = sorted(set(change.purposes) & recorder_purposes)
    if own:
        raise Forbidden(
            "a client may not record a grant for a purpose it may read itself: " + ", ".join(own),
            slug="consent-self-grant",
        )
    separate = sorted(p for p in change.purposes if policy.purposes[p].separate_consent)
    if separate and recorder_is_member and len(change.purposes) == 1:
        return
    if separate and not recorder_collects_only:
        raise Forbidden(
            "a separate consent is granted by the member or by a client that only collects "
            "consent (no purposes of its own): " + ", ".join(separate),
            slug="separate-consent-collector-only",
        )


def record_consent(
    session: Session,
    *,
    policy: Policy,
    member_id: str,
    change: ConsentChange,
    notices: dict[str, str | None],
    receipt_id: str | None,
    recorded_by: str,
    audit_seq: int,
    now: datetime,
) -> RecordedConsent:
    """Append one event per purpose, update the state, keep the receipt; flushes only.

    ``change`` was checked by ``check_change`` (which gave ``notices``), and
    the caller's unit of work holds the log-head lock and records the entry
    ``audit_seq``. A withdrawal or refusal of a consent that was never granted
    is accepted and recorded: it is the member's stated wish, and it must win
    over any grant that a slower touchpoint syncs later with an earlier
    ``collected_at``.
    """
    events: list[dict[str, Any]] = []
    states: dict[str, dict[str, Any]] = {}
    took_effect: list[str] = []
    for pid in change.purposes:
        notice = policy.notices.get(notices[pid]) if notices[pid] else None
        event = ConsentEvent(
            member_id=member_id,
            purpose=pid,
            status=change.status,
            channel=change.channel,
            collected_at=change.collected_at,
            recorded_at=now,
            recorded_by=recorded_by,
            notice_version=notices[pid],
            notice_sha256=notice.sha256 if notice else None,
            receipt_id=receipt_id,
            audit_seq=audit_seq,
        )
        session.add(event)
        session.flush()
        state, applied = _apply_to_state(session, event)
        if applied:
            took_effect.append(pid)
        events.append(event_view(event))
        states[pid] = state_view(state)

    receipt = None
    if receipt_id is not None:
        receipt = build_receipt(
            policy,
            receipt_id=receipt_id,
            member_id=member_id,
            purposes=change.purposes,
            notice_versions=notices,
            channel=change.channel,
            collected_at=change.collected_at,
        )
        session.add(
            ConsentReceipt(
                id=receipt_id,
                member_id=member_id,
                issued_at=now,
                body=json.dumps(receipt, sort_keys=True, ensure_ascii=False),
            )
        )
    session.flush()
    return RecordedConsent(
        audit_seq=audit_seq,
        events=events,
        receipt=receipt,
        state=states,
        took_effect=tuple(took_effect),
    )


def check_change(policy: Policy, change: ConsentChange, now: datetime) -> dict[str, str | None]:
    """Every rule a change must meet, before anything is read; returns the notice per purpose."""
    if not change.purposes:
        raise InvalidInput("at least one purpose is required")
    if len(set(change.purposes)) != len(change.purposes):
        raise InvalidInput("a purpose is listed twice")
    unknown = [p for p in change.purposes if p not in policy.purposes]
    if unknown:
        raise UnknownPurpose(
            f"{len(unknown)} purpose(s) are not in the policy",
            known_purposes=sorted(policy.purposes),
        )
    not_consent = [p for p in change.purposes if not policy.purposes[p].needs_consent]
    if not_consent:
        raise InvalidInput(
            "these purposes do not rest on consent, so there is nothing to record: "
            + ", ".join(not_consent)
        )
    separate = [p for p in change.purposes if policy.purposes[p].separate_consent]
    if change.status == "granted" and separate and len(change.purposes) > 1:
        raise BundledConsent(
            "purposes that need separate consent must be granted alone: " + ", ".join(separate),
            separate_purposes=separate,
        )
    if change.channel not in policy.programme.channels:
        raise InvalidInput(
            "channel is not one of the programme's touchpoints",
            known_channels=list(policy.programme.channels),
        )
    if change.collected_at.tzinfo is None:
        raise InvalidInput("collected_at must carry a time zone (RFC 3339)")
    if change.collected_at > now + MAX_CLOCK_SKEW:
        raise InvalidInput("collected_at is in the future")
    if change.collected_at < EARLIEST_COLLECTION:
        raise InvalidInput("collected_at is before 2000-01-01")
    if change.notice_version is not None and change.notice_version not in policy.notices:
        raise InvalidInput(
            "notice_version is not a notice of this policy", known_notices=sorted(policy.notices)
        )
    notices: dict[str, str | None] = {}
    for pid in change.purposes:
        spec = policy.purposes[pid]
        version = change.notice_version or spec.notice
        if change.status == "granted" and version not in spec.accepted_notices:
            raise InvalidInput(
                f"notice version is not accepted for {pid}",
                accepted_notices=list(spec.accepted_notices),
            )
        notices[pid] = version
    if change.notice_version is not None and len(change.purposes) > 1:
        for pid in change.purposes:
            if change.notice_version not in policy.purposes[pid].accepted_notices:
                raise InvalidInput(f"notice version is not accepted for {pid}")
    return notices


def _apply_to_state(session: Session, event: ConsentEvent) -> tuple[ConsentState, bool]:
    """The member's state for the event's purpose, and whether the event set it."""
    at = effective_at(event.collected_at, event.recorded_at)
    state = session.get(ConsentState, (event.member_id, event.purpose))
    if state is None:
        state = ConsentState(
            member_id=event.member_id,
            purpose=event.purpose,
            status=event.status,
            notice_version=event.notice_version,
            updated_at=at,
        )
        session.add(state)
        return state, True
    # The state follows collection time, not arrival order: an offline till
    # that syncs an old grant after a newer withdrawal must not revive it.
    if not supersedes(event.status, at, state.status, state.updated_at):
        return state, False
    state.status = event.status
    state.notice_version = event.notice_version
    state.updated_at = at
    return state, True


def event_view(event: ConsentEvent) -> dict[str, Any]:
    return {
        "id": event.id,
        "purpose": event.purpose,
        "status": event.status,
        "channel": event.channel,
        "collected_at": event.collected_at.isoformat(),
        "recorded_at": event.recorded_at.isoformat(),
        "recorded_by": event.recorded_by,
        "notice_version": event.notice_version,
        "notice_sha256": event.notice_sha256,
        "receipt_id": event.receipt_id,
        "audit_seq": event.audit_seq,
    }


def consent_facts_for(
    session: Session, pairs: Collection[tuple[str, str]]
) -> dict[tuple[str, str], ConsentFact]:
    """Current consent for several (member, purpose) pairs, in one query.

    The batched reads, lookups and export batches all decide on this. Equal
    facts share one (immutable) ``ConsentFact``: a batch of hundreds of
    members holds a handful of distinct (status, notice) pairs.
    """
    if not pairs:
        return {}
    members = sorted({member for member, _ in pairs})
    purposes = sorted({purpose for _, purpose in pairs})
    rows = session.connection().execute(_FACTS, {"members": members, "purposes": purposes})
    shared: dict[tuple[str, str | None], ConsentFact] = {}
    facts: dict[tuple[str, str], ConsentFact] = {}
    for member, purpose, status, notice_version in rows.all():
        if (member, purpose) in pairs:
            fact = shared.get((status, notice_version))
            if fact is None:
                fact = shared[status, notice_version] = ConsentFact(status, notice_version)
            facts[member, purpose] = fact
    return facts


_FACTS = select(
    ConsentState.member_id,
    ConsentState.purpose,
    ConsentState.status,
    ConsentState.notice_version,
).where(
    ConsentState.member_id.in_(bindparam("members", expanding=True)),
    ConsentState.purpose.in_(bindparam("purposes", expanding=True)),
)


def consent_states(session: Session, member_id: str) -> dict[str, dict[str, Any]]:
    rows = session.scalars(
        select(ConsentState)
        .where(ConsentState.member_id == member_id)
        .order_by(ConsentState.purpose)
    )
    return {row.purpose: state_view(row) for row in rows}


def consent_history(session: Session, member_id: str) -> list[dict[str, Any]]:
    """Every consent event of the member, in the order recorded (an access copy holds it)."""
    events = session.scalars(
        select(ConsentEvent)
        .where(ConsentEvent.member_id == member_id)
        .order_by(ConsentEvent.purpose, ConsentEvent.id)
    )
    return sorted((event_view(e) for e in events), key=lambda view: view["id"])


def state_view(state: ConsentState) -> dict[str, Any]:
    return {
        "status": state.status,
        "notice_version": state.notice_version,
        "updated_at": state.updated_at.isoformat(),
    }


@dataclass(frozen=True, slots=True)
class ImportedConsent:
    """A consent event collected elsewhere (a migration from a legacy CRM, the demo)."""

    member_id: str
    purpose: str
    status: RecordableStatus
    channel: str
    collected_at: datetime


def import_consents(
    session: Session,
    *,
    policy: Policy,
    events: list[ImportedConsent],
    recorded_by: str,
    audit_seq: int,
    now: datetime,
) -> None:
    """Bulk-insert historical events (oldest first) and the state they lead to.

    The caller appends the audit entry (``audit_seq``) that covers the import.
    Separate-consent rules hold per event because each event names one purpose.
    """
    if not events:
        return
    rows: list[dict[str, Any]] = []
    latest: dict[tuple[str, str], ImportedConsent] = {}
    for event in events:
        spec = policy.purposes[event.purpose]
        if not spec.needs_consent:
            raise InvalidInput(f"{event.purpose} does not rest on consent")
        notice = policy.notices[spec.notice] if spec.notice else None
        rows.append(
            {
                "member_id": event.member_id,
                "purpose": event.purpose,
                "status": event.status,
                "channel": event.channel,
                "collected_at": event.collected_at,
                "recorded_at": now,
                "recorded_by": recorded_by,
                "notice_version": spec.notice,
                "notice_sha256": notice.sha256 if notice else None,
                "receipt_id": None,
                "audit_seq": audit_seq,
            }
        )
        key = (event.member_id, event.purpose)
        current = latest.get(key)
        if current is None or supersedes(
            event.status, event.collected_at, current.status, current.collected_at
        ):
            latest[key] = event
    session.execute(insert(ConsentEvent.__table__), rows)
    session.execute(
        insert(ConsentState.__table__),
        [
            {
                "member_id": e.member_id,
                "purpose": e.purpose,
                "status": e.status,
                "notice_version": policy.purposes[e.purpose].notice,
                "updated_at": effective_at(e.collected_at, now),
            }
            for e in latest.values()
        ],
    )
