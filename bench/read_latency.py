"""Single-read latency of the gated read through the real server.

    python -m bench.read_latency [--members 10000] [--requests 3000] [--purpose customer_service]

Sequential requests over one keep-alive connection from a separate process
(this one) to ``memberguard serve`` (uvicorn, one worker, SQLite with
synchronous=FULL): each request is authenticated, decided, durably audited,
decrypted and masked. Prints median, p90, p99 and max in milliseconds.
"""

from __future__ import annotations

import argparse
import random
import statistics
import sys
import tempfile
import time
from pathlib import Path

import httpx
from sqlalchemy import select

from bench.server import running_server
from cli.demo import ensure_clients, load_members, member_count
from cli.main import run_init
from core.settings import Settings
from gate.context import build_services
from vault.models import VaultMember


def percentile(samples: list[float], q: float) -> float:
    ordered = sorted(samples)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--members", type=int, default=10_000)
    parser.add_argument("--requests", type=int, default=3000)
    parser.add_argument("--purpose", default="customer_service")
    parser.add_argument("--home", type=Path, default=None)
    args = parser.parse_args(argv)

    home = args.home or Path(tempfile.mkdtemp(prefix="mg-latency-"))
    settings = Settings(home=home)
    run_init(settings, echo=False)
    services = build_services(settings)
    if member_count(services) == 0:
        load_members(services, args.members, seed=7, progress=lambda _n: None)
    key = ensure_clients(services)["crm"]
    with services.reading() as session:
        ids = list(session.scalars(select(VaultMember.id)))
    rng = random.Random(1)

    with running_server(home) as (base, _process), httpx.Client(base_url=base) as client:
        headers = {"Authorization": f"Bearer {key}"}
        for _ in range(100):  # warm-up: imports, connection pool, page cache
            client.get(
                f"/v1/members/{rng.choice(ids)}", params={"purpose": args.purpose}, headers=headers
            )
        samples: list[float] = []
        started = time.perf_counter()
        for _ in range(args.requests):
            t0 = time.perf_counter()
            response = client.get(
                f"/v1/members/{rng.choice(ids)}", params={"purpose": args.purpose}, headers=headers
            )
            samples.append((time.perf_counter() - t0) * 1000)
            if response.status_code != 200 or "Audit-Seq" not in response.headers:
                print(f"unexpected response {response.status_code}", file=sys.stderr)
                return 1
        elapsed = time.perf_counter() - started

    print(f"{args.requests} sequential gated reads ({args.purpose}) over {len(ids):,} members")
    print(
        f"  median {statistics.median(samples):.2f} ms   p90 {percentile(samples, 0.9):.2f} ms   "
        f"p99 {percentile(samples, 0.99):.2f} ms   max {max(samples):.2f} ms   "
        f"({args.requests / elapsed:,.0f} req/s on one connection)"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
