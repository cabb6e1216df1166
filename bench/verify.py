"""Audit verification: the online verifier vs the offline one, entries/s.

The log is whatever the other suites of the run appended (exports, appends,
reads, consent churn) plus extra realistic entries (20,000 with ``--quick``,
1,000,000 otherwise) recorded by units of work of 1,000 entries each.

A: ``audit.online.verify_log`` on the live database (leaf, chain, columns,
member index rows, stored Merkle nodes, every checkpoint and its signature).
B: ``audit.offline.verify_export`` on an ``export_log`` directory (leaf, chain,
Merkle root and signature at every checkpoint), no database, with its default
worker processes (one per CPU, at most 4, for a large export). The same export verified
with ``workers=0`` (all in one process) is in the row as well, to show what
the workers add.

A log that does not verify fails the suite: a benchmark of a broken verifier
is no benchmark.
"""

from __future__ import annotations

import shutil
import sys
import time
from typing import Any

from sqlalchemy import select

from audit.offline import export_log, verify_export
from audit.online import verify_log
from bench.append import BATCH, Records
from vault.models import VaultMember

QUICK_EXTRA = 20_000
FULL_EXTRA = 1_000_000
TARGET_PER_S = 300_000


def _append_extra(ctx: Any, count: int) -> float:
    services = ctx.services
    with services.reading() as session:
        members = list(session.scalars(select(VaultMember.id).limit(100_000)))
    records = Records(services, members, seed=23)
    started = time.perf_counter()
    done = 0
    while done < count:
        n = min(BATCH, count - done)
        with services.uow() as uow:
            for _ in range(n):
                uow.record(records.record())
            uow.commit()
        done += n
        if done % 200_000 == 0:
            print(f"  appended {done:,}/{count:,} entries", file=sys.stderr, flush=True)
    return time.perf_counter() - started


def run(ctx: Any) -> list[dict[str, Any]]:
    services = ctx.services
    assert services.notary is not None, "run_init creates the signer"
    verifier_key = services.notary.verifier_key
    extra = QUICK_EXTRA if ctx.quick else FULL_EXTRA
    append_s = _append_extra(ctx, extra)

    with services.reading() as session:
        started = time.perf_counter()
        # As `memberguard audit verify` runs it: the published checkpoints too.
        online = verify_log(
            session,
            verifier_key=verifier_key,
            published=ctx.settings.resolved_checkpoint_dir,
        )
        online_s = time.perf_counter() - started
    if not online.ok:
        raise RuntimeError(f"verify_log failed at {online.first_bad_seq}: {online.reason}")

    directory = ctx.home / "bench-audit-export"
    shutil.rmtree(directory, ignore_errors=True)
    with services.reading() as session:
        started = time.perf_counter()
        exported = export_log(session, directory, verifier_key=verifier_key)
        export_s = time.perf_counter() - started
    started = time.perf_counter()
    offline = verify_export(directory, verifier_key=verifier_key)
    workers = offline.workers  # as many as actually ran, not as many as wanted
    offline_s = time.perf_counter() - started
    if not offline.ok:
        raise RuntimeError(f"verify_export failed: {offline.failure}")
    started = time.perf_counter()
    single = verify_export(directory, verifier_key=verifier_key, workers=0)
    single_s = time.perf_counter() - started
    if single != offline:
        raise RuntimeError(f"verify_export without workers disagrees: {single} vs {offline}")
    shutil.rmtree(directory, ignore_errors=True)

    online_rate = online.size / online_s
    offline_rate = offline.size / offline_s
    single_rate = single.size / single_s
    return [
        {
            "suite": "verify",
            "name": f"verify {online.size:,} entries",
            "a": "online verify_log",
            "a_value": online_rate,
            "b": "offline verify_export",
            "b_value": offline_rate,
            "unit": "entries/s",
            "ratio": online_rate / offline_rate,
            "target": f"A and B ≥ {TARGET_PER_S:,}/s",
            "met": online_rate >= TARGET_PER_S and offline_rate >= TARGET_PER_S,
            "notes": (
                f"one run each; {offline.checkpoints:,} signed checkpoints checked offline; "
                f"B with {workers} worker processes, and in one process (workers=0) "
                f"{single_rate:,.0f} entries/s; "
                f"export_log {exported.size / export_s:,.0f} entries/s; the {extra:,} extra "
                f"entries appended at {extra / append_s:,.0f}/s"
            ),
            "entries": online.size,
            "checkpoints": offline.checkpoints,
            "online_seconds": online_s,
            "offline_seconds": offline_s,
            "offline_workers": workers,
            "offline_single_process_value": single_rate,
            "offline_single_process_seconds": single_s,
            "export_seconds": export_s,
            "extra_entries": extra,
        }
    ]
