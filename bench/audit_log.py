"""The audit log at scale: append, verify online and offline, prove, query.

    python -m bench.audit_log [--entries 1000000] [--home DIR]

Fills a fresh SQLite log with N realistic entries (gated reads of one member
out of 100,000, from four clients and five purposes; appended through the real
audited unit of work, 1,000 entries each), then reports in one run:

- append rate (batched commits), online ``verify_log`` rate, export and
  offline ``verify_export`` rates (entries/s);
- proof sizes (hashes) for an inclusion and a consistency proof at size N;
- the query plan and time of the auditor filters over N entries.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

from sqlalchemy import text

from audit.offline import export_log, verify_export
from audit.online import verify_log
from audit.proofs import consistency, inclusion
from audit.queries import EntryFilter, page_entries
from bench.append import Records
from cli.main import run_init
from core.ids import new_id
from core.settings import Settings
from gate.context import build_services


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--entries", type=int, default=1_000_000)
    parser.add_argument("--home", type=Path, default=None)
    args = parser.parse_args(argv)
    home = args.home or Path(tempfile.mkdtemp(prefix="mg-auditlog-"))
    settings = Settings(home=home, checkpoint_every_entries=100_000, checkpoint_every_seconds=10**6)
    run_init(settings, echo=False)
    services = build_services(settings)
    members = [new_id() for _ in range(100_000)]
    records = Records(services, members, seed=5)

    started = time.perf_counter()
    done = 0
    while done < args.entries:
        with services.uow() as uow:
            n = min(1000, args.entries - done)
            for _ in range(n):
                uow.record(records.record())
            done += n
            uow.commit()  # cuts a checkpoint every 100,000 entries
        if done % 100_000 == 0:
            print(f"  appended {done:,}", file=sys.stderr)
    append_s = time.perf_counter() - started
    with services.uow() as uow:
        uow.cut_checkpoint()
        uow.commit()
    cut = uow.checkpoint
    size = cut.size if cut else args.entries

    with services.reading() as session:
        t0 = time.perf_counter()
        report = verify_log(session, verifier_key=services.notary.verifier_key)
        online_s = time.perf_counter() - t0
        t0 = time.perf_counter()
        exported = export_log(session, home / "export", verifier_key=services.notary.verifier_key)
        export_s = time.perf_counter() - t0
        proof = inclusion(session, seq=size // 2, size=size)
        checkpoints = [
            r[0] for r in session.execute(text("SELECT size FROM audit_checkpoint ORDER BY size"))
        ]
        cons = consistency(session, old=checkpoints[len(checkpoints) // 2], new=size)
        # A member and a client the random entries named many times over.
        member, actor = members[0], records.clients[0].id
        timings = {}
        for name, filters in (
            ("member", EntryFilter(member=member)),
            ("actor", EntryFilter(actor=actor)),
            ("purpose+decision", EntryFilter(purpose="analytics", decision="permit")),
            (
                "actor, last 1000 entries' time",
                EntryFilter(actor=actor, since=services.clock().replace(year=2000)),
            ),
        ):
            t0 = time.perf_counter()
            page_entries(session, filters, cursor=None, limit=100)
            timings[name] = (time.perf_counter() - t0) * 1000
        plan = session.execute(
            text(
                "EXPLAIN QUERY PLAN SELECT audit_entry.seq FROM audit_entry "
                "JOIN audit_entry_member ON audit_entry_member.seq = audit_entry.seq "
                "WHERE audit_entry_member.member_id = :m AND audit_entry.seq > 0 "
                "ORDER BY audit_entry.seq LIMIT 101"
            ),
            {"m": member},
        ).all()
    t0 = time.perf_counter()
    offline = verify_export(home / "export", verifier_key=services.notary.verifier_key)
    offline_s = time.perf_counter() - t0

    print(f"log: {size:,} entries, {len(checkpoints)} checkpoints, home {home}")
    print(f"append (batches of 1,000 per commit): {args.entries / append_s:,.0f} entries/s")
    print(
        f"online verify:  {'OK' if report.ok else report.reason}  {size / online_s:,.0f} entries/s"
    )
    print(f"export:         {exported.size / export_s:,.0f} entries/s")
    verdict = "OK" if offline.ok else offline.failure
    print(f"offline verify: {verdict}  {size / offline_s:,.0f} entries/s")
    print(
        f"inclusion proof at size {size:,}: {len(proof['hashes'])} hashes; "
        f"consistency {cons['from']:,} -> {size:,}: {len(cons['hashes'])} hashes"
    )
    for name, ms in timings.items():
        print(f"filter {name}: first page of 100 in {ms:.1f} ms")
    print("plan (member filter): " + " | ".join(str(row[-1]) for row in plan))
    return 0 if report.ok and offline.ok else 1


if __name__ == "__main__":
    sys.exit(main())
