"""Stream a gated export of N members and show that memory stays flat.

    python -m bench.export_memory --members 1000000 [--home DIR] [--purpose analytics]

Loads N synthetic members (``cli.demo``) into a fresh SQLite home unless the home
already has them, then consumes ``gate.export.export_members`` for the purpose
and prints the resident memory after 10%, 50% and 100% of the stream, the process's
peak, the members/s and the batches. Flat memory means the figures match; run
again with ``--home`` on a loaded home for a peak that is the export's alone.
"""

from __future__ import annotations

import argparse
import resource
import sys
import tempfile
import time
from pathlib import Path

from cli.demo import ensure_clients, load_members, member_count
from cli.main import run_init
from core.settings import Settings
from gate.context import build_services
from gate.export import export_members
from principals.clients import authenticate


def peak_rss_mb() -> float:
    """The process's lifetime peak resident set size (VmHWM)."""
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    return float("nan")


def rss_mb() -> float:
    """Current resident set size (not the process's lifetime peak, which loading sets)."""
    with open("/proc/self/statm") as statm:
        return int(statm.read().split()[1]) * resource.getpagesize() / 2**20


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--members", type=int, default=100_000)
    parser.add_argument("--home", type=Path, default=None)
    parser.add_argument("--purpose", default="analytics")
    args = parser.parse_args(argv)

    home = args.home or Path(tempfile.mkdtemp(prefix="mg-export-"))
    settings = Settings(home=home)
    run_init(settings, echo=False)
    services = build_services(settings)
    needs_loading = member_count(services) < args.members
    if needs_loading:
        started = time.perf_counter()
        done = 0

        def progress(n: int) -> None:
            nonlocal done
            done += n
            if done % 50_000 == 0 or done == args.members:
                print(f"  loaded {done:,}/{args.members:,}", file=sys.stderr)

        load_members(services, args.members, seed=1, progress=progress)
        print(
            f"load: {args.members:,} members in {time.perf_counter() - started:.0f} s",
            file=sys.stderr,
        )
    keys = ensure_clients(services)
    with services.reading() as session:
        actor = authenticate(session, keys["analytics"])

    total = member_count(services)
    checkpoints = {int(total * 0.1), int(total * 0.5)}
    rss_before = rss_mb()
    started = time.perf_counter()
    export = export_members(services, actor=actor, purpose=args.purpose, request_id=None)
    released = 0
    marks: list[str] = []
    examined_mark = 0
    highest = rss_mb()
    for _line in export.lines:
        released += 1
        examined = export.stats["examined"]
        if examined != examined_mark:  # once per batch
            highest = max(highest, rss_mb())
            if any(examined_mark < c <= examined for c in checkpoints):
                marks.append(
                    f"{examined:,} examined: RSS {rss_mb():.0f} MB, highest so far {highest:.0f} MB"
                )
        examined_mark = examined
    elapsed = time.perf_counter() - started
    marks.append(
        f"{export.stats['examined']:,} examined: RSS {rss_mb():.0f} MB, highest {highest:.0f} MB"
    )
    print(f"members in vault: {total:,}; purpose {args.purpose}")
    print(f"RSS before export: {rss_before:.0f} MB")
    for mark in marks:
        print("  " + mark)
    print(
        f"peak RSS of the process: {peak_rss_mb():.0f} MB"
        + (" (loading included: rerun with --home for the export alone)" if needs_loading else "")
    )
    print(
        f"released {released:,} members in {elapsed:.1f} s ({released / elapsed:,.0f} released/s, "
        f"{export.stats['examined'] / elapsed:,.0f} examined/s), {export.stats['batches']} batches"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
