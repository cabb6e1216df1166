"""Stream a gated export of N members and show how its memory behaves.

    python -m bench.export_memory --members 1000000 [--home DIR] [--purpose personalization]

Loads N synthetic members (``cli.demo``) into a fresh SQLite home unless the home
already has them, then consumes ``gate.export.export_members`` for the purpose
(as the first demo client that has it) and prints the resident memory after
10%, 50% and 100% of the stream, the process's peak, the members/s and the
batches; run again with ``--home`` on a loaded home for a peak that is the
export's alone.

An identified purpose (the default, ``personalization``) is exported batch by
batch: flat memory means the figures match. A pseudonymous purpose
(``--purpose analytics``) is anonymised: the export plans every consenting
member before its first line (k-anonymity needs the whole data set), so its
memory grows with the member count; it prints what the plan added, per member
examined, once ``export_members`` has returned.
"""

from __future__ import annotations

import argparse
import resource
import sys
import tempfile
import time
from pathlib import Path

from bench.export import BATCHED_PURPOSE, TimedServices, client_for
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
    parser.add_argument("--purpose", default=BATCHED_PURPOSE)
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
        actor = authenticate(session, keys[client_for(args.purpose)])
    anonymised = services.policy.purposes[args.purpose].member_id == "pseudonym"

    total = member_count(services)
    checkpoints = {int(total * 0.1), int(total * 0.5)}
    rss_before = rss_mb()
    started = time.perf_counter()
    timed = TimedServices.wrapping(services)  # times each unit of work (the lock's holds)
    export = export_members(timed, actor=actor, purpose=args.purpose, request_id=None)
    # Anonymised: the plan and the decision are done, and every released row is held.
    rss_planned = rss_mb()
    released = 0
    marks: list[str] = []
    examined_mark = 0
    highest = rss_mb()
    rows = export.stats["released"] if anonymised else 0
    sent_marks = {int(rows * 0.1), int(rows * 0.5)} - {0}
    for _line in export.lines:
        released += 1
        if anonymised:  # every row is decided already: mark the stream instead
            if released in sent_marks:
                highest = max(highest, rss_mb())
                marks.append(f"{released:,} of {rows:,} rows sent: RSS {rss_mb():.0f} MB")
            continue
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
    shape = "anonymised (planned in memory)" if anonymised else "batched"
    print(f"members in vault: {total:,}; purpose {args.purpose}, {shape}")
    print(f"RSS before export: {rss_before:.0f} MB")
    if anonymised:
        examined_all = max(export.stats["examined"], 1)
        added = rss_planned - rss_before
        suppressed = export.stats["suppressed"]["small_groups"]
        print(
            f"  export_members returned (every member planned and decided, "
            f"{export.stats['released']:,} rows held, {suppressed:,} suppressed): "
            f"RSS {rss_planned:.0f} MB, +{added:.0f} MB "
            f"({added * 2**20 / examined_all:,.0f} bytes per member examined); "
            f"this grows with the member count"
            + (" (after loading, which freed memory the plan reused)" if needs_loading else "")
        )
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
    held = [seconds for _start, seconds in timed.uow_spans]
    print(
        f"{len(held)} units of work under the log-head lock, the longest "
        f"{max(held, default=0) * 1000:,.0f} ms, {sum(held) * 1000:,.0f} ms in all"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
