"""Run the benchmark suites: ratios of A (memberguard) to B (the plain baseline), one run.

    python -m bench [--quick] [--check] [--db URL] [--only SUITE ...] [--members N] [--out PATH]

Prepares one fresh memberguard (``bench.context``), runs each suite, alternating
A and B inside it, prints a Markdown table and writes the rows with the
machine they ran on to ``bench/results/latest.json``.

``--check`` is the CI smoke test: the exit status is non-zero only when a
suite fails to run or a row reports consent ``violations`` other than 0,
never because of a timing. (Without ``--check`` a suite that fails to run
still fails the run; violations are only reported.)
"""

from __future__ import annotations

import argparse
import importlib
import json
import os
import platform
import signal
import sys
import time
import traceback
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

# Run order: verify last, over the log every other suite appended to.
SUITES = ("export", "append", "http", "churn", "verify")
RESULTS = Path(__file__).parent / "results" / "latest.json"


def _number(value: Any) -> str:
    if isinstance(value, bool) or not isinstance(value, int | float):
        return str(value)
    if value == 0 or abs(value) >= 100:
        return f"{value:,.0f}"
    if abs(value) >= 10:
        return f"{value:.1f}"
    return f"{value:.2f}"


def _cell(label: Any, value: Any, unit: Any) -> str:
    if value is None:
        return str(label or "")
    return f"{label}: {_number(value)} {unit or ''}".strip()


def markdown(rows: list[dict[str, Any]]) -> str:
    lines = [
        "| suite | measurement | A | B | ratio A/B | target | met |",
        "|---|---|---|---|---|---|---|",
    ]
    for row in rows:
        ratio = row.get("ratio")
        met = row.get("met")
        cells = [
            str(row.get("suite", "")),
            str(row.get("name", "")),
            _cell(row.get("a"), row.get("a_value"), row.get("unit")),
            _cell(row.get("b"), row.get("b_value"), row.get("unit")),
            f"{ratio:.2f}" if isinstance(ratio, int | float) else str(ratio or ""),
            str(row.get("target") or ""),
            "yes" if met is True else "**no**" if met is False else str(met or ""),
        ]
        lines.append("| " + " | ".join(c.replace("|", "\\|") for c in cells) + " |")
    return "\n".join(lines)


def _git_commit() -> str | None:
    """The checked-out commit, read from .git directly (no git process)."""
    git = Path(__file__).resolve().parent.parent / ".git"
    try:
        head = (git / "HEAD").read_text().strip()
        if not head.startswith("ref: "):
            return head
        ref = head.removeprefix("ref: ")
        if (git / ref).is_file():
            return (git / ref).read_text().strip()
        for line in (git / "packed-refs").read_text().splitlines():
            if line.endswith(" " + ref):
                return line.split()[0]
    except OSError:
        return None
    return None


def _memory_total_mb() -> float | None:
    try:
        with open("/proc/meminfo") as meminfo:
            for line in meminfo:
                if line.startswith("MemTotal:"):
                    return int(line.split()[1]) / 1024
    except OSError:
        return None
    return None


def machine_info(ctx: Any | None) -> dict[str, Any]:
    info: dict[str, Any] = {
        "cpu_count": os.cpu_count(),
        "platform": platform.platform(),
        "processor": platform.processor() or platform.machine(),
        "memory_mb": _memory_total_mb(),
        "python": platform.python_version(),
        "git_commit": _git_commit(),
    }
    if ctx is not None:
        engine = ctx.services.sessions.kw["bind"]
        with engine.connect() as conn:
            version = conn.dialect.server_version_info
        info["database"] = ctx.database
        info["database_version"] = ".".join(str(p) for p in version) if version else None
        info["members"] = ctx.members
        info["load_seconds"] = ctx.load_seconds
        if ctx.database == "sqlite":
            info["sqlite_synchronous"] = ctx.settings.sqlite_synchronous
    return info


def _load_suite(name: str) -> Any:
    module = importlib.import_module(f"bench.{name}")
    if not callable(getattr(module, "run", None)):
        raise ImportError(f"bench.{name} has no run(ctx)")
    return module


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m bench",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--quick", action="store_true", help="2,000 members, short runs")
    parser.add_argument(
        "--check",
        action="store_true",
        help="CI smoke: fail only if a suite fails to run or consent violations are not 0",
    )
    parser.add_argument("--db", metavar="URL", help="PostgreSQL or MySQL/MariaDB server URL")
    parser.add_argument("--only", nargs="+", choices=SUITES, metavar="SUITE", help=str(SUITES))
    parser.add_argument(
        "--members", type=int, default=None, help="members to load (default 2,000 / 100,000)"
    )
    parser.add_argument("--out", type=Path, default=RESULTS, help=f"JSON file (default {RESULTS})")
    args = parser.parse_args(argv)

    from bench.context import prepare  # imports the whole platform: not needed for --help

    # A terminated run still drops its scratch database and removes its home.
    signal.signal(signal.SIGTERM, lambda _signum, _frame: sys.exit(143))

    started_at = datetime.now(UTC)
    started = time.perf_counter()
    wanted = [s for s in SUITES if not args.only or s in args.only]
    rows: list[dict[str, Any]] = []
    failures: dict[str, str] = {}
    print(
        f"preparing: {'quick' if args.quick else 'full'} run, "
        f"{'--db server' if args.db else 'SQLite'}",
        file=sys.stderr,
        flush=True,
    )
    ctx = prepare(quick=args.quick, db_url=args.db, members=args.members)
    try:
        print(
            f"prepared {ctx.members:,} members in {time.perf_counter() - started:.0f} s",
            file=sys.stderr,
            flush=True,
        )
        for name in wanted:
            suite_started = time.perf_counter()
            try:
                module = _load_suite(name)
                print(f"running {name} …", file=sys.stderr, flush=True)
                suite_rows = list(module.run(ctx))
            except Exception as exc:
                traceback.print_exc()
                failures[name] = f"{type(exc).__name__}: {exc}"
                print(f"FAILED {name}: {failures[name]}", file=sys.stderr, flush=True)
                continue
            seconds = time.perf_counter() - suite_started
            for row in suite_rows:
                row.setdefault("suite", name)
                row.setdefault("suite_seconds", seconds)
            rows.extend(suite_rows)
            print(f"  {name}: {seconds:.0f} s", file=sys.stderr, flush=True)
        machine = machine_info(ctx)
    finally:
        ctx.close()

    total = time.perf_counter() - started
    violations = [row for row in rows if "violations" in row and row["violations"] not in (0, None)]
    result = {
        "quick": args.quick,
        "started_at": started_at.isoformat(),
        "finished_at": datetime.now(UTC).isoformat(),
        "total_seconds": total,
        "machine": machine,
        "suites": wanted,
        "failures": failures,
        "rows": rows,
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2, ensure_ascii=False, default=str) + "\n")

    print(markdown(rows))
    print()
    print(
        f"{machine['cpu_count']} CPUs, {machine['platform']}, Python {machine['python']}, "
        f"{machine.get('database')} {machine.get('database_version') or ''}, "
        f"{machine.get('members', 0):,} members"
    )
    for name, why in failures.items():
        print(f"FAILED {name}: {why}")
    for row in violations:
        print(f"VIOLATIONS in {row['suite']} / {row.get('name')}: {row['violations']}")
    print(f"wrote {args.out}; total {total:.0f} s")
    if failures:
        return 1
    if args.check and violations:
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
