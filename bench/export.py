"""Bulk export: the gated NDJSON export vs a plaintext SELECT serialised the same way.

A (gated): ``gate.export.export_members`` for ``analytics`` (decide per member
from consent, one durable audit entry per batch naming every member released,
decrypt, pseudonymise, apply the views), each line serialised to NDJSON bytes
exactly as ``GET /v1/members?purpose=analytics`` does.

B (plaintext): the baseline a team would build without memberguard: the
plain table ``bench_plain_member`` of ``bench.baseline`` (every field in
clear, shared with the HTTP suite), joined to ``consent_state`` for the same
consent rule (granted, under an accepted notice), read with one streamed
``SELECT`` of the purpose's fields and serialised to NDJSON. Both release the
same members; the run fails if they do not.

Each export runs in a child process of its own that does only that export, so
its peak RSS is the export's, not the loader's (VmHWM, not ``ru_maxrss``,
which Linux carries over from the forking parent):

    python -m bench.export --child gated|plain --home H [--db URL]

The child reads the analytics client's key from ``MG_BENCH_KEY`` (never from
its command line, which other users can see) and prints one JSON line.
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import resource
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from sqlalchemy import Select, select
from sqlalchemy.engine import Engine

from bench.baseline import build_plain_table, plain_table
from consent.models import ConsentState
from core.settings import Settings
from gate.context import build_services
from gate.export import export_members
from policies.model import Policy
from principals.clients import authenticate

PURPOSE = "analytics"
KEY_ENV = "MG_BENCH_KEY"
GATED_TARGET_PER_S = 50_000
TIME_RATIO_TARGET = 4.0  # gated time ≤ 4× plaintext time
RSS_TARGET_MB = 200.0


def _ndjson(item: dict[str, Any]) -> bytes:
    # Exactly as api/routers/members.py serialises an export line.
    return json.dumps(item, ensure_ascii=False, separators=(",", ":")).encode() + b"\n"


def _current_rss_mb() -> float:
    with open("/proc/self/statm") as statm:
        return int(statm.read().split()[1]) * resource.getpagesize() / 2**20


def _peak_rss_mb() -> float:
    """This process's own peak RSS (VmHWM: the high-water mark of its address space).

    Not ``ru_maxrss``: on Linux that survives execve and starts at the RSS
    the parent had when it forked, so a child started by a runner holding
    100,000 loaded members would report the runner's peak, not its own.
    """
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def settle_garbage() -> None:
    """Collect the start-up garbage before the clock starts, on both sides.

    A quick run's export takes about 0.1 s, and whether the interpreter's
    first full collection of its start-up objects (30-45 ms here) falls inside
    that window depended on how many objects the imports had allocated, not on
    the export: a code change elsewhere moved it in or out and swung the
    figure by a third. After one collection now, the next full one is far off.
    """
    gc.collect()


def _child_gated(settings: Settings) -> dict[str, Any]:
    services = build_services(settings)
    with services.reading() as session:
        actor = authenticate(session, os.environ.get(KEY_ENV))
    rss_before = _current_rss_mb()
    settle_garbage()
    started = time.perf_counter()
    export = export_members(services, actor=actor, purpose=PURPOSE, request_id=None)
    released = size = 0
    for item in export.lines:
        size += len(_ndjson(item))
        released += 1
    seconds = time.perf_counter() - started
    return {
        "released": released,
        "examined": export.stats["examined"],
        "batches": export.stats["batches"],
        "bytes": size,
        "seconds": seconds,
        "rss_before_mb": rss_before,
    }


def plain_export_statement(policy: Policy) -> tuple[Select[Any], list[str]]:
    """The baseline's query: the purpose's fields in clear, for members whose consent admits it."""
    table = plain_table(policy)
    spec = policy.purposes[PURPOSE]
    fields = list(spec.fields)
    consent = ConsentState.__table__
    statement = (
        select(table.c.id, *(table.c[name] for name in fields))
        .join(consent, (consent.c.member_id == table.c.id) & (consent.c.purpose == PURPOSE))
        .where(
            consent.c.status == "granted",
            consent.c.notice_version.in_(list(spec.accepted_notices)),
        )
        .order_by(table.c.id)
    )
    return statement, fields


def _child_plain(settings: Settings) -> dict[str, Any]:
    services = build_services(settings)
    statement, fields = plain_export_statement(services.policy)
    engine: Engine = services.sessions.kw["bind"]
    rss_before = _current_rss_mb()
    settle_garbage()
    started = time.perf_counter()
    released = size = 0
    with engine.connect() as conn:
        result = conn.execution_options(stream_results=True, yield_per=1000).execute(statement)
        for row in result:
            values = row._mapping
            item = {
                "id": values["id"],
                "fields": {name: values[name] for name in fields if values[name] is not None},
            }
            size += len(_ndjson(item))
            released += 1
    seconds = time.perf_counter() - started
    return {
        "released": released,
        "examined": released,
        "batches": 1,
        "bytes": size,
        "seconds": seconds,
        "rss_before_mb": rss_before,
    }


def _run_child(kind: str, home: Path, db_url: str | None, key: str) -> dict[str, Any]:
    command = [sys.executable, "-m", "bench.export", "--child", kind, "--home", str(home)]
    if db_url:
        command += ["--db", db_url]
    env = {k: v for k, v in os.environ.items() if not k.startswith("MEMBERGUARD_")}
    env[KEY_ENV] = key
    done = subprocess.run(  # noqa: S603 (our own interpreter and module)
        command, env=env, capture_output=True, check=False, cwd=Path(__file__).parent.parent
    )
    if done.returncode != 0:
        raise RuntimeError(
            f"export child ({kind}) exited {done.returncode}: {done.stderr.decode()[-2000:]}"
        )
    return json.loads(done.stdout.decode().strip().splitlines()[-1])


def run(ctx: Any) -> list[dict[str, Any]]:
    started = time.perf_counter()
    build_plain_table(ctx.services, ctx.settings.resolved_database_url)
    build_s = time.perf_counter() - started
    rounds = 2 if ctx.quick else 3
    gated: list[dict[str, Any]] = []
    plain: list[dict[str, Any]] = []
    for _ in range(rounds):  # alternate A and B
        gated.append(_run_child("gated", ctx.home, ctx.db_url, ctx.keys["analytics"]))
        plain.append(_run_child("plain", ctx.home, ctx.db_url, ctx.keys["analytics"]))
    if {g["released"] for g in gated} != {p["released"] for p in plain}:
        raise RuntimeError(
            f"gated and plaintext exports released different members: "
            f"{[g['released'] for g in gated]} vs {[p['released'] for p in plain]}"
        )
    gated_rate = statistics.median(g["released"] / g["seconds"] for g in gated)
    plain_rate = statistics.median(p["released"] / p["seconds"] for p in plain)
    examined_rate = statistics.median(g["examined"] / g["seconds"] for g in gated)
    ratio = gated_rate / plain_rate
    released = gated[0]["released"]
    examined = gated[0]["examined"]
    gated_rss = max(g["maxrss_mb"] for g in gated)
    plain_rss = max(p["maxrss_mb"] for p in plain)
    common = {
        "members": ctx.members,
        "released": released,
        "examined": examined,
        "rounds": rounds,
    }
    return [
        {
            "suite": "export",
            "name": f"NDJSON export, {released:,} of {examined:,} members ({PURPOSE})",
            "a": "gated export_members",
            "a_value": gated_rate,
            "b": "plaintext SELECT",
            "b_value": plain_rate,
            "unit": "members/s",
            "ratio": ratio,
            "target": (
                f"A ≥ {GATED_TARGET_PER_S:,}/s and ratio ≥ {1 / TIME_RATIO_TARGET:.2f} "
                f"(≤ {TIME_RATIO_TARGET:g}× the time)"
            ),
            "met": gated_rate >= GATED_TARGET_PER_S and ratio >= 1 / TIME_RATIO_TARGET,
            "notes": (
                f"released members/s, median of {rounds} alternating runs, one child process "
                f"each; gated examined {examined_rate:,.0f} members/s (consent decided for "
                f"every member); plaintext table built in {build_s:.1f} s"
            ),
            **common,
            "gated_seconds": [g["seconds"] for g in gated],
            "plain_seconds": [p["seconds"] for p in plain],
            "gated_examined_per_s": examined_rate,
            "bytes": gated[0]["bytes"],
            "plain_bytes": plain[0]["bytes"],
        },
        {
            "suite": "export",
            "name": f"peak RSS of the export process, {examined:,} members",
            "a": "gated export_members",
            "a_value": gated_rss,
            "b": "plaintext SELECT",
            "b_value": plain_rss,
            "unit": "MB",
            "ratio": gated_rss / plain_rss,
            "target": f"A < {RSS_TARGET_MB:g} MB (target stated at 1M members)",
            "met": gated_rss < RSS_TARGET_MB,
            "notes": (
                f"peak RSS (VmHWM) of a child doing only that export (interpreter and imports "
                f"included: {statistics.median(g['rss_before_mb'] for g in gated):.0f} MB "
                f"gated / {statistics.median(p['rss_before_mb'] for p in plain):.0f} MB plain "
                f"before the export started); measured at {examined:,} members, not 1M"
            ),
            **common,
        },
    ]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--child", choices=("gated", "plain"), required=True)
    parser.add_argument("--home", type=Path, required=True)
    parser.add_argument("--db", default=None)
    args = parser.parse_args(argv)
    settings = Settings(home=args.home, database_url=args.db)
    figures = _child_gated(settings) if args.child == "gated" else _child_plain(settings)
    figures["maxrss_mb"] = _peak_rss_mb()
    # Linux reports ru_maxrss in KiB. Kept for reference only: Linux carries the
    # parent's high-water mark over fork+exec, so it reads the runner's peak.
    figures["ru_maxrss_mb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(json.dumps(figures))
    return 0


if __name__ == "__main__":
    sys.exit(main())
