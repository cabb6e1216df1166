"""Incidents as stored and as shown: opening one, taking a step, the timeline, the views.

Flushes only: the use cases (``gate.incidents``) hold the unit of work that
commits a step with its audit entry.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from datetime import datetime, tzinfo
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from breach.clock import AuthorityClock
from breach.models import BreachAffected, BreachIncident, BreachIncidentEvent
from breach.states import Status, Step, after
from core.errors import NotFound
from core.ids import is_valid_id
from policies.decide import Decision, decide_purpose
from policies.model import Policy

# The purpose members' contacts are read under to tell them of a breach (PIPL Art. 57,
# GDPR Art. 34): a legal obligation, so no consent is asked; the default policy has it.
BREACH_PURPOSE = "breach_notification"


def contact_decision(policy: Policy) -> Decision:
    """The gate's decision for reading contacts to send breach notices: the DPO holds the
    purpose by role, so only the policy can refuse it (a policy without the purpose)."""
    return decide_purpose(
        policy, purpose=BREACH_PURPOSE, client_purposes=frozenset({BREACH_PURPOSE})
    )


# A notice's states (``BreachAffected.notice_status``) and how the totals name them.
QUEUED = "queued"
SENDING = "sending"
SENT = "sent"
FAILED = "failed"
UNREACHABLE = "unreachable"
# ``BreachAffected.failure``
TRANSPORT = "transport"
INTERRUPTED = "interrupted"
NO_CONTACT = "no-contact"
# The member's stored contact failed its integrity check: not read, not sent.
VAULT_INTEGRITY = "vault-integrity"
SHREDDED = "shredded"


def canonical(data: Mapping[str, Any]) -> str:
    return json.dumps(data, sort_keys=True, separators=(",", ":"), ensure_ascii=False)


def get_incident(session: Session, incident_id: str, *, lock: bool = False) -> BreachIncident:
    if not is_valid_id(incident_id):
        raise NotFound("no such incident")
    statement = select(BreachIncident).where(BreachIncident.id == incident_id)
    if lock:
        statement = statement.with_for_update()
    incident = session.scalar(statement)
    if incident is None:
        raise NotFound("no such incident")
    return incident


def take_step(
    session: Session,
    incident: BreachIncident,
    step: Step,
    *,
    at: datetime,
    actor: str | None,
    detail: Mapping[str, Any] | None = None,
) -> Status:
    """Move ``incident`` by ``step`` (``breach.states.after`` says whether it may) and add
    the timeline's line. Returns the new status."""
    status = after(Status(incident.status), step)
    incident.status = status.value
    incident.events.append(
        BreachIncidentEvent(at=at, step=step.value, actor=actor, detail=canonical(detail or {}))
    )
    session.flush()
    return status


def notice_totals(session: Session, incident_id: str) -> dict[str, int]:
    """How many notices are queued (claimed ones included), sent, failed and unreachable."""
    counts = dict(
        session.execute(
            select(BreachAffected.notice_status, func.count())
            .where(BreachAffected.incident_id == incident_id)
            .group_by(BreachAffected.notice_status)
        ).all()
    )
    return {
        "queued": counts.get(QUEUED, 0) + counts.get(SENDING, 0),
        "sent": counts.get(SENT, 0),
        "failed": counts.get(FAILED, 0),
        "unreachable": counts.get(UNREACHABLE, 0),
        "not_asked": counts.get(None, 0),
    }


def authority_clock(incident: BreachIncident, now: datetime) -> AuthorityClock:
    return AuthorityClock(
        due_at=incident.authority_due_at, notified_at=incident.authority_notified_at, now=now
    )


def _shown(moment: datetime | None, zone: tzinfo) -> str | None:
    """Times as ISO 8601 in the policy's zone: the DPO's (and the authority's) local time."""
    return moment.astimezone(zone).isoformat() if moment is not None else None


def _scope_view(incident: BreachIncident, zone: tzinfo, names: Mapping[str, str]) -> dict[str, Any]:
    """The scope as stored (UTC), its window in ``zone`` and its client named."""
    scope = json.loads(incident.scope)
    for key in ("from", "to"):
        if key in scope:
            scope[key] = _shown(datetime.fromisoformat(scope[key]), zone)
    if "client" in scope:
        scope["client_name"] = names.get(scope["client"])
    return scope


def named_ids(incident: BreachIncident) -> set[str]:
    """The ids an incident's view names: who took each step, and the scope's client."""
    ids = {event.actor for event in incident.events if event.actor}
    client = json.loads(incident.scope).get("client")
    if client:
        ids.add(client)
    return ids


def timeline(
    incident: BreachIncident, names: Mapping[str, str], zone: tzinfo
) -> list[dict[str, Any]]:
    """The incident's steps, oldest first; ``names``: actor id → name, for display."""
    return [
        {
            "at": _shown(event.at, zone),
            "step": event.step,
            "actor": event.actor,
            "actor_name": names.get(event.actor) if event.actor else None,
            **json.loads(event.detail),
        }
        for event in incident.events
    ]


def incident_view(
    incident: BreachIncident,
    *,
    now: datetime,
    zone: tzinfo,
    names: Mapping[str, str] | None = None,
) -> dict[str, Any]:
    """The incident as the API shows it (``DESIGN-workflows.md``, "Breach incidents"),
    times in ``zone`` (the policy's)."""
    clock = authority_clock(incident, now)
    return {
        "id": incident.id,
        "status": incident.status,
        "title": incident.title,
        "description": incident.description,
        "severity": incident.severity,
        "scope": _scope_view(incident, zone, names or {}),
        "detected_at": _shown(incident.detected_at, zone),
        "opened_at": _shown(incident.opened_at, zone),
        "authority_due_at": _shown(incident.authority_due_at, zone),
        "authority_rule": incident.authority_rule,
        "authority_overdue": clock.overdue,
        "authority_deadline_met": clock.met,
        "authority_seconds_left": clock.seconds_left,
        "authority_notified": (
            {
                "at": _shown(incident.authority_notified_at, zone),
                "authority": incident.authority,
                "reference": incident.authority_reference,
            }
            if incident.authority_notified_at is not None
            else None
        ),
        "assessment": (
            {
                "consequences": incident.consequences,
                "measures": incident.measures,
                "member_advice": incident.member_advice,
                "assessed_at": _shown(incident.assessed_at, zone),
            }
            if incident.assessed_at is not None
            else None
        ),
        "affected": json.loads(incident.affected),
        "members_notified_at": _shown(incident.members_notified_at, zone),
        "closed_at": _shown(incident.closed_at, zone),
        "summary": incident.summary,
        "timeline": timeline(incident, names or {}, zone),
    }


def brief_view(incident: BreachIncident, *, now: datetime, zone: tzinfo) -> dict[str, Any]:
    """One line of the list: no texts but the title, no timeline."""
    clock = authority_clock(incident, now)
    affected = json.loads(incident.affected)
    return {
        "id": incident.id,
        "status": incident.status,
        "title": incident.title,
        "severity": incident.severity,
        "detected_at": _shown(incident.detected_at, zone),
        "authority_due_at": _shown(incident.authority_due_at, zone),
        "authority_overdue": clock.overdue,
        "authority_seconds_left": clock.seconds_left,
        "affected_members": affected.get("members", 0),
    }
