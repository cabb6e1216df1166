"""Bulk export: the gated NDJSON export vs the same export built without memberguard.

Two pairs, one per shape of ``gate.export.export_members``:

**Batched** (an identified purpose, ``personalization``, the ``crm`` client).
A: ``export_members`` batch by batch (decide every member from consent; per
batch, one unit of work that decrypts, records one durable entry naming every
member released and commits; then apply the views), each line serialised to
NDJSON bytes exactly as ``GET /v1/members?purpose=personalization`` does, the
trailer line included. B: the baseline a team would build without memberguard:
the plain table ``bench_plain_member`` of ``bench.baseline`` (every field in
clear, shared with the HTTP suite), joined to ``consent_state`` for the same
consent rule (granted, under an accepted notice), read with one streamed
``SELECT`` of the purpose's fields in member-id order and serialised to NDJSON.
B releases the same members in the same order (the run fails unless the
member-id sequences of A and B are identical). What B does not do: decrypt,
apply the views (``birthday`` year and ``address`` region: B sends the values
in clear), write audit entries, or commit anything.

**Anonymised** (the pseudonymous ``analytics``, the ``analytics`` client).
A: ``export_members`` plans outside the lock (decide, decrypt, generalise,
pseudonymise every consenting member), keeps the combinations at least k rows
share, then decides every kept row in one unit of work (consent and ciphertext
digests re-checked, entries recorded, committed) and streams the rows in
pseudonym order. B does the same anonymisation on the plain table: one
``SELECT`` of the consenting members with the views computed in SQL
(``band`` as a ``CASE`` on the policy's bounds, ``year`` as ``substr``), a
window ``COUNT(*)`` per combination, groups under k dropped in the query, an
HMAC-SHA256 pseudonym per row in Python, sorted by pseudonym, serialised. B
uses the client's own pseudonym key (read before its clock starts) only so that
its output can be compared with A's: the run fails unless both streams are
byte for byte the same (same rows, same values, same order). Both hold every
released row in memory before the first line (to count groups and sort); A
also holds its plan of every consenting member, so its memory grows with the
member count, unlike the batched path's.

The unit-of-work figures time each ``services.uow`` block of A, from asking
for the log-head lock to closing the session (the lock is released at its
commit): an upper bound on how long A held the lock, which blocks every other
decision meanwhile.

Each export runs in a child process of its own that does only that export, so
its peak RSS is the export's, not the loader's (VmHWM, not ``ru_maxrss``,
which Linux carries over from the forking parent):

    python -m bench.export --child gated|plain --purpose P --home H [--db URL]

The child reads the client's key from ``MG_BENCH_KEY`` (never from its command
line, which other users can see) and prints one JSON line.
"""

from __future__ import annotations

import argparse
import dataclasses
import gc
import hashlib
import hmac
import itertools
import json
import os
import resource
import statistics
import subprocess
import sys
import time
from pathlib import Path
from types import TracebackType
from typing import Any

from sqlalchemy import ColumnElement, Select, case, func, select
from sqlalchemy.engine import Engine

from audit.uow import AuditedUnitOfWork
from bench.baseline import build_plain_table, plain_table
from cli.demo import DEMO_CLIENTS
from consent.models import ConsentState
from core.settings import Settings
from gate.context import Services, build_services
from gate.export import export_members
from policies.model import Policy
from principals.actor import Actor
from principals.clients import authenticate

BATCHED_PURPOSE = "personalization"
ANONYMISED_PURPOSE = "analytics"
KEY_ENV = "MG_BENCH_KEY"
GATED_TARGET_PER_S = 50_000
TIME_RATIO_TARGET = 4.0  # gated time ≤ 4× plaintext time
RSS_TARGET_MB = 200.0


def client_for(purpose: str) -> str:
    """The first demo client (``cli.demo``) that may ask for ``purpose``."""
    for spec in DEMO_CLIENTS:
        if purpose in spec.purposes:
            return spec.name
    raise LookupError(f"no demo client has the purpose {purpose!r}")


def _ndjson(item: dict[str, Any]) -> bytes:
    # Exactly as api/routers/members.py serialises an export line.
    return json.dumps(item, ensure_ascii=False, separators=(",", ":")).encode() + b"\n"


def _trailer(trailer: dict[str, Any]) -> bytes:
    # Exactly as api/routers/members.py serialises the trailer line.
    return json.dumps(trailer, separators=(",", ":")).encode() + b"\n"


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


class _TimedUnitOfWork:
    """Times one ``with services.uow(...)`` block: lock asked for → session closed."""

    def __init__(self, uow: AuditedUnitOfWork, spans: list[tuple[float, float]]) -> None:
        self._uow = uow
        self._spans = spans
        self._started = 0.0

    def __enter__(self) -> AuditedUnitOfWork:
        self._started = time.perf_counter()
        return self._uow.__enter__()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        try:
            self._uow.__exit__(exc_type, exc, tb)
        finally:
            self._spans.append((self._started, time.perf_counter() - self._started))


@dataclasses.dataclass(frozen=True)
class TimedServices(Services):
    """``Services`` whose units of work are timed (bench only; the product is unchanged).

    ``uow_spans`` gets (start, seconds) per unit of work, on ``time.perf_counter``.
    """

    uow_spans: list[tuple[float, float]] = dataclasses.field(default_factory=list)

    @classmethod
    def wrapping(cls, services: Services) -> TimedServices:
        return cls(**{f.name: getattr(services, f.name) for f in dataclasses.fields(Services)})

    def uow(self, actor: Actor | None = None) -> AuditedUnitOfWork:
        return _TimedUnitOfWork(super().uow(actor), self.uow_spans)  # type: ignore[return-value]


def _child_gated(built: Services, purpose: str) -> dict[str, Any]:
    services = TimedServices.wrapping(built)
    with services.reading() as session:
        actor = authenticate(session, os.environ.get(KEY_ENV))
    rss_before = _current_rss_mb()
    settle_garbage()
    started = time.perf_counter()
    export = export_members(services, actor=actor, purpose=purpose, request_id=None)
    first_line_s = time.perf_counter() - started
    released = size = 0
    stream = hashlib.sha256()
    members = hashlib.sha256()
    for item in export.lines:
        line = _ndjson(item)
        size += len(line)
        stream.update(line)
        members.update(str(item.get("id", item.get("pseudonym"))).encode() + b"\n")
        released += 1
    size += len(_trailer(export.trailer))
    seconds = time.perf_counter() - started
    spans = services.uow_spans
    suppressed = export.stats.get("suppressed") or {}
    return {
        "released": released,
        "examined": export.stats["examined"],
        "batches": export.stats["batches"],
        "suppressed_small_groups": suppressed.get("small_groups"),
        "bytes": size,
        "seconds": seconds,
        "first_line_seconds": first_line_s,
        # The units of work after the key check: every one of them held the log-head lock.
        "uow_count": len(spans),
        "uow_max_seconds": max((s for _t, s in spans), default=0.0),
        "uow_total_seconds": sum(s for _t, s in spans),
        # Anonymised: time from the export's start to its (one) decision unit of work.
        "plan_seconds": (spans[0][0] - started) if spans else None,
        "stream_sha256": stream.hexdigest(),
        "members_sha256": members.hexdigest(),
        "rss_before_mb": rss_before,
    }


def plain_export_statement(policy: Policy, purpose: str) -> tuple[Select[Any], list[str]]:
    """The baseline's query: the purpose's fields in clear, for members whose consent admits it."""
    table = plain_table(policy)
    spec = policy.purposes[purpose]
    fields = list(spec.fields)
    consent = ConsentState.__table__
    statement = (
        select(table.c.id, *(table.c[name] for name in fields))
        .join(consent, (consent.c.member_id == table.c.id) & (consent.c.purpose == purpose))
        .where(
            consent.c.status == "granted",
            consent.c.notice_version.in_(list(spec.accepted_notices)),
        )
        .order_by(table.c.id)
    )
    return statement, fields


def _generalised(policy: Policy, name: str, view: str, column: Any) -> ColumnElement[Any]:
    """The baseline's own SQL for the views the anonymised purpose uses."""
    spec = policy.fields[name]
    if view == "clear":
        return column
    if view == "year" and spec.type == "date":  # stored as YYYY-MM-DD
        return func.substr(column, 1, 4)
    if view == "band" and spec.type == "integer" and spec.bands:
        bounds = list(spec.bands)
        whens: list[tuple[Any, Any]] = [
            (column.is_(None), None),
            (column < bounds[0], f"<{bounds[0]}"),
        ]
        whens += [(column < hi, f"{lo}-{hi - 1}") for lo, hi in itertools.pairwise(bounds)]
        return case(*whens, else_=f"{bounds[-1]}+")
    raise NotImplementedError(f"the plain baseline has no SQL for the {view!r} view of {name!r}")


def plain_anonymised_statement(policy: Policy, purpose: str) -> tuple[Select[Any], list[str]]:
    """Consenting members' generalised values, in groups of at least k (window count)."""
    table = plain_table(policy)
    spec = policy.purposes[purpose]
    fields = list(spec.fields)
    consent = ConsentState.__table__
    values = [
        _generalised(policy, name, view, table.c[name]).label(name)
        for name, view in spec.fields.items()
    ]
    grouped = (
        select(table.c.id, *values, func.count().over(partition_by=values).label("group_size"))
        .join(consent, (consent.c.member_id == table.c.id) & (consent.c.purpose == purpose))
        .where(
            consent.c.status == "granted",
            consent.c.notice_version.in_(list(spec.accepted_notices)),
        )
        .subquery()
    )
    statement = select(grouped.c.id, *(grouped.c[name] for name in fields)).where(
        grouped.c.group_size >= spec.k_anonymity
    )
    return statement, fields


def _child_plain(services: Services, purpose: str) -> dict[str, Any]:
    statement, fields = plain_export_statement(services.policy, purpose)
    engine: Engine = services.sessions.kw["bind"]
    rss_before = _current_rss_mb()
    settle_garbage()
    started = time.perf_counter()
    released = size = 0
    members = hashlib.sha256()
    with engine.connect() as conn:
        result = conn.execution_options(stream_results=True, yield_per=1000).execute(statement)
        for row in result:
            values = row._mapping
            item = {
                "id": values["id"],
                "fields": {name: values[name] for name in fields if values[name] is not None},
            }
            size += len(_ndjson(item))
            members.update(values["id"].encode() + b"\n")
            released += 1
    seconds = time.perf_counter() - started
    return {
        "released": released,
        "examined": released,
        "batches": 1,
        "bytes": size,
        "seconds": seconds,
        "members_sha256": members.hexdigest(),
        "rss_before_mb": rss_before,
    }


def _child_plain_anonymised(services: Services, purpose: str) -> dict[str, Any]:
    statement, fields = plain_anonymised_statement(services.policy, purpose)
    engine: Engine = services.sessions.kw["bind"]
    # The client's pseudonym key, only so that B's output can be compared with A's.
    with services.reading() as session:
        actor = authenticate(session, os.environ.get(KEY_ENV))
    keyed = hmac.new(services.keyring.pseudonym_key_for(actor.id), digestmod=hashlib.sha256)
    rss_before = _current_rss_mb()
    settle_garbage()
    started = time.perf_counter()
    with engine.connect() as conn:
        rows = conn.execute(statement).all()
    items: list[tuple[str, dict[str, Any]]] = []
    for row in rows:
        values = row._mapping
        digest = keyed.copy()
        digest.update(values["id"].encode())
        items.append(
            (
                digest.hexdigest()[:16],
                {name: values[name] for name in fields if values[name] is not None},
            )
        )
    items.sort(key=lambda item: item[0])
    size = 0
    stream = hashlib.sha256()
    members = hashlib.sha256()
    for pseudonym, values in items:
        line = _ndjson({"pseudonym": pseudonym, "fields": values})
        size += len(line)
        stream.update(line)
        members.update(pseudonym.encode() + b"\n")
    seconds = time.perf_counter() - started
    return {
        "released": len(items),
        "bytes": size,
        "seconds": seconds,
        "stream_sha256": stream.hexdigest(),
        "members_sha256": members.hexdigest(),
        "rss_before_mb": rss_before,
    }


def _run_child(kind: str, purpose: str, home: Path, db_url: str | None, key: str) -> dict[str, Any]:
    command = [sys.executable, "-m", "bench.export", "--child", kind, "--purpose", purpose]
    command += ["--home", str(home)]
    if db_url:
        command += ["--db", db_url]
    env = {k: v for k, v in os.environ.items() if not k.startswith("MEMBERGUARD_")}
    env[KEY_ENV] = key
    done = subprocess.run(  # noqa: S603 (our own interpreter and module)
        command, env=env, capture_output=True, check=False, cwd=Path(__file__).parent.parent
    )
    if done.returncode != 0:
        raise RuntimeError(
            f"export child ({kind}, {purpose}) exited {done.returncode}: "
            f"{done.stderr.decode()[-2000:]}"
        )
    return json.loads(done.stdout.decode().strip().splitlines()[-1])


def _alternate(ctx: Any, purpose: str, rounds: int) -> tuple[list[dict[str, Any]], ...]:
    key = ctx.keys[client_for(purpose)]
    gated: list[dict[str, Any]] = []
    plain: list[dict[str, Any]] = []
    for _ in range(rounds):  # alternate A and B
        gated.append(_run_child("gated", purpose, ctx.home, ctx.db_url, key))
        plain.append(_run_child("plain", purpose, ctx.home, ctx.db_url, key))
    return gated, plain


def _same(gated: list[dict[str, Any]], plain: list[dict[str, Any]], key: str, what: str) -> None:
    """Every run of A and of B gave the same ``key`` (a digest of what it released)."""
    if len({run[key] for run in gated + plain}) != 1:
        raise RuntimeError(
            f"gated and plaintext exports released different {what}: "
            f"released {[g['released'] for g in gated]} vs {[p['released'] for p in plain]}"
        )


def _batched_rows(ctx: Any, rounds: int, build_s: float) -> list[dict[str, Any]]:
    purpose = BATCHED_PURPOSE
    gated, plain = _alternate(ctx, purpose, rounds)
    _same(gated, plain, "members_sha256", "members (ids in order)")
    gated_rate = statistics.median(g["released"] / g["seconds"] for g in gated)
    plain_rate = statistics.median(p["released"] / p["seconds"] for p in plain)
    examined_rate = statistics.median(g["examined"] / g["seconds"] for g in gated)
    uow_max_ms = statistics.median(g["uow_max_seconds"] for g in gated) * 1000
    ratio = gated_rate / plain_rate
    released = gated[0]["released"]
    examined = gated[0]["examined"]
    gated_rss = max(g["maxrss_mb"] for g in gated)
    plain_rss = max(p["maxrss_mb"] for p in plain)
    common = {
        "members": ctx.members,
        "purpose": purpose,
        "path": "batched",
        "released": released,
        "examined": examined,
        "rounds": rounds,
    }
    return [
        {
            "suite": "export",
            "name": f"NDJSON export, batched, {released:,} of {examined:,} members ({purpose})",
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
                f"each; same member ids in the same order on both sides; gated examined "
                f"{examined_rate:,.0f} members/s (consent decided for every member) in "
                f"{gated[0]['batches']} units of work, the longest {uow_max_ms:.1f} ms under the "
                f"log-head lock; B sends birthday and address in clear (no year/region views), "
                f"decrypts nothing and records nothing; plaintext table built in {build_s:.1f} s"
            ),
            **common,
            "gated_seconds": [g["seconds"] for g in gated],
            "plain_seconds": [p["seconds"] for p in plain],
            "gated_examined_per_s": examined_rate,
            "gated_uow_max_ms": uow_max_ms,
            "bytes": gated[0]["bytes"],
            "plain_bytes": plain[0]["bytes"],
        },
        {
            "suite": "export",
            "name": f"peak RSS of the batched export process, {examined:,} members",
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
                f"before the export started); measured at {examined:,} members, not 1M; "
                f"memory is bounded by the batch size"
            ),
            **common,
        },
    ]


def _anonymised_rows(ctx: Any, rounds: int) -> list[dict[str, Any]]:
    purpose = ANONYMISED_PURPOSE
    k = ctx.services.policy.purposes[purpose].k_anonymity
    gated, plain = _alternate(ctx, purpose, rounds)
    _same(gated, plain, "stream_sha256", "rows (NDJSON bytes in order)")
    gated_s = statistics.median(g["seconds"] for g in gated)
    plain_s = statistics.median(p["seconds"] for p in plain)
    plan_ms = statistics.median(g["plan_seconds"] for g in gated) * 1000
    lock_ms = statistics.median(g["uow_max_seconds"] for g in gated) * 1000
    released = gated[0]["released"]
    examined = gated[0]["examined"]
    suppressed = gated[0]["suppressed_small_groups"]
    gated_rss = max(g["maxrss_mb"] for g in gated)
    plain_rss = max(p["maxrss_mb"] for p in plain)
    ratio = gated_s / plain_s
    common = {
        "members": ctx.members,
        "purpose": purpose,
        "path": "anonymised",
        "k": k,
        "released": released,
        "examined": examined,
        "suppressed": suppressed,
        "rounds": rounds,
    }
    return [
        {
            "suite": "export",
            "name": (
                f"anonymised export ({purpose}, k={k}), {released:,} of {examined:,} members "
                f"({suppressed:,} suppressed); decision unit of work {lock_ms:.0f} ms under the "
                f"log-head lock"
            ),
            "a": "gated export_members",
            "a_value": gated_s * 1000,
            "b": "plaintext SELECT + k-suppression",
            "b_value": plain_s * 1000,
            "unit": "ms",
            "ratio": ratio,
            "target": f"A ≤ {TIME_RATIO_TARGET:g}× B's time",
            "met": ratio <= TIME_RATIO_TARGET,
            "notes": (
                f"whole export to the last line, median of {rounds} alternating runs, one child "
                f"process each; A and B streams byte for byte identical (same pseudonyms, "
                f"values and order); A: plan outside the lock {plan_ms:.0f} ms, then one "
                f"decision unit of work of {lock_ms:.0f} ms holding the log-head lock (every "
                f"other decision waits meanwhile), then the stream; B: SQL views and window "
                f"count, HMAC pseudonym and sort in Python, records nothing"
            ),
            **common,
            "gated_seconds": [g["seconds"] for g in gated],
            "plain_seconds": [p["seconds"] for p in plain],
            "gated_plan_ms": plan_ms,
            "gated_lock_ms": lock_ms,
            "gated_lock_ms_runs": [g["uow_max_seconds"] * 1000 for g in gated],
            "bytes": gated[0]["bytes"],
            "plain_bytes": plain[0]["bytes"],
        },
        {
            "suite": "export",
            "name": f"peak RSS of the anonymised export process, {examined:,} members",
            "a": "gated export_members",
            "a_value": gated_rss,
            "b": "plaintext SELECT + k-suppression",
            "b_value": plain_rss,
            "unit": "MB",
            "ratio": gated_rss / plain_rss,
            # No stated target: the plan is held in memory, O(members) by design.
            "target": None,
            "met": None,
            "notes": (
                f"peak RSS (VmHWM) of a child doing only that export (interpreter and imports "
                f"included: {statistics.median(g['rss_before_mb'] for g in gated):.0f} MB "
                f"gated / {statistics.median(p['rss_before_mb'] for p in plain):.0f} MB plain "
                f"before the export started); grows with the member count: A holds its plan "
                f"of every consenting member, B every released row (to count and sort)"
            ),
            **common,
        },
    ]


def run(ctx: Any) -> list[dict[str, Any]]:
    started = time.perf_counter()
    build_plain_table(ctx.services, ctx.settings.resolved_database_url)
    build_s = time.perf_counter() - started
    rounds = 2 if ctx.quick else 3
    return _batched_rows(ctx, rounds, build_s) + _anonymised_rows(ctx, rounds)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--child", choices=("gated", "plain"), required=True)
    parser.add_argument("--purpose", default=BATCHED_PURPOSE)
    parser.add_argument("--home", type=Path, required=True)
    parser.add_argument("--db", default=None)
    args = parser.parse_args(argv)
    services = build_services(Settings(home=args.home, database_url=args.db))
    if args.child == "gated":
        figures = _child_gated(services, args.purpose)
    elif services.policy.purposes[args.purpose].member_id == "pseudonym":
        figures = _child_plain_anonymised(services, args.purpose)
    else:
        figures = _child_plain(services, args.purpose)
    figures["maxrss_mb"] = _peak_rss_mb()
    # Linux reports ru_maxrss in KiB. Kept for reference only: Linux carries the
    # parent's high-water mark over fork+exec, so it reads the runner's peak.
    figures["ru_maxrss_mb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(json.dumps(figures))
    return 0


if __name__ == "__main__":
    sys.exit(main())
