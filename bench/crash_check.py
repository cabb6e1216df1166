"""kill -9 the server under load, then prove the audit log lost nothing it promised.

A 200 from a gated read means its audit entry was committed before the data
left (DESIGN, "The read path"). So after a SIGKILL mid-load:

(a) ``verify_log`` is OK: no committed entry is lost or corrupted;
(b) every 200 received names, in ``Audit-Seq``, an entry that is in the log,
    for that member, with decision ``permit``; no two responses share a seq;
(c) entries no response was received for are the requests in flight at the
    kill: at most one per load thread (each thread has one request open).

Usage (a temporary SQLite home unless --db-url is given)::

    python -m bench.crash_check --seconds 3
    python -m bench.crash_check --db-url postgresql://postgres@127.0.0.1:5432/crash

Exits 1 on any violation. ``run()`` returns the same summary as a dict.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
from sqlalchemy import select

from audit.entry import parse_entry
from audit.log import read_head
from audit.models import AuditEntry
from audit.online import verify_log
from bench.server import running_server
from core.db import build_engine, session_factory
from vault.models import VaultMember

MEMBERGUARD = [sys.executable, "-m", "cli.main"]
PURPOSE = "customer_service"  # contract basis: every member is readable by crm
KEY_LINE = re.compile(r"^\s+(\w+)\s+(mg_\S+)\s*$", re.MULTILINE)


@dataclass
class Load:
    """What the load threads saw. Appends are atomic under the GIL."""

    responses: list[tuple[str, int, int | None]] = field(default_factory=list)
    errors_before_kill: int = 0
    cut_off: int = 0  # sent, then the connection died under it: in flight at the kill
    refused: int = 0  # not even connected: the server was already gone
    killed: threading.Event = field(default_factory=threading.Event)


def demo_keys(env: dict[str, str], members: int, cwd: Path) -> dict[str, str]:
    done = subprocess.run(  # noqa: S603  (our own CLI, fixed arguments)
        [*MEMBERGUARD, "demo", "--members", str(members), "--no-serve"],
        env=env,
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    if done.returncode != 0:
        raise RuntimeError(f"memberguard demo failed ({done.returncode}):\n{done.stderr[-2000:]}")
    keys = dict(KEY_LINE.findall(done.stdout))
    if "crm" not in keys:
        raise RuntimeError("no crm key in the output of memberguard demo")
    return keys


def reader(base: str, key: str, members: list[str], load: Load, seed: int) -> None:
    rng = random.Random(seed)
    headers = {"Authorization": f"Bearer {key}"}
    with httpx.Client(base_url=base, headers=headers, timeout=30) as client:
        while True:
            member = rng.choice(members)
            try:
                response = client.get(f"/v1/members/{member}", params={"purpose": PURPOSE})
            except httpx.ConnectError:
                if load.killed.is_set():
                    load.refused += 1
                    return
                load.errors_before_kill += 1
                continue
            except httpx.HTTPError:
                if load.killed.is_set():
                    load.cut_off += 1
                    return
                load.errors_before_kill += 1
                continue
            seq = response.headers.get("Audit-Seq")
            load.responses.append((member, response.status_code, int(seq) if seq else None))


def check_log(db_url: str, load: Load, start_size: int, threads: int) -> dict[str, Any]:
    violations: list[str] = []
    engine = build_engine(db_url)
    try:
        with session_factory(engine)() as session:
            report = verify_log(session)
            if not report.ok:
                violations.append(f"verify: entry {report.first_bad_seq}: {report.reason}")
            head = read_head(session)
            rows = session.execute(
                select(AuditEntry.seq, AuditEntry.entry).where(AuditEntry.seq > start_size)
            ).all()
    finally:
        engine.dispose()
    logged = {row.seq: parse_entry(bytes(row.entry)) for row in rows}

    answered = [r for r in load.responses if r[2] is not None]
    seqs = Counter(seq for _m, _s, seq in answered)
    for seq, count in seqs.items():
        if count > 1:
            violations.append(f"Audit-Seq {seq} was answered {count} times")
    for member, status, seq in load.responses:
        if status != 200:
            continue
        entry = logged.get(seq) if seq is not None else None
        if entry is None:
            violations.append(f"200 for {member} names entry {seq}, which is not in the log")
        elif (entry["action"], entry["decision"], entry["members"]) != (
            "member.read",
            "permit",
            [member],
        ):
            violations.append(f"entry {seq} does not record the permitted read of {member}")
    # A checkpoint's entry answers no request: it is cut in the commit of whichever
    # request crossed the interval, so a long enough load has some.
    requests = {seq for seq, entry in logged.items() if entry["action"] != "audit.checkpoint"}
    unanswered = sorted(requests - set(seqs))
    bound = threads + load.errors_before_kill
    if len(unanswered) > bound:
        violations.append(
            f"{len(unanswered)} entries have no response, but at most {bound} were in flight"
        )
    statuses = Counter(status for _m, status, _s in load.responses)
    if statuses[200] == 0:
        violations.append("no read succeeded: the load never ran")
    return {
        "ok": not violations,
        "violations": violations,
        "verify": "OK" if report.ok else f"FAILED at {report.first_bad_seq}: {report.reason}",
        "responses": len(load.responses),
        "statuses": {str(k): v for k, v in sorted(statuses.items())},
        "entries_in_log": head.size,
        "entries_during_load": len(logged),
        "entries_without_response": len(unanswered),
        "cut_off_at_kill": load.cut_off,
        "refused_after_kill": load.refused,
        "errors_before_kill": load.errors_before_kill,
    }


def run(
    db_url: str | None = None,
    seconds: float = 3.0,
    *,
    members: int = 300,
    threads: int = 8,
    home: Path | None = None,
) -> dict[str, Any]:
    """Load, kill -9 mid-load, check the log. ``db_url`` None: SQLite in a temp home."""
    owned = home is None
    home = Path(tempfile.mkdtemp(prefix="mg-crash-")) if home is None else home
    env = {k: v for k, v in os.environ.items() if not k.startswith("MEMBERGUARD_")}
    env.update(MEMBERGUARD_HOME=str(home), MEMBERGUARD_LOG_FORMAT="json")
    if db_url is not None:
        env["MEMBERGUARD_DATABASE_URL"] = db_url
    url = db_url or f"sqlite:///{(home / 'memberguard.db').as_posix()}"
    try:
        keys = demo_keys(env, members, home)
        engine = build_engine(url)
        try:
            with session_factory(engine)() as session:
                ids = list(session.scalars(select(VaultMember.id).limit(1000)))
                start_size = read_head(session).size
        finally:
            engine.dispose()
        if not ids:
            raise RuntimeError("no members to read")

        extra = {"MEMBERGUARD_LOG_FORMAT": "json"}
        with running_server(home, database_url=db_url, extra_env=extra) as (base, server):
            load = Load()
            workers = [
                threading.Thread(target=reader, args=(base, keys["crm"], ids, load, n), daemon=True)
                for n in range(threads)
            ]
            started = time.monotonic()
            for worker in workers:
                worker.start()
            time.sleep(seconds)
            load.killed.set()
            os.kill(server.pid, signal.SIGKILL)
            server.wait(timeout=10)
            for worker in workers:
                worker.join(timeout=60)
            elapsed = time.monotonic() - started

        result = check_log(url, load, start_size, threads)
        result["load_seconds"] = round(elapsed, 2)
        result["reads_per_second"] = round(result["statuses"].get("200", 0) / elapsed)
        if any(w.is_alive() for w in workers):
            result["violations"].append("a load thread did not stop after the kill")
            result["ok"] = False
        return result
    finally:
        if owned:
            shutil.rmtree(home, ignore_errors=True)


def summary(result: dict[str, Any]) -> str:
    lines = [
        f"load:      {result['load_seconds']} s, {result['reads_per_second']} reads/s, "
        f"then SIGKILL",
        f"responses: {result['responses']} received {result['statuses']}",
        f"log:       {result['entries_in_log']} entries, {result['entries_during_load']} "
        f"written during the load; verify {result['verify']}",
        f"in flight: {result['entries_without_response']} entries without a received response; "
        f"{result['cut_off_at_kill']} requests cut off, {result['refused_after_kill']} refused",
    ]
    if result["errors_before_kill"]:
        lines.append(f"errors:    {result['errors_before_kill']} requests failed before the kill")
    lines += [f"VIOLATION: {v}" for v in result["violations"]]
    lines.append("OK" if result["ok"] else "FAILED")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--db-url", help="database URL (default: SQLite in a temp home)")
    parser.add_argument("--seconds", type=float, default=3.0, help="load before the kill")
    parser.add_argument("--members", type=int, default=300)
    parser.add_argument("--threads", type=int, default=8)
    parser.add_argument("--json", action="store_true", help="print the result as JSON")
    args = parser.parse_args(argv)
    result = run(args.db_url, args.seconds, members=args.members, threads=args.threads)
    print(json.dumps(result, indent=2) if args.json else summary(result))
    return 0 if result["ok"] else 1


if __name__ == "__main__":
    sys.exit(main())
