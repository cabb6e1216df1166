"""Consent churn: gated reads while the same members' consents flip, and 0 violations.

16 connections read ``marketing_sms`` (sms_gateway key) over a small set of
members, from the load generator's process (``bench.loadgen --record``), while
a writer in this process withdraws and grants ``marketing_sms`` for the same
members (crm key, ``collected_at`` = now), one change after another.

Violations are counted afterwards from the audit log itself, the record the
product is judged by. The log's order is the order decisions were made in
(each decision takes the log-head lock before it reads consent), so walking
the entries in ``seq`` order and tracking each member's ``marketing_sms``
state from ``consent.change`` entries says what every read should have been
decided on:

- a ``member.read`` permit while the tracked state is not granted, or a deny
  with reason ``consent-required`` while it is granted, is a violation;
- every HTTP 200 must name, in ``Audit-Seq``, a permit entry reading that
  member for ``marketing_sms`` (and every refusal a deny entry); no two
  answers may share an entry;
- from the clients' side: a read sent after a consent change was acknowledged
  must be recorded after that change (a higher seq), or it was decided on a
  state older than one already committed.

Before the load starts, each member's consent is set explicitly (alternately
granted and withdrawn), so the tracked state comes from the log alone.
"""

from __future__ import annotations

import json
import random
import threading
import time
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any

import httpx
from sqlalchemy import select

from audit.entry import parse_entry
from audit.models import AuditEntry
from bench.loadgen import run_load
from bench.server import running_server
from vault.models import VaultMember

if TYPE_CHECKING:
    from bench.context import BenchContext

SUITE = "churn"
PURPOSE = "marketing_sms"
CONNECTIONS = 16
MEMBERS = 50


@dataclass(frozen=True, slots=True)
class Answer:
    """One HTTP exchange as the client saw it (times: ``time.monotonic``)."""

    member: str
    status: int
    seq: int | None
    sent: float
    received: float


@dataclass(frozen=True, slots=True)
class Change(Answer):
    granted: bool = False


@dataclass
class Findings:
    reads_logged: int = 0
    permits: int = 0
    denies: int = 0
    changes_logged: int = 0
    violations: list[str] = field(default_factory=list)


def check(
    entries: Iterable[dict[str, Any]],
    *,
    members: set[str],
    reads: Sequence[Answer],
    changes: Sequence[Change],
    limit: int = 20,
) -> tuple[Findings, int]:
    """Count violations; returns the findings (first ``limit`` described) and the count."""
    found = Findings()
    count = 0

    def violation(text: str) -> None:
        nonlocal count
        count += 1
        if len(found.violations) < limit:
            found.violations.append(text)

    state: dict[str, bool] = {}  # member -> marketing_sms granted, as the log says
    logged: dict[int, dict[str, Any]] = {}
    for entry in entries:
        action = entry.get("action")
        touched = [m for m in entry.get("members", []) if m in members]
        if not touched:
            continue
        if action == "consent.change":
            detail = entry.get("detail") or {}
            if PURPOSE in detail.get("purposes", []):
                found.changes_logged += 1
                for member in touched:
                    state[member] = detail.get("status") == "granted"
            logged[entry["seq"]] = entry
        elif action == "member.read" and entry.get("purpose") == PURPOSE:
            found.reads_logged += 1
            logged[entry["seq"]] = entry
            member = touched[0]
            granted = state.get(member)
            if entry["decision"] == "permit":
                found.permits += 1
                if granted is not True:
                    violation(f"entry {entry['seq']}: permit while consent is not granted")
            else:
                found.denies += 1
                if entry.get("reason") == "consent-required" and granted is True:
                    violation(f"entry {entry['seq']}: consent-required while consent is granted")

    seen: set[int] = set()
    for answer in reads:
        if answer.status not in (200, 403):
            continue
        if answer.seq is None:
            violation(f"{answer.status} for {answer.member} without Audit-Seq")
            continue
        if answer.seq in seen:
            violation(f"Audit-Seq {answer.seq} answered twice")
        seen.add(answer.seq)
        entry = logged.get(answer.seq)
        expected = "permit" if answer.status == 200 else "deny"
        if (
            entry is None
            or entry.get("action") != "member.read"
            or entry.get("members") != [answer.member]
            or entry.get("decision") != expected
        ):
            violation(f"{answer.status} names entry {answer.seq}, not a {expected} of that read")

    # The clients' view: a change acknowledged before a read was sent is
    # committed, so the read must be decided after it (a higher seq).
    acknowledged: dict[str, list[tuple[float, int]]] = {}
    for change in changes:
        if change.status == 201 and change.seq is not None:
            acknowledged.setdefault(change.member, []).append((change.received, change.seq))
    for series in acknowledged.values():
        series.sort()
    for answer in reads:
        if answer.seq is None or answer.member not in acknowledged:
            continue
        before = [seq for at, seq in acknowledged[answer.member] if at < answer.sent]
        if before and answer.seq < max(before):
            violation(
                f"read entry {answer.seq} was sent after change {max(before)} was acknowledged"
            )
    return found, count


def log_entries(ctx: BenchContext, after: int, *, batch: int = 5000) -> Iterator[dict[str, Any]]:
    """Entries with seq > ``after``, in seq order, a batch per short read transaction."""
    while True:
        with ctx.services.reading() as session:
            rows = session.execute(
                select(AuditEntry.seq, AuditEntry.entry)
                .where(AuditEntry.seq > after)
                .order_by(AuditEntry.seq)
                .limit(batch)
            ).all()
        if not rows:
            return
        for row in rows:
            yield parse_entry(bytes(row.entry))
        after = rows[-1].seq


def pick_members(ctx: BenchContext, n: int) -> list[str]:
    with ctx.services.reading() as session:
        ids = list(session.scalars(select(VaultMember.id).order_by(VaultMember.id)))
    return random.Random(3).sample(ids, min(n, len(ids)))


class ConsentWriter:
    """Flips members' ``marketing_sms`` consent, one acknowledged change after another."""

    def __init__(self, client: httpx.Client, members: Sequence[str], seed: int = 5) -> None:
        self.client = client
        self.members = list(members)
        self.rng = random.Random(seed)
        self.granted: dict[str, bool] = {}
        self.changes: list[Change] = []
        self.failures = 0
        # Strictly increasing: an event collected before the current state's
        # does not change it (late sync from a slow touchpoint), and this
        # bench means every change to count.
        self._last = datetime.now(UTC)

    def set(self, member: str, granted: bool) -> None:
        at = max(datetime.now(UTC), self._last + timedelta(microseconds=1))
        self._last = at
        sent = time.monotonic()
        try:
            response = self.client.post(
                f"/v1/members/{member}/consents",
                json={
                    "purposes": [PURPOSE],
                    "status": "granted" if granted else "withdrawn",
                    "channel": "app",
                    "collected_at": at.isoformat(),
                },
            )
        except httpx.HTTPError:
            self.failures += 1
            return
        received = time.monotonic()
        seq = response.headers.get("Audit-Seq")
        if response.status_code != 201:
            self.failures += 1
        else:
            self.granted[member] = granted
        self.changes.append(
            Change(
                member,
                response.status_code,
                int(seq) if seq else None,
                sent,
                received,
                granted,
            )
        )

    def flip_until(self, stop: threading.Event) -> None:
        while not stop.is_set():
            member = self.rng.choice(self.members)
            self.set(member, not self.granted.get(member, False))


def read_answers(path: Path) -> list[Answer]:
    answers = []
    for line in path.read_text().splitlines():
        member, status, seq, sent, received = json.loads(line)
        answers.append(Answer(member, status, int(seq) if seq else None, sent, received))
    return answers


def run(
    ctx: BenchContext,
    *,
    seconds: float | None = None,
    connections: int = CONNECTIONS,
    members: int = MEMBERS,
) -> list[dict[str, Any]]:
    seconds = seconds if seconds is not None else (3.0 if ctx.quick else 10.0)
    chosen = pick_members(ctx, members)
    record = Path(ctx.home) / "churn-reads.jsonl"

    with (
        running_server(ctx.home, database_url=ctx.db_url) as (base, _process),
        httpx.Client(
            # The consent collector: crm reads marketing_sms, so it may not grant it.
            base_url=base,
            headers={"Authorization": f"Bearer {ctx.keys['app']}"},
            timeout=60,
        ) as client,
    ):
        writer = ConsentWriter(client, chosen)
        # Establish every member's state in the log before the load starts.
        for n, member in enumerate(chosen):
            writer.set(member, n % 2 == 0)
        if writer.failures or not writer.changes or writer.changes[0].seq is None:
            raise RuntimeError("could not set the starting consents")
        start_seq = writer.changes[0].seq - 1
        initial = len(writer.changes)

        stop = threading.Event()
        flipper = threading.Thread(target=writer.flip_until, args=(stop,), daemon=True)
        flipper.start()
        try:
            load = run_load(
                base + "/v1/members/{id}?purpose=" + PURPOSE,
                ids=chosen,
                connections=connections,
                seconds=seconds,
                headers={"Authorization": f"Bearer {ctx.keys['sms_gateway']}"},
                record=record,
                workdir=Path(ctx.home),
            )
        finally:
            stop.set()
            flipper.join(timeout=120)

    reads = read_answers(record)
    writes = [c for c in writer.changes[initial:] if c.status == 201]
    found, violations = check(
        log_entries(ctx, start_seq), members=set(chosen), reads=reads, changes=writer.changes
    )
    transport_errors = load["errors"] - sum(1 for r in reads if r.status >= 400)
    if not reads or not writes:
        violations += 1
        found.violations.append("the load did not run: no reads or no consent changes")
    statuses: dict[str, int] = {}
    for answer in reads:
        statuses[str(answer.status)] = statuses.get(str(answer.status), 0) + 1
    # Anything but a permit or a consent refusal is unexpected here; counted,
    # so that a smoke run that only saw errors cannot pass.
    unexpected = [answer for answer in reads if answer.status not in (200, 403)]
    if unexpected:
        violations += len(unexpected)
        found.violations.append(
            f"{len(unexpected)} reads answered {sorted({a.status for a in unexpected})}"
        )
    elapsed = load["seconds"]
    reads_per_s = len(reads) / elapsed if elapsed else 0.0
    writes_per_s = len(writes) / elapsed if elapsed else 0.0
    notes = (
        f"{len(chosen)} members, {connections} conn, {elapsed:.1f} s; "
        f"{found.permits} permits, {found.denies} denies, {len(writes)} changes; "
        f"reads by {load['generator']}"
    )
    if found.violations:
        notes += "; first: " + found.violations[0]
    return [
        {
            "suite": SUITE,
            "name": f"consent churn, {connections} conn",
            "a": "reads",
            "a_value": round(reads_per_s, 1),
            "b": "consent changes",
            "b_value": round(writes_per_s, 1),
            "unit": "req/s",
            "ratio": round(reads_per_s / writes_per_s, 2) if writes_per_s else 0.0,
            "target": "0 violations",
            "met": violations == 0,
            "notes": notes,
            "violations": violations,
            "violation_examples": found.violations,
            "reads": len(reads),
            "writes": len(writes),
            "write_failures": writer.failures,
            "reads_logged": found.reads_logged,
            "changes_logged": found.changes_logged,
            "permits": found.permits,
            "denies": found.denies,
            "statuses": statuses,
            "transport_errors": max(0, transport_errors),
            "connections": connections,
            "members": len(chosen),
            "generator": load["generator"],
        }
    ]
