"""Audit append vs a plain INSERT of rows of the same size, on the same engine.

A: the audited unit of work (``services.uow()``: the head lock at open, then
``record`` and ``commit``, which appends with member back-links, canonical
bytes, leaf and chain hash, Merkle nodes and member index rows, cuts a signed
checkpoint when one is due, and commits durably).

B: the baseline a team would build: a plain access-log table
``bench_plain_audit`` with the same columns and indexes as ``audit_entry``
plus the member id, one INSERT of a row of the same size and a commit. Same
engine, same sessions, so the same durability (SQLite: WAL,
``synchronous=FULL``, ``BEGIN IMMEDIATE``).

Two pairs, alternating A and B: one entry per commit, and batches of 1,000
per commit (one unit of work recording 1,000 entries vs ``executemany``).
"""

from __future__ import annotations

import random
import statistics
import time
from collections.abc import Callable
from typing import Any

from sqlalchemy import Column, Index, Integer, MetaData, String, Table, insert, select
from sqlalchemy.engine import Engine

from audit import actions
from audit.actions import Record
from audit.models import AuditEntry
from core.db import LongBlob, UTCDateTime
from core.ids import ID_LENGTH, new_id
from policies.decide import Decision
from principals.actor import Actor
from vault.models import VaultMember

PLAIN_TABLE = "bench_plain_audit"
BATCH = 1000
SINGLE_RATIO_TARGET = 1.5  # single-entry durable commits within 1.5× of a plain INSERT
BATCHED_TARGET_PER_S = 20_000
PURPOSES = ("customer_service", "membership", "marketing_sms", "analytics", "delivery")


def plain_audit_table(metadata: MetaData | None = None) -> Table:
    """``audit_entry``'s columns and indexes plus the member id, with none of the log's duties."""
    return Table(
        PLAIN_TABLE,
        metadata or MetaData(),
        Column("id", Integer, primary_key=True, autoincrement=True),
        Column("recorded_at", UTCDateTime()),
        Column("action", String(32)),
        Column("actor", String(64)),
        Column("purpose", String(64)),
        Column("decision", String(8)),
        Column("reason", String(64)),
        Column("member_id", String(ID_LENGTH)),
        Column("entry", LongBlob),
        Column("leaf_hash", String(64)),
        Column("chain_hash", String(64)),
        Index("ix_bench_plain_audit_actor_id", "actor", "id"),
        Index("ix_bench_plain_audit_purpose_id", "purpose", "id"),
        Index("ix_bench_plain_audit_action_id", "action", "id"),
        Index("ix_bench_plain_audit_recorded_at", "recorded_at"),
        Index("ix_bench_plain_audit_member_id", "member_id"),
    )


class Records:
    """Realistic gated-read records (one member each) and same-sized plain rows."""

    def __init__(self, services: Any, members: list[str], *, seed: int) -> None:
        self.services = services
        self.members = members
        self.rng = random.Random(seed)
        self.clients = [
            Actor(id=new_id(), name=f"bench{n}", role="client", kind="client") for n in range(4)
        ]
        self.template: dict[str, Any] | None = None

    def record(self) -> Record:
        purpose = self.rng.choice(PURPOSES)
        return actions.member_read(
            self.rng.choice(self.clients),
            policy=self.services.policy.version,
            decision=Decision("permit", "legal-basis:contract", purpose),
            member_id=self.rng.choice(self.members),
            released_views={"name": "masked", "phone": "masked"},
            request_id=new_id(),
        )

    def plain_row(self) -> dict[str, Any]:
        assert self.template is not None, "learn_template first"
        record = self.record()
        return {
            **self.template,
            "recorded_at": self.services.clock(),
            "actor": record.actor,
            "purpose": record.purpose,
            "member_id": record.members[0],
        }

    def learn_template(self) -> None:
        """Copy the size of a real entry: its bytes and hashes become the plain row's payload."""
        with self.services.reading() as session:
            row = session.execute(
                select(AuditEntry).where(AuditEntry.action == "member.read").limit(1)
            ).scalar_one()
            self.template = {
                "action": row.action,
                "decision": row.decision,
                "reason": row.reason,
                "entry": bytes(row.entry),
                "leaf_hash": row.leaf_hash,
                "chain_hash": row.chain_hash,
            }


def _timed(work: Callable[[], None], repeats: int) -> float:
    started = time.perf_counter()
    for _ in range(repeats):
        work()
    return time.perf_counter() - started


def run(ctx: Any) -> list[dict[str, Any]]:
    services = ctx.services
    engine: Engine = services.sessions.kw["bind"]
    table = plain_audit_table()
    table.metadata.create_all(engine, checkfirst=True)
    with services.reading() as session:
        members = list(session.scalars(select(VaultMember.id).limit(10_000)))
    records = Records(services, members, seed=11)

    def gated_single() -> None:
        with services.uow() as uow:
            uow.record(records.record())
            uow.commit()

    def plain_single() -> None:
        with services.sessions() as session:
            session.execute(insert(table), [records.plain_row()])
            session.commit()

    def gated_batch() -> None:
        with services.uow() as uow:
            for record in [records.record() for _ in range(BATCH)]:
                uow.record(record)
            uow.commit()

    def plain_batch() -> None:
        with services.sessions() as session:
            session.execute(insert(table), [records.plain_row() for _ in range(BATCH)])
            session.commit()

    # Warm-up, both sides: the first append also gives the plain rows their size.
    _timed(gated_single, 5)
    records.learn_template()
    _timed(plain_single, 5)

    rounds = 2 if ctx.quick else 3
    singles = 150 if ctx.quick else 1000
    batches = 3 if ctx.quick else 20
    single_a: list[float] = []
    single_b: list[float] = []
    batch_a: list[float] = []
    batch_b: list[float] = []
    for _ in range(rounds):  # alternate A and B
        single_a.append(singles / _timed(gated_single, singles))
        single_b.append(singles / _timed(plain_single, singles))
    for _ in range(rounds):
        batch_a.append(batches * BATCH / _timed(gated_batch, batches))
        batch_b.append(batches * BATCH / _timed(plain_batch, batches))

    durability = (
        f"SQLite WAL synchronous={ctx.settings.sqlite_synchronous}"
        if ctx.database == "sqlite"
        else f"{ctx.database} default durability"
    )
    a_single, b_single = statistics.median(single_a), statistics.median(single_b)
    a_batch, b_batch = statistics.median(batch_a), statistics.median(batch_b)
    entry_bytes = len(records.template["entry"]) if records.template else 0
    return [
        {
            "suite": "append",
            "name": "one entry per durable commit",
            "a": "uow.record + commit",
            "a_value": a_single,
            "b": "plain INSERT + commit",
            "b_value": b_single,
            "unit": "entries/s",
            "ratio": a_single / b_single,
            "target": f"ratio ≥ {1 / SINGLE_RATIO_TARGET:.2f} (within {SINGLE_RATIO_TARGET:g}×)",
            "met": a_single / b_single >= 1 / SINGLE_RATIO_TARGET,
            "notes": (
                f"median of {rounds} alternating runs of {singles:,}; {durability}; "
                f"rows of the same size ({entry_bytes} B entry bytes)"
            ),
            "rounds": rounds,
            "per_round": singles,
            "a_runs": single_a,
            "b_runs": single_b,
        },
        {
            "suite": "append",
            "name": f"batched, {BATCH:,} entries per commit",
            "a": "1,000 × uow.record + commit",
            "a_value": a_batch,
            "b": "plain executemany + commit",
            "b_value": b_batch,
            "unit": "entries/s",
            "ratio": a_batch / b_batch,
            "target": f"A ≥ {BATCHED_TARGET_PER_S:,}/s",
            "met": a_batch >= BATCHED_TARGET_PER_S,
            "notes": (
                f"median of {rounds} alternating runs of {batches * BATCH:,}; {durability}; "
                f"a signed checkpoint every {ctx.settings.checkpoint_every_entries:,} entries"
            ),
            "rounds": rounds,
            "per_round": batches * BATCH,
            "a_runs": batch_a,
            "b_runs": batch_b,
        },
    ]
