"""Gated vs ungated HTTP read, side by side in one run.

A (gated): ``GET /v1/members/{id}?purpose=customer_service`` with the crm key
through ``memberguard serve``: authentication, decision, consent check,
durable audit append, decryption and masking.
B (ungated): ``GET /plain/members/{id}`` from ``bench.baseline``, the same
fields in clear from a plain table in the same database, on the same stack.

Both servers run for the whole suite; the load generator (``bench.loadgen``,
a separate process) drives one at a time, alternating A and B at 1, 16 and 64
connections, with the order flipped every other round so that drift on a
shared machine falls on both sides alike. Random member ids over every
loaded member, the same ids for A and B.

Throughput is total requests over total time across rounds; p50/p99 are the
mean of the rounds' percentiles (wrk reports percentiles, not samples).
Targets (issue 4, at 16 connections): throughput ratio gated/ungated ≥ 0.75,
p99 gated ≤ 2× p99 ungated.
"""

from __future__ import annotations

import random
from pathlib import Path
from typing import TYPE_CHECKING, Any

import httpx
from sqlalchemy import select

from bench.baseline import PURPOSE, build_plain_table, running_baseline
from bench.loadgen import choose_generator, run_load
from bench.server import running_server
from core.settings import Settings
from vault.models import VaultMember

if TYPE_CHECKING:
    from bench.context import BenchContext

SUITE = "http"
CONNECTIONS = (1, 16, 64)
TARGET_CONNECTIONS = 16
THROUGHPUT_TARGET = 0.75
P99_TARGET = 2.0
MAX_ERROR_RATE = 0.01  # a run that mostly failed measures nothing


def database_url(ctx: BenchContext) -> str:
    return Settings(home=ctx.home, database_url=ctx.db_url).resolved_database_url


def member_ids(ctx: BenchContext, *, limit: int | None = None) -> list[str]:
    with ctx.services.reading() as session:
        stmt = select(VaultMember.id).order_by(VaultMember.id)
        ids = list(session.scalars(stmt))
    if limit is not None and len(ids) > limit:
        ids = random.Random(1).sample(ids, limit)
    return ids


def check_same_fields(gated: str, plain: str, *, key: str, member: str) -> list[str]:
    """Both sides answer 200 with the same field names for one member, or raise."""
    a = httpx.get(
        f"{gated}/v1/members/{member}",
        params={"purpose": PURPOSE},
        headers={"Authorization": f"Bearer {key}"},
        timeout=30,
    )
    b = httpx.get(f"{plain}/plain/members/{member}", timeout=30)
    if a.status_code != 200 or b.status_code != 200:
        raise RuntimeError(f"sanity read failed: gated {a.status_code}, ungated {b.status_code}")
    if sorted(a.json()["fields"]) != sorted(b.json()["fields"]):
        raise RuntimeError("gated and ungated reads answer different field sets")
    return sorted(a.json()["fields"])


def _combine(runs: list[dict[str, Any]]) -> dict[str, Any]:
    requests = sum(r["requests"] for r in runs)
    stalled = any(r["requests"] < r["connections"] for r in runs)
    seconds = sum(r["seconds"] for r in runs)
    return {
        "requests": requests,
        "errors": sum(r["errors"] for r in runs),
        "rps": requests / seconds if seconds else 0.0,
        "p50_ms": sum(r["p50_ms"] for r in runs) / len(runs),
        "p99_ms": sum(r["p99_ms"] for r in runs) / len(runs),
        "client_cpu": max(r["client_cpu"] for r in runs),
        "rounds_rps": [round(r["rps"], 1) for r in runs],
        "stalled": stalled,
    }


def _error_rate(side: dict[str, Any]) -> float:
    total = side["requests"] + side["errors"]
    return side["errors"] / total if total else 1.0


def rows_for(
    connections: int, gated: dict[str, Any], plain: dict[str, Any], *, generator: str, db: str
) -> list[dict[str, Any]]:
    """Two rows per connection count: throughput, and p99 latency (with p50 alongside)."""
    targeted = connections == TARGET_CONNECTIONS
    # Fewer answers than connections: requests outlived the run (a stall), and
    # the percentiles describe only the few that got through.
    stalled = [name for name, side in (("gated", gated), ("ungated", plain)) if side["stalled"]]
    failed = (
        _error_rate(gated) > MAX_ERROR_RATE or _error_rate(plain) > MAX_ERROR_RATE or bool(stalled)
    )
    notes = [f"{generator}, {db}"]
    if stalled:
        notes.append(f"STALLED: {', '.join(stalled)} answered fewer requests than connections")
    if failed:
        # Zero answers and zero errors is a stall: every request outlived the run.
        notes.append(
            f"FAILED: gated {gated['requests']} answered/{gated['errors']} errors, "
            f"ungated {plain['requests']}/{plain['errors']}"
        )
    if generator == "httpx" and max(gated["client_cpu"], plain["client_cpu"]) > 0.9:
        notes.append("httpx generator near one full core: may cap the ungated side")
    rps_ratio = gated["rps"] / plain["rps"] if plain["rps"] else 0.0
    p99_ratio = gated["p99_ms"] / plain["p99_ms"] if plain["p99_ms"] else 0.0
    extra = {
        "connections": connections,
        "generator": generator,
        "a_p50_ms": round(gated["p50_ms"], 3),
        "a_p99_ms": round(gated["p99_ms"], 3),
        "b_p50_ms": round(plain["p50_ms"], 3),
        "b_p99_ms": round(plain["p99_ms"], 3),
        "a_requests": gated["requests"],
        "b_requests": plain["requests"],
        "a_errors": gated["errors"],
        "b_errors": plain["errors"],
        "a_rounds_rps": gated["rounds_rps"],
        "b_rounds_rps": plain["rounds_rps"],
        "client_cpu": round(max(gated["client_cpu"], plain["client_cpu"]), 2),
        "stalled": stalled,
    }
    return [
        {
            "suite": SUITE,
            "name": f"read throughput, {connections} conn",
            "a": "gated",
            "a_value": round(gated["rps"], 1),
            "b": "ungated",
            "b_value": round(plain["rps"], 1),
            "unit": "req/s",
            "ratio": round(rps_ratio, 3),
            "target": f"≥ {THROUGHPUT_TARGET}" if targeted else None,
            "met": (rps_ratio >= THROUGHPUT_TARGET and not failed) if targeted else None,
            "notes": "; ".join(notes),
            **extra,
        },
        {
            "suite": SUITE,
            "name": f"read p99 latency, {connections} conn",
            "a": "gated",
            "a_value": round(gated["p99_ms"], 3),
            "b": "ungated",
            "b_value": round(plain["p99_ms"], 3),
            "unit": "ms",
            "ratio": round(p99_ratio, 3),
            "target": f"≤ {P99_TARGET}" if targeted else None,
            "met": (p99_ratio <= P99_TARGET and not failed) if targeted else None,
            "notes": (
                f"p50 gated {gated['p50_ms']:.2f} ms, ungated {plain['p50_ms']:.2f} ms; "
                + "; ".join(notes)
            ),
            **extra,
        },
    ]


def run(
    ctx: BenchContext,
    *,
    seconds: float | None = None,
    rounds: int | None = None,
    connections: tuple[int, ...] = CONNECTIONS,
    generator: str = "auto",
) -> list[dict[str, Any]]:
    seconds = seconds if seconds is not None else (3.0 if ctx.quick else 10.0)
    rounds = rounds if rounds is not None else (1 if ctx.quick else 2)
    warmup = min(2.0, seconds)
    generator = choose_generator(generator)
    url = database_url(ctx)
    db = url.split(":", 1)[0].split("+", 1)[0]
    build_plain_table(ctx.services, url)
    ids = member_ids(ctx)
    key = ctx.keys["crm"]
    workdir = Path(ctx.home)

    with (
        running_server(ctx.home, database_url=ctx.db_url) as (gated_base, _gated),
        running_baseline(url, log_path=workdir / "baseline.log") as (plain_base, _plain),
    ):
        check_same_fields(gated_base, plain_base, key=key, member=ids[0])
        sides = {
            "gated": (
                gated_base + "/v1/members/{id}?purpose=" + PURPOSE,
                {"Authorization": f"Bearer {key}"},
            ),
            "ungated": (plain_base + "/plain/members/{id}", {}),
        }

        def measure(side: str, conns: int, secs: float, seed: int) -> dict[str, Any]:
            target, headers = sides[side]
            return run_load(
                target,
                ids=ids,
                connections=conns,
                seconds=secs,
                headers=headers,
                generator=generator,
                seed=seed,
                workdir=workdir,
            )

        # Warm-up: imports, connection pools, the page cache of both tables.
        for side in sides:
            measure(side, TARGET_CONNECTIONS, warmup, seed=0)
        results: dict[tuple[str, int], list[dict[str, Any]]] = {}
        for round_no in range(rounds):
            order = ("gated", "ungated") if round_no % 2 == 0 else ("ungated", "gated")
            for conns in connections:
                for side in order:
                    seed = 1 + round_no * 100 + conns
                    results.setdefault((side, conns), []).append(
                        measure(side, conns, seconds, seed)
                    )

    rows: list[dict[str, Any]] = []
    for conns in connections:
        rows += rows_for(
            conns,
            _combine(results[("gated", conns)]),
            _combine(results[("ungated", conns)]),
            generator=generator,
            db=db,
        )
    return rows
