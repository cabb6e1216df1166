"""Every action the audit log records, and the one builder that writes each entry.

An entry is built nowhere else: use cases call a builder and hand the result
to their unit of work (``audit.uow.AuditedUnitOfWork.record``). Each action
states whether it releases member data, and how the entry says which: the
breach workflow (affected members) and GDPR Art. 19 (who must be told of a
correction or erasure) are to be computed from this table over the log
(``released``: ``rights.recipients`` and ``breach.scope``), so an action that
releases data must say so here or it will be invisible to both.

Entries hold ids, names, views and decisions, never personal values.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum
from typing import Any, Literal, Protocol

from core.clock import to_micros
from policies.decide import Decision

ActorKind = Literal["client", "member", "staff"]


class Release(StrEnum):
    """What a permitted entry of an action lets leave memberguard."""

    NONE = "none"
    """A change or an event: nothing of a member leaves."""
    FIELDS = "fields"
    """Field values, in the views the entry's ``fields`` map names (field → view)."""
    IDENTITY = "identity"
    """Which members hold a contact value (a lookup): their ids, no field values."""
    CONSENT = "consent"
    """The members' consent state, no field values."""


class Action(StrEnum):
    MEMBER_CREATE = "member.create"
    MEMBER_UPDATE = "member.update"
    MEMBER_IMPORT = "member.import"
    MEMBER_READ = "member.read"
    MEMBER_LOOKUP = "member.lookup"
    MEMBER_EXPORT = "member.export"
    LOOKUP_FLAG = "lookup.flagged"
    VAULT_INTEGRITY = "vault.integrity"
    CONSENT_CHANGE = "consent.change"
    CONSENT_READ = "consent.read"
    CLIENT_CREATE = "client.create"
    CLIENT_KEY = "client.key"
    CLIENT_REVOKE = "client.revoke"
    KEYS_REWRAP = "keys.rewrap"
    KEYS_RETIRE = "keys.retire"
    AUDIT_CHECKPOINT = "audit.checkpoint"
    NOTICE_SENT = "notice.sent"
    MEMBER_CORRECT = "member.correct"
    MEMBER_DELETE = "member.delete"
    RIGHTS_REQUEST = "rights.request"
    RIGHTS_HOLD = "rights.hold"
    RIGHTS_COPY = "rights.copy"
    RIGHTS_DOWNLOAD = "rights.download"
    RIGHTS_FLAG = "rights.flagged"
    FEED_ACK = "feed.ack"
    FEED_REMIND = "feed.reminded"
    MEMBER_SIGNIN = "member.signin"
    MEMBER_SIGNOUT = "member.signout"
    STAFF_SIGNIN = "staff.signin"
    STAFF_SIGNOUT = "staff.signout"
    MEMBER_SELF_READ = "member.self_read"
    WEBHOOK_SET = "webhook.set"
    WEBHOOK_ROTATE = "webhook.rotate"
    WEBHOOK_REMOVE = "webhook.remove"
    INCIDENT_CHANGE = "incident.change"
    INCIDENT_AFFECTED = "incident.affected"
    INCIDENT_REPORT = "incident.report"
    INCIDENT_CONTACTS = "incident.contacts"
    INCIDENT_NOTICES = "incident.notices"
    INCIDENT_REMIND = "incident.reminded"

    @property
    def release(self) -> Release:
        return _RELEASES[self]


_RELEASES: dict[Action, Release] = {
    Action.MEMBER_CREATE: Release.NONE,
    Action.MEMBER_UPDATE: Release.NONE,
    Action.MEMBER_IMPORT: Release.NONE,
    Action.MEMBER_READ: Release.FIELDS,
    Action.MEMBER_LOOKUP: Release.IDENTITY,
    Action.MEMBER_EXPORT: Release.FIELDS,
    Action.LOOKUP_FLAG: Release.NONE,
    Action.VAULT_INTEGRITY: Release.NONE,
    # The answer carries the member's resulting state, which later-collected
    # events recorded by others may have decided: that is a release.
    Action.CONSENT_CHANGE: Release.CONSENT,
    Action.CONSENT_READ: Release.CONSENT,
    Action.CLIENT_CREATE: Release.NONE,
    Action.CLIENT_KEY: Release.NONE,
    Action.CLIENT_REVOKE: Release.NONE,
    Action.KEYS_REWRAP: Release.NONE,
    Action.KEYS_RETIRE: Release.NONE,
    Action.AUDIT_CHECKPOINT: Release.NONE,
    # The recipient is the member (or the DPO); what the message said is not
    # recorded, only which template went by which channel.
    Action.NOTICE_SENT: Release.NONE,
    # Rights requests: changes and events. A correction writes values into
    # the vault; a deletion destroys them; a copy is built sealed.
    Action.MEMBER_CORRECT: Release.NONE,
    Action.MEMBER_DELETE: Release.NONE,
    Action.RIGHTS_REQUEST: Release.NONE,
    Action.RIGHTS_HOLD: Release.NONE,
    Action.RIGHTS_COPY: Release.NONE,
    # The member downloads their access copy: every field it holds leaves in
    # clear, to the member (the entry's actor). Breach scoping must see it;
    # the recipients a correction or erasure must reach are clients only.
    Action.RIGHTS_DOWNLOAD: Release.FIELDS,
    Action.RIGHTS_FLAG: Release.NONE,
    # The change feed: a client confirms it applied an event (for a deletion,
    # that it erased its copy); the DPO is reminded of those overdue. Events
    # carry ids, purposes and field names only: nothing of a member leaves.
    Action.FEED_ACK: Release.NONE,
    Action.FEED_REMIND: Release.NONE,
    # A session token goes to the member who answered the code; nothing of
    # their data leaves with it (what the session then reads is its own entry).
    Action.MEMBER_SIGNIN: Release.NONE,
    Action.MEMBER_SIGNOUT: Release.NONE,
    # A console session for a staff key, and its end; what the session then does
    # is recorded by each use case under the key's own name.
    Action.STAFF_SIGNIN: Release.NONE,
    Action.STAFF_SIGNOUT: Release.NONE,
    # Every field of the member, in clear, to the member themself (the entry's
    # actor, ``actor_kind`` member). A release like any other, so that breach
    # scoping sees what a stolen session read; whoever computes the recipients
    # to tell of a correction (GDPR Art. 19) skips the member themself.
    Action.MEMBER_SELF_READ: Release.FIELDS,
    # A client's webhook: where its events are pushed, and the secret that signs
    # them. The entry names the URL's origin only (its path and query may hold the
    # receiver's token), never the secret.
    Action.WEBHOOK_SET: Release.NONE,
    Action.WEBHOOK_ROTATE: Release.NONE,
    Action.WEBHOOK_REMOVE: Release.NONE,
    # Breach incidents: steps, the DPO's reads of the affected list and the
    # report (member ids, field names and counts: nothing of a member's data),
    # and the reminders of the authority's deadline.
    Action.INCIDENT_CHANGE: Release.NONE,
    Action.INCIDENT_AFFECTED: Release.NONE,
    Action.INCIDENT_REPORT: Release.NONE,
    Action.INCIDENT_NOTICES: Release.NONE,
    Action.INCIDENT_REMIND: Release.NONE,
    # The members' contacts, read in clear under ``breach_notification`` to send
    # their notices: the addresses leave for the notifier's transports. A release
    # (by the DPO who asked, or by the job that sends: no actor), so that a later
    # incident in the notifier's path finds it.
    Action.INCIDENT_CONTACTS: Release.FIELDS,
}


class UnknownAction(ValueError):
    """An entry names an action this version of memberguard does not know."""


def released(entry: Mapping[str, Any]) -> tuple[Release, dict[str, str]]:
    """What a stored entry (parsed) released to its actor: the kind, and fields with views.

    Refusals release nothing, whatever the action. An action this version
    does not know (written by a newer one) raises ``UnknownAction`` rather
    than counting as nothing: breach scoping must not miss a release.
    """
    try:
        action = Action(entry.get("action"))
    except ValueError:
        raise UnknownAction(f"entry {entry.get('seq')}: unknown action") from None
    if entry.get("decision") != "permit" or action.release is Release.NONE:
        return Release.NONE, {}
    fields = entry.get("fields") or {}
    return action.release, dict(fields) if action.release is Release.FIELDS else {}


class Principal(Protocol):
    """Who acts: what an entry records of them (``principals.Actor`` is one)."""

    @property
    def id(self) -> str: ...
    @property
    def role(self) -> str: ...
    @property
    def kind(self) -> ActorKind: ...


@dataclass(frozen=True, slots=True)
class Record:
    """An entry before the log numbers, times and hashes it. Built only by the builders below."""

    action: Action
    decision: str
    reason: str
    policy: str
    actor: str | None = None
    actor_role: str | None = None
    actor_kind: ActorKind | None = None
    purpose: str | None = None
    members: Sequence[str] = ()
    fields: dict[str, str] | None = None
    request_id: str | None = None
    detail: dict[str, Any] | None = None


def _by(
    who: Principal,
    action: Action,
    *,
    policy: str,
    decision: str = "permit",
    reason: str,
    purpose: str | None = None,
    members: Sequence[str] = (),
    fields: dict[str, str] | None = None,
    request_id: str | None = None,
    detail: dict[str, Any] | None = None,
) -> Record:
    return Record(
        action=action,
        decision=decision,
        reason=reason,
        policy=policy,
        actor=who.id,
        actor_role=who.role,
        actor_kind=who.kind,
        purpose=purpose,
        members=members,
        fields=fields,
        request_id=request_id,
        detail=detail,
    )


def _by_or_system(
    who: Principal | None,
    action: Action,
    *,
    policy: str,
    reason: str,
    purpose: str | None = None,
    members: Sequence[str] = (),
    fields: dict[str, str] | None = None,
    request_id: str | None = None,
    detail: dict[str, Any] | None = None,
) -> Record:
    """An entry by ``who``, or by no one (a job, a hold that lapsed): no actor, as
    the log's own checkpoint entries."""
    if who is not None:
        return _by(
            who,
            action,
            policy=policy,
            reason=reason,
            purpose=purpose,
            members=members,
            fields=fields,
            request_id=request_id,
            detail=detail,
        )
    return Record(
        action=action,
        decision="permit",
        reason=reason,
        policy=policy,
        purpose=purpose,
        members=members,
        fields=fields,
        request_id=request_id,
        detail=detail,
    )


def _micros(moment: datetime | None) -> int | None:
    return to_micros(moment) if moment is not None else None


# -- members -------------------------------------------------------------------


def _written_or_cleared(changes: Mapping[str, object]) -> dict[str, str]:
    """What an entry says of changed fields: written or cleared, never the new values."""
    return {
        name: "cleared" if value is None else "written" for name, value in sorted(changes.items())
    }


def member_created(
    who: Principal, *, policy: str, member_id: str, fields: Sequence[str], request_id: str | None
) -> Record:
    return _by(
        who,
        Action.MEMBER_CREATE,
        policy=policy,
        reason="members:write",
        members=[member_id],
        fields={name: "written" for name in sorted(fields)},
        request_id=request_id,
    )


def member_updated(
    who: Principal,
    *,
    policy: str,
    member_id: str,
    changes: Mapping[str, object],
    request_id: str | None,
) -> Record:
    """``changes`` maps each field to its new value; only whether it was cleared is recorded."""
    return _by(
        who,
        Action.MEMBER_UPDATE,
        policy=policy,
        reason="members:write",
        members=[member_id],
        fields=_written_or_cleared(changes),
        request_id=request_id,
    )


def members_imported(
    who: Principal, *, policy: str, member_ids: Sequence[str], source: str, consent_events: int
) -> Record:
    return _by(
        who,
        Action.MEMBER_IMPORT,
        policy=policy,
        reason="operator",
        members=member_ids,
        detail={"source": source, "members": len(member_ids), "consent_events": consent_events},
    )


def member_read(
    who: Principal,
    *,
    policy: str,
    decision: Decision,
    member_id: str | None,
    released_views: dict[str, str],
    request_id: str | None,
) -> Record:
    """A gated read, refusals included. ``member_id`` None: the id was not even well formed,
    and attacker-chosen text is not written to the log, only the refusal is."""
    return _by(
        who,
        Action.MEMBER_READ,
        policy=policy,
        decision=decision.outcome,
        reason=decision.reason,
        purpose=decision.purpose,
        members=[member_id] if member_id is not None else [],
        fields=released_views,
        request_id=request_id,
    )


def members_looked_up(
    who: Principal,
    *,
    policy: str,
    decision: Decision,
    by: str,
    matched: int,
    admitted: Sequence[str],
    request_id: str | None,
) -> Record:
    # How many matched is recorded so that an auditor can see lookups that
    # found members the purpose did not admit.
    return _by(
        who,
        Action.MEMBER_LOOKUP,
        policy=policy,
        decision=decision.outcome,
        reason=decision.reason,
        purpose=decision.purpose,
        members=admitted,
        request_id=request_id,
        detail={"by": by, "matched": matched, "admitted": len(admitted)},
    )


def lookups_flagged(
    who: Principal,
    *,
    policy: str,
    purpose: str,
    lookups: int,
    misses: int,
    window_seconds: int,
    request_id: str | None,
) -> Record:
    """The client's lookups mostly found no one: enumeration looks like that.

    Recorded once per window, in the unit of work of the lookup that crossed
    the line; from then on the client's lookups for ``purpose`` run under the
    stricter rate. A deny: it restricts the client, and the DPO's search for
    refusals finds it.
    """
    return _by(
        who,
        Action.LOOKUP_FLAG,
        policy=policy,
        decision="deny",
        reason="lookup-misses",
        purpose=purpose,
        request_id=request_id,
        detail={"lookups": lookups, "misses": misses, "window_seconds": window_seconds},
    )


def members_exported(
    who: Principal,
    *,
    policy: str,
    decision: Decision,
    member_ids: Sequence[str],
    batch: int | None,
    examined: int,
    request_id: str | None,
    suppressed: Mapping[str, int] | None = None,
) -> Record:
    """One batch of an export (``batch`` None: the export was refused before any batch).

    ``suppressed``: for an anonymised (pseudonymous) export, how many admitted
    members were left out and why, with the export's ``k``.
    """
    if not decision.permitted:
        return _by(
            who,
            Action.MEMBER_EXPORT,
            policy=policy,
            decision="deny",
            reason=decision.reason,
            purpose=decision.purpose,
            request_id=request_id,
        )
    return _by(
        who,
        Action.MEMBER_EXPORT,
        policy=policy,
        reason=decision.reason,
        purpose=decision.purpose,
        members=member_ids,
        fields=dict(decision.views),
        request_id=request_id,
        detail={
            "batch": batch,
            "examined": examined,
            "released": len(member_ids),
            **({"suppressed": dict(suppressed)} if suppressed is not None else {}),
        },
    )


def damaged_members_skipped(
    who: Principal, *, policy: str, purpose: str, member_ids: Sequence[str], request_id: str | None
) -> Record:
    """Stored ciphertexts of these members failed authentication: nothing of them was released.

    Names the members, never a value (there is none to name: it did not decrypt).
    """
    return _by(
        who,
        Action.VAULT_INTEGRITY,
        policy=policy,
        decision="deny",
        reason="vault-integrity",
        purpose=purpose,
        members=member_ids,
        request_id=request_id,
        detail={"damaged": len(member_ids)},
    )


# -- consent -------------------------------------------------------------------


def consent_changed(
    who: Principal,
    *,
    policy: str,
    member_id: str,
    purposes: Sequence[str],
    status: str,
    channel: str,
    notice_versions: Mapping[str, str | None],
    receipt_id: str | None,
    request_id: str | None,
) -> Record:
    return _by(
        who,
        Action.CONSENT_CHANGE,
        policy=policy,
        reason=f"consent-{status}",
        purpose=purposes[0] if len(purposes) == 1 else None,
        members=[member_id],
        request_id=request_id,
        detail={
            "purposes": list(purposes),
            "status": status,
            "channel": channel,
            "notice_versions": dict(notice_versions),
            "receipt_id": receipt_id,
        },
    )


def consent_read(who: Principal, *, policy: str, member_id: str, request_id: str | None) -> Record:
    return _by(
        who,
        Action.CONSENT_READ,
        policy=policy,
        reason="consents:read",
        members=[member_id],
        request_id=request_id,
    )


# -- clients and keys ----------------------------------------------------------


def client_created(
    who: Principal,
    *,
    policy: str,
    client_id: str,
    name: str,
    role: str,
    purposes: Sequence[str],
    scopes: Sequence[str],
    request_id: str | None,
) -> Record:
    return _by(
        who,
        Action.CLIENT_CREATE,
        policy=policy,
        reason="admin",
        request_id=request_id,
        detail={
            "client": client_id,
            "name": name,
            "role": role,
            "purposes": sorted(set(purposes)),
            "scopes": sorted(set(scopes)),
        },
    )


def client_key_issued(
    who: Principal, *, policy: str, client_id: str, replaced_other_keys: bool
) -> Record:
    return _by(
        who,
        Action.CLIENT_KEY,
        policy=policy,
        reason="admin",
        detail={"client": client_id, "replaced_other_keys": replaced_other_keys},
    )


def client_revoked(
    who: Principal, *, policy: str, client_id: str, request_id: str | None
) -> Record:
    return _by(
        who,
        Action.CLIENT_REVOKE,
        policy=policy,
        reason="admin",
        request_id=request_id,
        detail={"client": client_id},
    )


def data_keys_rewrapped(
    who: Principal,
    *,
    policy: str,
    to_version: int,
    rewrapped: int,
    members_after: str,
    members_through: str,
) -> Record:
    return _by(
        who,
        Action.KEYS_REWRAP,
        policy=policy,
        reason="operator",
        detail={
            "to_version": to_version,
            "rewrapped": rewrapped,
            "members_after": members_after,
            "members_through": members_through,
        },
    )


def kek_retired(
    who: Principal, *, policy: str, version: int, provider: str, remaining: Sequence[int]
) -> Record:
    """KEK ``version`` is retired: no data key was wrapped under it and no running
    server wrapped under it. ``provider`` "local": the key file is rewritten
    without it; "env": a keyring without it was issued for the operator to deploy.
    """
    return _by(
        who,
        Action.KEYS_RETIRE,
        policy=policy,
        reason="operator",
        detail={"version": version, "provider": provider, "remaining": sorted(remaining)},
    )


# -- messages ------------------------------------------------------------------


def notice_sent(
    who: Principal | None,
    *,
    policy: str,
    member_id: str | None,
    template: str,
    channel: str,
    message_id: str,
    rights_request: str | None = None,
    request_id: str | None,
) -> Record:
    """A message went to a member (``member_id``) or to staff: which template, by which
    channel, under which message id. Never the recipient's address or the body.

    ``who`` is whoever caused it (the DPO sending notices, a member's request);
    None when no one signed in did (a sign-in code is asked for before anyone is).
    ``rights_request``: the request a member's message is about, so that the log
    shows the member was told of it.
    """
    detail = {"template": template, "channel": channel, "message": message_id}
    if rights_request is not None:
        detail["request"] = rights_request
    return _by_or_system(
        who,
        Action.NOTICE_SENT,
        policy=policy,
        reason=f"notice-{template}",
        members=[member_id] if member_id is not None else [],
        request_id=request_id,
        detail=detail,
    )


# -- rights requests -----------------------------------------------------------
#
# Entries name the request by id, its type and status, and field names; never
# a value, and never a free-text reason (a DPO's or a member's words may name
# facts about the member: the request's history keeps them, the log does not).


def rights_request_changed(
    who: Principal | None,
    *,
    policy: str,
    rights_request: str,
    member_id: str,
    request_type: str,
    status: str,
    due_at: datetime,
    fields: Sequence[str] = (),
    channel: str | None = None,
    verification: str | None = None,
    request_id: str | None,
) -> Record:
    """A request was received (``status`` submitted) or moved (or ``extended``).

    ``verification``: how a relaying client verified the member (the method
    only; its case reference stays with the request).
    """
    detail: dict[str, Any] = {
        "request": rights_request,
        "type": request_type,
        "status": status,
        "due_at": to_micros(due_at),
    }
    if fields:
        detail["fields"] = sorted(fields)
    if channel is not None:
        detail["channel"] = channel
    if verification is not None:
        detail["verification"] = verification
    return _by_or_system(
        who,
        Action.RIGHTS_REQUEST,
        policy=policy,
        reason=f"rights-{request_type}",
        members=[member_id],
        request_id=request_id,
        detail=detail,
    )


def member_corrected(
    who: Principal | None,
    *,
    policy: str,
    member_id: str,
    changes: Mapping[str, object],
    rights_request: str,
    approved: bool,
    request_id: str | None,
) -> Record:
    """A correction was applied: which fields were written or cleared, never the values.

    ``approved``: by a DPO's approval; otherwise the fields are self-service.
    """
    return _by_or_system(
        who,
        Action.MEMBER_CORRECT,
        policy=policy,
        reason="rights-correction",
        members=[member_id],
        fields=_written_or_cleared(changes),
        request_id=request_id,
        detail={"request": rights_request, "approved": approved},
    )


def member_deleted(
    who: Principal | None,
    *,
    policy: str,
    member_id: str,
    rights_request: str,
    destroyed: Mapping[str, int],
    recipients: int,
    request_id: str | None,
) -> Record:
    """The member was crypto-shredded: how many of each kind of secret were destroyed,
    and how many clients must be told (the request lists them)."""
    return _by_or_system(
        who,
        Action.MEMBER_DELETE,
        policy=policy,
        reason="rights-deletion",
        members=[member_id],
        request_id=request_id,
        detail={
            "request": rights_request,
            "destroyed": dict(sorted(destroyed.items())),
            "recipients": recipients,
        },
    )


def hold_changed(
    who: Principal | None,
    *,
    policy: str,
    member_id: str,
    hold: str,
    event: str,
    ends_at: datetime | None,
    request_id: str | None,
) -> Record:
    """A legal hold was ``placed``, ``released``, or ``lapsed`` at its end (no actor)."""
    return _by_or_system(
        who,
        Action.RIGHTS_HOLD,
        policy=policy,
        reason=f"hold-{event}",
        members=[member_id],
        request_id=request_id,
        detail={"hold": hold, "event": event, "ends_at": _micros(ends_at)},
    )


def copy_changed(
    who: Principal | None,
    *,
    policy: str,
    member_id: str,
    rights_request: str,
    event: str,
    expires_at: datetime,
    request_id: str | None,
) -> Record:
    """An access copy was ``built`` (sealed: nothing left) or ``expired`` (destroyed)."""
    return _by_or_system(
        who,
        Action.RIGHTS_COPY,
        policy=policy,
        reason=f"copy-{event}",
        members=[member_id],
        request_id=request_id,
        detail={"request": rights_request, "event": event, "expires_at": to_micros(expires_at)},
    )


def copy_downloaded(
    who: Principal,
    *,
    policy: str,
    member_id: str,
    rights_request: str,
    fields: Sequence[str],
    request_id: str | None,
) -> Record:
    """The member downloaded their copy: each field it holds left in clear, to them."""
    return _by(
        who,
        Action.RIGHTS_DOWNLOAD,
        policy=policy,
        reason="rights-access",
        members=[member_id],
        fields={name: "clear" for name in sorted(fields)},
        request_id=request_id,
        detail={"request": rights_request},
    )


def requests_flagged(
    *, policy: str, due_soon: Sequence[str], overdue: Sequence[str], message_id: str
) -> Record:
    """The deadline job told the DPO of requests due soon and overdue (ids only; no actor)."""
    return Record(
        action=Action.RIGHTS_FLAG,
        decision="permit",
        reason="rights-due",
        policy=policy,
        detail={"due_soon": sorted(due_soon), "overdue": sorted(overdue), "message": message_id},
    )


# -- the change feed -----------------------------------------------------------


def event_acknowledged(
    who: Principal,
    *,
    policy: str,
    event_id: str,
    event_type: str,
    member_id: str | None,
    rights_request: str | None,
    request_id: str | None,
) -> Record:
    """A client acknowledged an event of its feed: it applied the change. For a deletion
    (``member.deleted``) this is its statement that it erased its copy, the evidence the
    DPO keeps for GDPR Art. 19 and PIPL Art. 47. Recorded once, at the first
    acknowledgement."""
    detail: dict[str, Any] = {"event": event_id, "type": event_type}
    if rights_request is not None:
        detail["request"] = rights_request
    return _by(
        who,
        Action.FEED_ACK,
        policy=policy,
        reason="feed-ack",
        members=[member_id] if member_id is not None else [],
        request_id=request_id,
        detail=detail,
    )


def acks_reminded(
    *,
    policy: str,
    member_ids: Sequence[str],
    events: Sequence[str],
    clients: Sequence[str],
    requests: Sequence[str],
    deliveries: int,
    message_id: str,
) -> Record:
    """The reminder job told the DPO of acknowledgements overdue: which events, of which
    members and requests, from which clients (ids, and the message id; no actor)."""
    return Record(
        action=Action.FEED_REMIND,
        decision="permit",
        reason="feed-ack-overdue",
        policy=policy,
        members=sorted(set(member_ids)),
        detail={
            "events": sorted(set(events)),
            "clients": sorted(set(clients)),
            "requests": sorted(set(requests)),
            "deliveries": deliveries,
            "message": message_id,
        },
    )


# -- members' own actions ------------------------------------------------------


def member_signin(
    who: Principal | None,
    *,
    policy: str,
    member_id: str,
    channel: str,
    decision: Literal["permit", "deny"],
    request_id: str | None,
) -> Record:
    """A sign-in with a one-time code sent by ``channel`` (``sms``, ``email``).

    ``permit``: the member answered the code and a session was opened; ``who`` is
    the member. ``deny``: the challenge sent to the member took its last wrong
    code and was burned; ``who`` is None, since whoever tried is no one yet. A
    wrong code that does not burn a challenge is not recorded one by one (the
    rate limits bound how many there can be; a flood must not fill the log):
    the burn is what the DPO looks for, and names the member whose code it was.
    """
    if decision == "permit":
        if who is None or who.kind != "member" or who.id != member_id:
            raise ValueError("a sign-in is recorded with the member as its actor")
        return _by(
            who,
            Action.MEMBER_SIGNIN,
            policy=policy,
            reason="one-time-code",
            members=[member_id],
            request_id=request_id,
            detail={"channel": channel},
        )
    if who is not None:
        raise ValueError("a burned challenge has no actor")
    return Record(
        action=Action.MEMBER_SIGNIN,
        decision="deny",
        reason="too-many-wrong-codes",
        policy=policy,
        members=[member_id],
        request_id=request_id,
        detail={"channel": channel},
    )


def staff_signed_in(who: Principal, *, policy: str, request_id: str | None) -> Record:
    """A staff key (``dpo``, ``auditor``, ``admin``) opened a console session. Wrong keys
    are not recorded one by one (no one to name; the rate limit bounds them)."""
    return _by(who, Action.STAFF_SIGNIN, policy=policy, reason="console-key", request_id=request_id)


def staff_signed_out(who: Principal, *, policy: str, request_id: str | None) -> Record:
    """A staff member ended their console session (expiry is the session's own)."""
    return _by(who, Action.STAFF_SIGNOUT, policy=policy, reason="console", request_id=request_id)


def member_signed_out(who: Principal, *, policy: str, request_id: str | None) -> Record:
    """The member ended their session (logout). Expiry is not recorded: it is in the
    session's ``expires_at``, known from its sign-in."""
    if who.kind != "member":
        raise ValueError("only a member signs out")
    return _by(
        who,
        Action.MEMBER_SIGNOUT,
        policy=policy,
        reason="logout",
        members=[who.id],
        request_id=request_id,
    )


def member_self_read(
    who: Principal,
    *,
    policy: str,
    fields: Sequence[str],
    request_id: str | None,
    views: Mapping[str, str] | None = None,
) -> Record:
    """A member read all of their own fields (``GET /v1/me``: in clear; the privacy centre
    first shows them in each field's default view, ``views``); recorded before anything is
    decrypted, like every release."""
    if who.kind != "member":
        raise ValueError("a self-read is a member's own")
    shown = views or {}
    return _by(
        who,
        Action.MEMBER_SELF_READ,
        policy=policy,
        reason="own-data",
        members=[who.id],
        fields={name: shown.get(name, "clear") for name in sorted(fields)},
        request_id=request_id,
    )


# -- webhooks -------------------------------------------------------------------


def webhook_set(
    who: Principal,
    *,
    policy: str,
    client_id: str,
    origin: str,
    replaced: bool,
    request_id: str | None,
) -> Record:
    """A client's webhook registered (or its URL replaced, with a new secret): the URL's
    ``origin`` (scheme, host, port) only, never its path, query or the secret."""
    return _by(
        who,
        Action.WEBHOOK_SET,
        policy=policy,
        reason="admin",
        request_id=request_id,
        detail={"client": client_id, "origin": origin, "replaced": replaced},
    )


def webhook_rotated(
    who: Principal,
    *,
    policy: str,
    client_id: str,
    previous_valid_until: datetime,
    request_id: str | None,
) -> Record:
    """A new signing secret; the previous one also signs until ``previous_valid_until``."""
    return _by(
        who,
        Action.WEBHOOK_ROTATE,
        policy=policy,
        reason="admin",
        request_id=request_id,
        detail={"client": client_id, "previous_valid_until": _micros(previous_valid_until)},
    )


def webhook_removed(
    who: Principal, *, policy: str, client_id: str, origin: str, request_id: str | None
) -> Record:
    return _by(
        who,
        Action.WEBHOOK_REMOVE,
        policy=policy,
        reason="admin",
        request_id=request_id,
        detail={"client": client_id, "origin": origin},
    )


# -- the log itself ------------------------------------------------------------


# -- breach incidents ------------------------------------------------------------
#
# Entries name the incident by id, its step and status, severity and counts;
# never its texts (the DPO's description of what happened may name facts about
# members: the incident keeps it, the log does not).


def incident_changed(
    who: Principal | None,
    *,
    policy: str,
    incident_id: str,
    step: str,
    status: str,
    detail: Mapping[str, Any] | None = None,
    request_id: str | None,
) -> Record:
    """An incident was opened, assessed, its authority or members notified, or closed.

    ``detail``: the step's facts (severity, scope kind, counts, the deadline),
    no free text.
    """
    return _by_or_system(
        who,
        Action.INCIDENT_CHANGE,
        policy=policy,
        reason=f"incident-{step}",
        request_id=request_id,
        detail={"incident": incident_id, "step": step, "status": status, **(detail or {})},
    )


def incident_affected_read(
    who: Principal, *, policy: str, incident_id: str, members: int, request_id: str | None
) -> Record:
    """The DPO took the list of an incident's affected members (ids and field names)."""
    return _by(
        who,
        Action.INCIDENT_AFFECTED,
        policy=policy,
        reason="incident-affected",
        request_id=request_id,
        detail={"incident": incident_id, "members": members},
    )


def incident_reported(
    who: Principal,
    *,
    policy: str,
    incident_id: str,
    report_format: str,
    locale: str,
    request_id: str | None,
) -> Record:
    """The regulator report of an incident was produced (counts, no member named)."""
    return _by(
        who,
        Action.INCIDENT_REPORT,
        policy=policy,
        reason="incident-report",
        request_id=request_id,
        detail={"incident": incident_id, "format": report_format, "locale": locale},
    )


def incident_contacts_read(
    who: Principal | None,
    *,
    policy: str,
    decision: Decision,
    incident_id: str,
    member_ids: Sequence[str],
    request_id: str | None,
) -> Record:
    """A batch of affected members' contacts was read in clear to send their breach notices
    (``decision``: the gate's, for the purpose ``breach_notification``)."""
    return _by_or_system(
        who,
        Action.INCIDENT_CONTACTS,
        policy=policy,
        reason=decision.reason,
        purpose=decision.purpose,
        members=sorted(member_ids),
        fields=dict(decision.views),
        request_id=request_id,
        detail={"incident": incident_id, "members": len(member_ids)},
    )


def incident_notices_sent(
    who: Principal | None,
    *,
    policy: str,
    incident_id: str,
    template: str,
    sent: Mapping[str, Sequence[str]],
    failed: int,
    request_id: str | None,
) -> Record:
    """A batch of breach notices went: the members sent one (by channel: ``sent``), and how
    many the transport refused. Never an address or a body."""
    members = sorted({member for ids in sent.values() for member in ids})
    return _by_or_system(
        who,
        Action.INCIDENT_NOTICES,
        policy=policy,
        reason=f"notice-{template}",
        members=members,
        request_id=request_id,
        detail={
            "incident": incident_id,
            "template": template,
            "sent": {channel: len(ids) for channel, ids in sorted(sent.items())},
            "failed": failed,
        },
    )


def incident_reminded(*, policy: str, incident_id: str, level: str, message_id: str) -> Record:
    """The deadline job reminded the DPO that the authority has not been told of an
    incident (``level``: hours left at the threshold, or ``overdue``; no actor)."""
    return Record(
        action=Action.INCIDENT_REMIND,
        decision="permit",
        reason="incident-deadline",
        policy=policy,
        detail={"incident": incident_id, "level": level, "message": message_id},
    )


def checkpoint_cut(*, policy: str, size: int, root: bytes, origin: str) -> Record:
    """Recorded by the log itself (no actor): the signed checkpoint at ``size``."""
    return Record(
        action=Action.AUDIT_CHECKPOINT,
        decision="permit",
        reason="checkpoint",
        policy=policy,
        detail={"size": size, "root": root.hex(), "origin": origin},
    )
