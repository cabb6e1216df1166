"""Bulk export: every member a purpose admits, as NDJSON lines.

The read path's rule holds throughout: members are decided and one entry
naming exactly the members released is committed before anything of them is
sent. A member whose stored ciphertext fails authentication is skipped, named
in a ``vault.integrity`` entry, and never claimed as released.

Two shapes:

- **Identified purposes** stream batch by batch: each batch is one audited
  unit of work that decides, decrypts, records one entry naming the batch's
  released members and commits; memory is bounded by the batch size.
- **Pseudonymous purposes** are anonymised (``_anonymised``): rows carry the
  client's pseudonym in pseudonym order (unrelated to member ids, so two
  clients' exports do not line up by position), in the purpose's generalising
  views, and k-anonymous: every combination of released values is shared by at
  least the purpose's ``k_anonymity`` rows, and rows in smaller groups are
  suppressed. That needs the whole data set before the first row, so the
  export plans outside the lock (opening every admitted member), then decides
  every planned row in one unit of work that re-checks consent and that the
  member has not changed since (``updated_at``), suppresses again whatever
  group the re-check shrank, and records the entries; only then are rows sent.

A complete export ends with a trailer line (``Export.trailer``,
``{"trailer": {...}}``) with its counts; a stream without one was cut off and
must be discarded.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from sqlalchemy.orm import Session

from audit import actions
from consent.registry import consent_facts_for
from gate.context import Services
from gate.reads import FieldRelease, refusal
from policies.decide import Decision, decide_member, decide_purpose
from principals.actor import Actor
from vault.crypto import DecryptionFailed
from vault.members import SealedMember, existing_members_after, load_sealed, member_versions

# Members per statement when a whole export's plan is re-checked in one unit of work.
_CHECK_CHUNK = 1000


@dataclass
class Export:
    """A started export: its first entry is committed already."""

    first_seq: int
    lines: Iterator[dict[str, Any]]
    stats: dict[str, Any] = field(default_factory=dict)

    @property
    def trailer(self) -> dict[str, Any]:
        """The line that ends a complete export (its counts); valid once ``lines`` is consumed."""
        return {"trailer": dict(self.stats)}


def export_members(
    services: Services, *, actor: Actor, purpose: str, request_id: str | None
) -> Export:
    """Every member the purpose admits, decided and recorded before each line is sent.

    A client revoked meanwhile is refused at its next unit of work (which
    re-checks the key under the lock).
    """
    policy = services.policy
    decision = decide_purpose(policy, purpose=purpose, client_purposes=actor.purposes)
    if not decision.permitted:
        with services.uow(actor) as uow:
            seq = uow.record(
                actions.members_exported(
                    actor,
                    policy=policy.version,
                    decision=decision,
                    member_ids=[],
                    batch=None,
                    examined=0,
                    request_id=request_id,
                )
            )
            uow.commit()
        raise refusal(policy, decision, seq)
    release = FieldRelease(policy, services.keyring, actor, decision)
    if policy.purposes[purpose].member_id == "pseudonym":
        return _anonymised(services, actor, decision, release, request_id)
    return _batched(services, actor, decision, release, request_id)


def _admitted(
    session: Session, services: Services, decision: Decision, member_ids: Sequence[str]
) -> list[str]:
    """The members whose consent (read in ``session``) admits the decision's purpose."""
    purpose = decision.purpose
    assert purpose is not None  # a permitted decision names its purpose
    facts = consent_facts_for(session, {(m, purpose) for m in member_ids})
    return [
        m
        for m in member_ids
        if decide_member(services.policy, decision, facts.get((m, purpose))).permitted
    ]


def _open_each(
    sealed: dict[str, SealedMember], member_ids: Sequence[str], show: Callable[[SealedMember], Any]
) -> tuple[dict[str, Any], list[str]]:
    """``show`` each member whose ciphertexts are in hand; (shown by member, damaged ids)."""
    shown: dict[str, Any] = {}
    damaged: list[str] = []
    for member_id in member_ids:
        member = sealed.get(member_id)
        if member is None:
            continue
        try:
            shown[member_id] = show(member)
        except DecryptionFailed:
            damaged.append(member_id)
    return shown, damaged


def _batched(
    services: Services,
    actor: Actor,
    decision: Decision,
    release: FieldRelease,
    request_id: str | None,
) -> Export:
    policy = services.policy
    purpose = decision.purpose
    assert purpose is not None
    stats: dict[str, Any] = {"batches": 0, "examined": 0, "released": 0, "damaged": 0}
    batch_size = services.settings.export_batch_size
    fields = decision.views.keys()

    def batch(after: str) -> tuple[str | None, int | None, list[dict[str, Any]]]:
        with services.uow(actor) as uow:
            examined = existing_members_after(uow.session, after, limit=batch_size)
            admitted = _admitted(uow.session, services, decision, examined)
            sealed = load_sealed(uow.session, admitted, fields)
            # Opened before the entry is written, so that the entry names
            # exactly the members whose lines exist; sent only after commit.
            lines, damaged = _open_each(sealed, admitted, release.line)
            released = [m for m in admitted if m in lines]
            seq = None
            if released or stats["batches"] == 0:
                seq = uow.record(
                    actions.members_exported(
                        actor,
                        policy=policy.version,
                        decision=decision,
                        member_ids=released,
                        batch=stats["batches"] + 1,
                        examined=len(examined),
                        request_id=request_id,
                    )
                )
            if damaged:
                uow.record(_damaged(actor, services, purpose, damaged, request_id))
            uow.commit()
        stats["batches"] += 1
        stats["examined"] += len(examined)
        stats["released"] += len(released)
        stats["damaged"] += len(damaged)
        next_after = examined[-1] if len(examined) == batch_size else None
        return next_after, seq, [lines[m] for m in released]

    after, first_seq, first_lines = batch("")
    assert first_seq is not None  # the first batch is always recorded

    def stream() -> Iterator[dict[str, Any]]:
        yield from first_lines
        cursor = after
        while cursor is not None:
            cursor, _seq, lines = batch(cursor)
            yield from lines

    return Export(first_seq=first_seq, lines=stream(), stats=stats)


def _damaged(
    actor: Actor, services: Services, purpose: str, member_ids: list[str], request_id: str | None
) -> actions.Record:
    return actions.damaged_members_skipped(
        actor,
        policy=services.policy.version,
        purpose=purpose,
        member_ids=member_ids,
        request_id=request_id,
    )


@dataclass(frozen=True, slots=True)
class _PlannedRow:
    pseudonym: str
    member_id: str
    fields: dict[str, Any]
    # The released values as one hashable key: rows sharing it form a group.
    combination: tuple[tuple[str, Any], ...]
    # The member's ``updated_at`` when the fields were opened: the decision
    # checks that the member has not changed since.
    version: datetime


def _k_anonymous(rows: list[_PlannedRow], k: int) -> list[_PlannedRow]:
    """The rows whose combination of released values at least ``k`` rows share."""
    counts = Counter(row.combination for row in rows)
    return [row for row in rows if counts[row.combination] >= k]


def _anonymised(
    services: Services,
    actor: Actor,
    decision: Decision,
    release: FieldRelease,
    request_id: str | None,
) -> Export:
    policy = services.policy
    purpose = decision.purpose
    assert purpose is not None
    k = policy.purposes[purpose].k_anonymity
    batch_size = services.settings.export_batch_size
    fields = decision.views.keys()

    # 1. Plan, outside the lock: who is admitted now, and what each would show.
    planned: list[_PlannedRow] = []
    damaged: list[str] = []
    examined = 0
    with services.reading() as session:
        after = ""
        while True:
            ids = existing_members_after(session, after, limit=batch_size)
            examined += len(ids)
            admitted = _admitted(session, services, decision, ids)
            # The versions first: a change after this read is seen as one.
            versions = member_versions(session, admitted)
            sealed = load_sealed(session, admitted, fields)
            shown, bad = _open_each(sealed, admitted, release.fields)
            damaged.extend(bad)
            planned.extend(
                _PlannedRow(
                    pseudonym=release.label(m),
                    member_id=m,
                    fields=shown[m],
                    combination=tuple(sorted(shown[m].items())),
                    version=versions[m],
                )
                for m in admitted
                if m in shown and m in versions
            )
            if len(ids) < batch_size:
                break
            after = ids[-1]
    kept = _k_anonymous(planned, k)

    # 2. Decide every kept row in one unit of work: still admitted, not
    # changed or shredded since it was opened (narrow indexed reads, no
    # ciphertexts, so the lock is held briefly); then suppress again any
    # group the re-check shrank, so that the rows released are k-anonymous
    # among themselves.
    with services.uow(actor) as uow:
        still: list[_PlannedRow] = []
        for start in range(0, len(kept), _CHECK_CHUNK):
            chunk = kept[start : start + _CHECK_CHUNK]
            admitted_now = _admitted(uow.session, services, decision, [r.member_id for r in chunk])
            versions_now = member_versions(uow.session, admitted_now)
            still.extend(row for row in chunk if versions_now.get(row.member_id) == row.version)
        released = sorted(_k_anonymous(still, k), key=lambda row: row.pseudonym)
        suppressed = {
            "k": k,
            "small_groups": len(planned) - len(kept) + len(still) - len(released),
            "changed_during_export": len(kept) - len(still),
            "damaged": len(damaged),
        }
        first_seq: int | None = None
        batches = [released[i : i + batch_size] for i in range(0, len(released), batch_size)]
        for number, rows in enumerate(batches or [[]], start=1):
            seq = uow.record(
                actions.members_exported(
                    actor,
                    policy=policy.version,
                    decision=decision,
                    member_ids=[row.member_id for row in rows],
                    batch=number,
                    examined=examined if number == 1 else 0,
                    request_id=request_id,
                    suppressed=suppressed if number == 1 else None,
                )
            )
            first_seq = seq if first_seq is None else first_seq
        if damaged:
            uow.record(_damaged(actor, services, purpose, damaged, request_id))
        uow.commit()
    assert first_seq is not None

    stats: dict[str, Any] = {
        "batches": len(batches),
        "examined": examined,
        "released": len(released),
        "suppressed": suppressed,
    }

    def stream() -> Iterator[dict[str, Any]]:
        for row in released:
            yield {release.label_key: row.pseudonym, "fields": row.fields}

    return Export(first_seq=first_seq, lines=stream(), stats=stats)
