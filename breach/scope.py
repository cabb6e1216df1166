"""Who an incident affects, and with what of theirs: computed from the audit log and the vault.

Three scopes (``DESIGN-workflows.md``, "Breach incidents"):

- ``client``: a downstream system (any API key: a client's, or a staff key)
  was compromised over a window. Affected: every member the log shows was
  released to it in ``[from, to)``, through reads, lookups, exports and
  consent reads, with the fields and views released. Which actions release
  what is ``audit.actions.released``, the one table the rights workflows read
  too; a refusal never counts, and an action this version does not know
  raises ``UnknownAction`` rather than being skipped.
- ``members``: the listed members, with every field the vault holds of them.
- ``all``: the vault or its keys; every member who still has a data key, with
  every field held. Crypto-shredded members have nothing left to lose.

A member crypto-shredded since their data was released to the client is
affected (the client kept what it was sent) but cannot be told: ``shredded``.
Field values are never read: only the log's field names and views, and the
names of the fields the vault holds.
"""

from __future__ import annotations

import json
from collections import Counter, defaultdict
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from enum import StrEnum
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from audit.actions import Action, Release, released
from audit.entry import parse_entry
from audit.models import AuditEntry
from policies.model import Policy
from vault.models import VaultDataKey, VaultField, VaultMember

BATCH = 1000
# The view a field has when the scope is the vault itself: what it holds, in clear.
STORED = "clear"
# Views that show nothing of the value a member could be harmed by; a sensitive
# field released only in these does not make the incident "sensitive".
HARMLESS_VIEWS = frozenset({"pseudonym"})
# Actions that never release anything: the log scan skips them in the query.
# Every other action is read and asked (``released``), unknown ones included.
_SILENT = sorted(action.value for action in Action if action.release is Release.NONE)


class ScopeKind(StrEnum):
    CLIENT = "client"
    MEMBERS = "members"
    ALL = "all"


@dataclass(frozen=True, slots=True)
class ClientScope:
    client_id: str
    start: datetime
    end: datetime
    kind: ScopeKind = ScopeKind.CLIENT

    def describe(self) -> dict[str, Any]:
        return {
            "kind": self.kind.value,
            "client": self.client_id,
            "from": self.start.isoformat(),
            "to": self.end.isoformat(),
        }


@dataclass(frozen=True, slots=True)
class MembersScope:
    member_ids: tuple[str, ...]
    kind: ScopeKind = ScopeKind.MEMBERS

    def describe(self) -> dict[str, Any]:
        return {"kind": self.kind.value, "members": len(self.member_ids)}


@dataclass(frozen=True, slots=True)
class AllScope:
    kind: ScopeKind = ScopeKind.ALL

    def describe(self) -> dict[str, Any]:
        return {"kind": self.kind.value}


Scope = ClientScope | MembersScope | AllScope


@dataclass(slots=True)
class Exposure:
    """What of one member an incident exposed.

    ``views``: field → the views it was released in (or held, for the vault
    scopes). ``identity``: the client learnt who the member is without a
    field value (a lookup answered with their id, a consent read).
    ``records``: how many releases (or stored values) it adds up to.
    """

    views: dict[str, set[str]] = field(default_factory=dict)
    identity: bool = False
    records: int = 0
    shredded: bool = False

    def add(self, kind: Release, views: Mapping[str, str]) -> None:
        self.records += 1
        if kind is Release.FIELDS:
            for name, view in views.items():
                self.views.setdefault(name, set()).add(view)
        else:
            self.identity = True

    def fields_json(self) -> str:
        return json.dumps(
            {name: sorted(views) for name, views in sorted(self.views.items())},
            separators=(",", ":"),
            ensure_ascii=False,
        )


def released_to(
    session: Session, client_id: str, start: datetime, end: datetime
) -> dict[str, Exposure]:
    """Every member the log shows was released to ``client_id`` in ``[start, end)``.

    Reads the permitted entries of that actor in the window, a batch at a time
    in log order, and asks each what it released. The log's ``recorded_at``
    column is a projection of the hashed entry that ``audit verify`` checks,
    so a window cannot be dodged by editing it.
    """
    exposures: dict[str, Exposure] = defaultdict(Exposure)
    after = 0
    while True:
        rows = session.execute(
            select(AuditEntry.seq, AuditEntry.entry)
            .where(
                AuditEntry.actor == client_id,
                AuditEntry.decision == "permit",
                AuditEntry.recorded_at >= start,
                AuditEntry.recorded_at < end,
                AuditEntry.action.not_in(_SILENT),
                AuditEntry.seq > after,
            )
            .order_by(AuditEntry.seq)
            .limit(BATCH)
        ).all()
        if not rows:
            break
        for row in rows:
            entry = parse_entry(bytes(row.entry))
            kind, views = released(entry)
            if kind is Release.NONE:
                continue
            for member_id in entry.get("members") or ():
                exposures[member_id].add(kind, views)
        after = rows[-1].seq
    _mark_shredded(session, exposures)
    return dict(exposures)


def held_by_vault(session: Session, member_ids: Iterable[str]) -> dict[str, Exposure]:
    """The listed members, each with every field the vault holds of them."""
    exposures = {member_id: Exposure() for member_id in member_ids}
    ids = sorted(exposures)
    for start in range(0, len(ids), BATCH):
        batch = ids[start : start + BATCH]
        for member_id, name in session.execute(
            select(VaultField.member_id, VaultField.name).where(VaultField.member_id.in_(batch))
        ).all():
            exposure = exposures[member_id]
            exposure.views.setdefault(name, set()).add(STORED)
            exposure.records += 1
    _mark_shredded(session, exposures)
    return exposures


def member_batches(session: Session) -> Iterator[list[str]]:
    """Every member who still has a data key, in id order, ``BATCH`` ids at a time."""
    after = ""
    while True:
        batch = list(
            session.scalars(
                select(VaultDataKey.member_id)
                .where(VaultDataKey.member_id > after)
                .order_by(VaultDataKey.member_id)
                .limit(BATCH)
            )
        )
        if not batch:
            return
        yield batch
        after = batch[-1]


def unknown_members(session: Session, member_ids: Iterable[str]) -> list[str]:
    """The ids no member ever had (a crypto-shredded member is known: their row stays)."""
    ids = sorted(set(member_ids))
    known: set[str] = set()
    for start in range(0, len(ids), BATCH):
        batch = ids[start : start + BATCH]
        known.update(session.scalars(select(VaultMember.id).where(VaultMember.id.in_(batch))))
    return [member_id for member_id in ids if member_id not in known]


def _mark_shredded(session: Session, exposures: Mapping[str, Exposure]) -> None:
    ids = sorted(exposures)
    alive: set[str] = set()
    for start in range(0, len(ids), BATCH):
        batch = ids[start : start + BATCH]
        alive.update(
            session.scalars(select(VaultDataKey.member_id).where(VaultDataKey.member_id.in_(batch)))
        )
    for member_id, exposure in exposures.items():
        exposure.shredded = member_id not in alive


@dataclass(slots=True)
class Summary:
    """The counts an incident shows and its report states (no member named).

    ``fields``: members per field, in any view; ``views``: members per field
    and view, so that masked releases count apart from clear ones (the risk
    differs); ``identity_only``: members the client learnt of without any
    field value; ``sensitive``: a sensitive field (PIPL Art. 28) was released
    in a view that shows something of it.
    """

    members: int = 0
    records: int = 0
    shredded: int = 0
    identity_only: int = 0
    sensitive_members: int = 0
    fields: Counter[str] = field(default_factory=Counter)
    views: dict[str, Counter[str]] = field(default_factory=lambda: defaultdict(Counter))

    def add(self, policy: Policy, exposure: Exposure) -> None:
        self.members += 1
        self.records += exposure.records
        self.shredded += exposure.shredded
        if not exposure.views:
            self.identity_only += 1
        sensitive = False
        for name, views in exposure.views.items():
            self.fields[name] += 1
            for view in views:
                self.views[name][view] += 1
            spec = policy.fields.get(name)
            if spec is not None and spec.sensitive and views - HARMLESS_VIEWS:
                sensitive = True
        self.sensitive_members += sensitive

    def as_dict(self) -> dict[str, Any]:
        return {
            "members": self.members,
            "records": self.records,
            "fields": dict(sorted(self.fields.items())),
            "views": {
                name: dict(sorted(counts.items())) for name, counts in sorted(self.views.items())
            },
            "identity_only": self.identity_only,
            "sensitive": self.sensitive_members > 0,
            "sensitive_members": self.sensitive_members,
            "shredded": self.shredded,
        }
