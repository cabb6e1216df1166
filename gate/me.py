"""What a signed-in member does with their own data: read it, see and change their
consents, see who received what.

The caller is a member ``Actor`` (a session, ``principals.members``); each use
case acts on the caller's own member id and no other.

- **Their fields** (``read_own_record``): every field, in clear, released like
  any other read: decided and recorded (``member.self_read``, every field
  ``clear``) and committed before anything is decrypted.
- **Their consents** (``read_own_consents``): the state of every purpose that
  rests on consent, with what the member needs to decide (description, legal
  basis, the current notice, separate consent). Not recorded: it shows the
  member their own decisions, which the log already holds as ``consent.change``
  entries, and it is what the app's privacy screen asks each time it opens;
  recorded, it would bury the reads by others in the member's own access log.
  What a session could see is bounded by its ``member.signin`` entry.
- **Changing a consent** (``record_own_consent``): the consent use case with
  the member as its recorder, channel ``web``, collected now; a purpose that
  needs separate consent is granted alone (``consent.registry.check_own_change``).
- **Their access log** (``read_own_access_log``): the entries that touched them,
  shaped for the member (``access_log_items``, which the access copy of a
  rights request reuses). Reading the log is not recorded, as for auditors.
- **Proof of one of their entries** (``prove_own_entry``): the RFC 9162
  inclusion proof of an entry that names the member, against the latest
  signed checkpoint, with the log's verifier key, so that the member's own
  browser can check it. Read-only, like the auditor's proofs.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal

from sqlalchemy import select

from audit import actions
from audit.actions import released
from audit.models import AuditEntryMember
from audit.notary import latest_checkpoint
from audit.proofs import NoCheckpoint, inclusion
from consent.registry import (
    ConsentChange,
    RecordableStatus,
    RecordedConsent,
    check_own_change,
    consent_states,
)
from core.clock import from_micros
from core.errors import NotFound
from gate.auditor import member_access_log
from gate.consents import record_member_consent
from gate.context import Services
from policies.decide import ConsentFact, decide_member, decide_purpose
from principals.actor import Actor
from principals.members import MEMBER_ROLE
from vault.masking import field_view
from vault.members import Value, load_sealed

# The touchpoint a member's own consent changes are recorded under: the brand
# app and the web privacy centre both call /v1/me for the member.
OWN_CHANNEL = "web"
# How the member's own actions name their actor in the member's access log.
YOU = "you"


@dataclass(frozen=True, slots=True)
class OwnRecord:
    id: str
    fields: dict[str, Value]
    audit_seq: int
    # The view each field is shown in: ``clear``, or the field's default view.
    views: dict[str, str]


OwnView = Literal["clear", "masked"]


def read_own_record(
    services: Services, *, actor: Actor, request_id: str | None, view: OwnView = "clear"
) -> OwnRecord:
    """All of the member's own fields: recorded, committed, then decrypted.

    ``view``: ``clear`` (``GET /v1/me``), or ``masked``, each field in its policy's
    default view (the privacy centre's first screen, so that a glance over the
    member's shoulder or a shared screen does not show everything; the member
    reveals the rest, a ``clear`` read of its own). The entry records the views
    released. A ciphertext that fails authentication raises ``DecryptionFailed``
    after the commit (``500 vault-integrity``): the entry records the attempted
    release, as for a client's read.
    """
    actor.require_role(MEMBER_ROLE)
    policy = services.policy
    with services.uow(actor) as uow:  # re-checks the session under the lock
        sealed = load_sealed(uow.session, [actor.id], list(policy.fields)).get(actor.id)
        if sealed is None:  # the session check needs the member; kept for the type
            raise NotFound("no such member")
        views = {
            name: policy.fields[name].default_view if view == "masked" else "clear"
            for name in sealed.fields
        }
        seq = uow.record(
            actions.member_self_read(
                actor,
                policy=policy.version,
                fields=list(sealed.fields),
                views=views,
                request_id=request_id,
            )
        )
        uow.commit()
    values = sealed.open(services.keyring)
    shown = {
        name: field_view(policy.fields[name], views[name])(values[name])
        for name in policy.fields
        if name in values and values[name] is not None
    }
    return OwnRecord(id=actor.id, fields=shown, audit_seq=seq, views=views)


def read_own_consents(services: Services, *, actor: Actor) -> dict[str, dict[str, Any]]:
    """Every purpose that rests on consent: what it is, and the member's state for it.

    ``in_effect`` is whether the gate would admit the purpose on this consent now
    (granted, under a notice the policy still accepts): a grant under a retired
    notice shows ``granted`` and is not in effect until given again.
    """
    actor.require_role(MEMBER_ROLE)
    policy = services.policy
    with services.reading() as session:
        states = consent_states(session, actor.id)
    purposes: dict[str, dict[str, Any]] = {}
    for pid, spec in policy.purposes.items():
        if not spec.needs_consent:
            continue
        state = states.get(pid)
        notice = policy.notices.get(spec.notice) if spec.notice else None
        fact = ConsentFact(state["status"], state["notice_version"]) if state else None
        admitted = decide_member(
            policy, decide_purpose(policy, purpose=pid, client_purposes=frozenset({pid})), fact
        )
        purposes[pid] = {
            "description": spec.description,
            "legal_basis": spec.legal_basis,
            "separate_consent": spec.separate_consent,
            "separate_consent_ground": spec.separate_consent_ground,
            "third_party": spec.third_party,
            "notice": {
                "version": spec.notice,
                "url": notice.url if notice else None,
                "sha256": notice.sha256 if notice else None,
            },
            "status": state["status"] if state else None,
            "notice_version": state["notice_version"] if state else None,
            "updated_at": state["updated_at"] if state else None,
            "in_effect": admitted.permitted,
        }
    return purposes


def record_own_consent(
    services: Services,
    *,
    actor: Actor,
    purposes: Sequence[str],
    status: RecordableStatus,
    request_id: str | None,
) -> RecordedConsent:
    """The member grants or withdraws consents themself, under the purposes' current notices."""
    actor.require_role(MEMBER_ROLE)
    change = ConsentChange(
        purposes=list(purposes),
        status=status,
        channel=OWN_CHANNEL,
        collected_at=services.clock(),
    )
    check_own_change(services.policy, change)  # 422 before the consent rules' 409
    return record_member_consent(
        services, actor=actor, member_id=actor.id, change=change, request_id=request_id
    )


@dataclass(frozen=True, slots=True)
class AccessLogItems:
    items: list[dict[str, Any]]
    next_cursor: str | None


def access_log_items(
    services: Services,
    member_id: str,
    *,
    cursor: str | None,
    limit: int,
    newest_first: bool = False,
) -> AccessLogItems:
    """One page of a member's access log, shaped for the member (``access_log_item``).

    The member's own view of ``gate.auditor.member_access_log``: for the member's
    screen and for the access copy of a rights request. Unrecorded (a read of the
    log); the caller decides who may see it.
    """
    page = member_access_log(
        services, member_id, cursor=cursor, limit=limit, newest_first=newest_first
    )
    return AccessLogItems(
        items=[access_log_item(entry, member_id=member_id) for entry in page.entries],
        next_cursor=page.next_cursor,
    )


def access_log_item(entry: Mapping[str, Any], *, member_id: str) -> dict[str, Any]:
    """One entry as its member sees it: when, who (by name), for which purpose, what
    happened and what it released, and ``prev``, the member's entry before it (0 for the
    first), so a gap in the history shows.

    ``recipient`` is the actor: a client by its registered name (kind ``client``),
    staff or the operator (kind ``staff``), the member themself (name ``you``, kind
    ``member``), or null when no one acted (a sign-in code sent before anyone was
    signed in, a burned challenge). ``released`` is what the entry let leave
    (``audit.actions.released``): ``fields``, ``identity``, ``consent`` or ``none``.
    Other members of a bulk entry, the request id and the entry's detail are left out.
    """
    actor = entry.get("actor")
    kind = entry.get("actor_kind") or ("client" if entry.get("actor_role") == "client" else "staff")
    if actor is None:
        recipient = None
    elif kind == "member":
        recipient = {"kind": "member", "name": YOU if actor == member_id else None}
    else:
        recipient = {"kind": kind, "name": entry.get("actor_name")}
    release, _views = released(entry)
    return {
        "seq": entry["seq"],
        "at": from_micros(entry["at"]).isoformat(),
        "recipient": recipient,
        "purpose": entry.get("purpose"),
        "action": entry["action"],
        "decision": entry["decision"],
        "fields": dict(entry.get("fields") or {}),
        "released": str(release),
        "prev": entry.get("prev"),
    }


def read_own_access_log(
    services: Services,
    *,
    actor: Actor,
    cursor: str | None,
    limit: int,
    newest_first: bool = False,
) -> AccessLogItems:
    actor.require_role(MEMBER_ROLE)
    return access_log_items(
        services, actor.id, cursor=cursor, limit=limit, newest_first=newest_first
    )


def prove_own_entry(services: Services, *, actor: Actor, seq: int) -> dict[str, Any]:
    """The inclusion proof of the member's entry ``seq`` in the latest signed checkpoint.

    ``{leaf_index, tree_size, entry, leaf_hash, hashes, checkpoint, verifier_key,
    shared}``, as the auditor's ``GET /v1/audit/entries/{seq}/proof`` plus the log's
    verifier key (C2SP), so that the member's browser checks it with nothing else.
    ``entry`` is the stored entry (base64) when it names the member alone; an entry
    that names other members too (an import or export batch) would show them their
    ids, so its bytes are left out (``entry`` null, ``shared`` true) and only its leaf
    is proven. An entry that does not name the member is ``404`` like one that does
    not exist; one newer than the latest checkpoint is ``404 no-checkpoint`` (the next
    checkpoint, within ``checkpoint_every_seconds``, covers it).
    """
    actor.require_role(MEMBER_ROLE)
    if not 1 <= seq <= 2**62:
        raise NotFound("no such entry of yours")
    with services.reading() as session:
        named = select(AuditEntryMember.member_id).where(AuditEntryMember.seq == seq)
        if session.scalar(named.where(AuditEntryMember.member_id == actor.id)) is None:
            raise NotFound("no such entry of yours")
        # One other name is enough to know: a batch may name thousands.
        shared = (
            session.scalar(named.where(AuditEntryMember.member_id != actor.id).limit(1)) is not None
        )
        latest = latest_checkpoint(session)
        if latest is None or latest.size < seq:
            raise NoCheckpoint(
                "no signed checkpoint covers this entry yet; the next one will, within minutes"
            )
        proof = inclusion(session, seq=seq, size=latest.size)
    return {
        **proof,
        "entry": None if shared else proof["entry"],
        "shared": shared,
        "verifier_key": services.notary.verifier_key,
    }
