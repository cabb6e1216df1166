"""HTTP load from a separate process: ``wrk`` when it is installed, else async httpx.

    python -m bench.loadgen --url 'http://127.0.0.1:8000/v1/members/{id}?purpose=P' \\
        --ids-file ids.txt --connections 16 --seconds 10 \\
        --header 'Authorization: Bearer mg_...' [--record out.jsonl] [--generator httpx]

Each request picks a random id from ``--ids-file`` (one per line) and puts it
where the URL says ``{id}``. Prints one JSON object on stdout::

    {"generator", "connections", "seconds", "requests", "errors", "rps",
     "p50_ms", "p99_ms", "client_cpu"}

``errors`` counts transport failures and answers with status >= 400, as wrk
does. ``client_cpu`` is the generator's CPU time over the wall time (1.0 = one
core busy): near 1.0 for the httpx generator means the generator, not the
server, may be the bottleneck, and the figures say so.

The load runs in its own process so that the server under test and the code
that measures it do not share an interpreter (or a GIL). ``wrk`` (Debian
package ``wrk``) is preferred: it is C and costs the server far less CPU on a
small machine. ``--record`` (httpx only) writes one line per response with
the id, status, ``Audit-Seq`` and monotonic send/receive times, for checks
that need every answer (``bench.churn``).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import random
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import httpx

GENERATORS = ("auto", "wrk", "httpx")
REPO_ROOT = Path(__file__).resolve().parent.parent
RESULT_MARKER = "LOADGEN_RESULT "


def percentile(samples: Sequence[float], q: float) -> float:
    if not samples:
        return 0.0
    ordered = sorted(samples)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


def wrk_path() -> str | None:
    return shutil.which("wrk")


def choose_generator(requested: str = "auto") -> str:
    if requested not in GENERATORS:
        raise ValueError(f"generator must be one of {', '.join(GENERATORS)}")
    if requested == "auto":
        return "wrk" if wrk_path() else "httpx"
    if requested == "wrk" and not wrk_path():
        raise RuntimeError("wrk is not on PATH (Debian: apt-get install wrk)")
    return requested


def _split_template(url: str) -> tuple[str, str, str]:
    """``http://h:p/a/{id}?q`` → (``http://h:p``, ``/a/``, ``?q``)."""
    if url.count("{id}") != 1:
        raise ValueError("the URL must contain {id} exactly once")
    parts = urlsplit(url)
    base = f"{parts.scheme}://{parts.netloc}"
    path = url[len(base) :]
    before, _, after = path.partition("{id}")
    return base, before, after


# -- wrk ----------------------------------------------------------------------

# Long-bracket strings ([==[...]==]) keep the embedded values free of escaping.
# Each wrk thread runs its own Lua state, so every thread reads the ids file.
_WRK_SCRIPT = """
local ids = {}
for line in io.lines([==[%(ids_file)s]==]) do
  if #line > 0 then ids[#ids + 1] = line end
end
local prefix = [==[%(prefix)s]==]
local suffix = [==[%(suffix)s]==]
%(headers)s
local counter = 0
function setup(thread)
  counter = counter + 1
  thread:set("tid", counter)
end
function init(args)
  math.randomseed(%(seed)d + (tid or 0) * 7919)
end
function request()
  return wrk.format("GET", prefix .. ids[math.random(#ids)] .. suffix)
end
function done(summary, latency, requests)
  local e = summary.errors
  local errors = e.connect + e.read + e.write + e.status + e.timeout
  io.write(string.format(
    '%(marker)s{"requests": %%d, "errors": %%d, "duration_us": %%d, '
      .. '"p50_us": %%d, "p99_us": %%d}\\n',
    summary.requests, errors, summary.duration,
    latency:percentile(50), latency:percentile(99)))
end
"""


def _wrk_script(
    ids_file: Path, prefix: str, suffix: str, headers: dict[str, str], seed: int
) -> str:
    lines = [f"wrk.headers[ [==[{k}]==] ] = [==[{v}]==]" for k, v in headers.items()]
    return _WRK_SCRIPT % {
        "ids_file": ids_file,
        "prefix": prefix,
        "suffix": suffix,
        "headers": "\n".join(lines),
        "seed": seed,
        "marker": RESULT_MARKER,
    }


def run_wrk(
    url: str,
    *,
    ids_file: Path,
    connections: int,
    seconds: float,
    headers: dict[str, str],
    seed: int,
) -> dict[str, Any]:
    base, prefix, suffix = _split_template(url)
    wrk = wrk_path()
    if wrk is None:
        raise RuntimeError("wrk is not on PATH")
    duration = max(1, round(seconds))  # wrk takes whole seconds
    with tempfile.NamedTemporaryFile("w", suffix=".lua", delete=False) as script:
        script.write(_wrk_script(ids_file, prefix, suffix, headers, seed))
    try:
        usage_before = resource.getrusage(resource.RUSAGE_CHILDREN)
        done = subprocess.run(  # noqa: S603 (wrk from PATH, arguments built here)
            [
                wrk,
                "--threads",
                str(min(2, connections)),
                "--connections",
                str(connections),
                "--duration",
                f"{duration}s",
                "--timeout",
                "30s",
                "--script",
                script.name,
                base + prefix,
            ],
            capture_output=True,
            text=True,
            timeout=duration + 60,
            check=False,
        )
        usage_after = resource.getrusage(resource.RUSAGE_CHILDREN)
    finally:
        Path(script.name).unlink(missing_ok=True)
    line = next(
        (ln for ln in done.stdout.splitlines() if ln.startswith(RESULT_MARKER)),
        None,
    )
    if done.returncode != 0 or line is None:
        raise RuntimeError(f"wrk failed ({done.returncode}): {done.stderr[-1000:]}")
    raw = json.loads(line[len(RESULT_MARKER) :])
    wall = raw["duration_us"] / 1e6
    cpu = (usage_after.ru_utime - usage_before.ru_utime) + (
        usage_after.ru_stime - usage_before.ru_stime
    )
    return {
        "generator": "wrk",
        "connections": connections,
        "seconds": wall,
        "requests": raw["requests"],
        "errors": raw["errors"],
        "rps": raw["requests"] / wall if wall else 0.0,
        "p50_ms": raw["p50_us"] / 1000,
        "p99_ms": raw["p99_us"] / 1000,
        "client_cpu": cpu / wall if wall else 0.0,
    }


# -- httpx ----------------------------------------------------------------------


async def _httpx_load(
    url: str,
    *,
    ids: Sequence[str],
    connections: int,
    seconds: float,
    headers: dict[str, str],
    seed: int,
    record: Path | None,
) -> dict[str, Any]:
    latencies: list[float] = []
    errors = 0
    rows: list[str] = []
    limits = httpx.Limits(max_connections=connections, max_keepalive_connections=connections)

    # Requests that outlive the run by far are errors, not something to wait 30 s for.
    timeout = max(5.0, 2 * seconds)
    async with httpx.AsyncClient(headers=headers, limits=limits, timeout=timeout) as client:
        deadline = 0.0

        async def worker(n: int) -> None:
            nonlocal errors
            rng = random.Random(seed * 1000 + n)
            while time.monotonic() < deadline:
                member = rng.choice(ids)
                sent = time.monotonic()
                try:
                    response = await client.get(url.replace("{id}", member))
                except httpx.HTTPError:
                    errors += 1
                    continue
                received = time.monotonic()
                latencies.append(received - sent)
                if response.status_code >= 400:
                    errors += 1
                if record is not None:
                    rows.append(
                        json.dumps(
                            [
                                member,
                                response.status_code,
                                response.headers.get("Audit-Seq"),
                                sent,
                                received,
                            ]
                        )
                    )

        cpu_before = time.process_time()
        started = time.monotonic()
        deadline = started + seconds
        await asyncio.gather(*(worker(n) for n in range(connections)))
        wall = time.monotonic() - started
        cpu = time.process_time() - cpu_before
    if record is not None:
        record.write_text("".join(row + "\n" for row in rows))
    return {
        "generator": "httpx",
        "connections": connections,
        "seconds": wall,
        "requests": len(latencies),
        "errors": errors,
        "rps": len(latencies) / wall if wall else 0.0,
        "p50_ms": percentile(latencies, 0.50) * 1000,
        "p99_ms": percentile(latencies, 0.99) * 1000,
        "client_cpu": cpu / wall if wall else 0.0,
    }


# -- the parent's side ------------------------------------------------------------


def run_load(
    url: str,
    *,
    ids: Sequence[str],
    connections: int,
    seconds: float,
    headers: dict[str, str] | None = None,
    generator: str = "auto",
    record: Path | None = None,
    seed: int = 1,
    workdir: Path | None = None,
) -> dict[str, Any]:
    """Run one load in a child process (``python -m bench.loadgen``) and return its summary."""
    chosen = "httpx" if record is not None else choose_generator(generator)
    with tempfile.TemporaryDirectory(dir=workdir, prefix="loadgen-") as tmp:
        ids_file = Path(tmp) / "ids.txt"
        ids_file.write_text("".join(f"{i}\n" for i in ids))
        argv = [
            sys.executable,
            "-m",
            "bench.loadgen",
            "--url",
            url,
            "--ids-file",
            str(ids_file),
            "--connections",
            str(connections),
            "--seconds",
            str(seconds),
            "--generator",
            chosen,
            "--seed",
            str(seed),
        ]
        for name, value in (headers or {}).items():
            argv += ["--header", f"{name}: {value}"]
        if record is not None:
            argv += ["--record", str(record)]
        done = subprocess.run(  # noqa: S603 (our own interpreter and module)
            argv,
            cwd=REPO_ROOT,
            capture_output=True,
            text=True,
            timeout=seconds + 120,
            check=False,
        )
    if done.returncode != 0:
        raise RuntimeError(f"load generator failed ({done.returncode}): {done.stderr[-2000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--url", required=True, help="URL with {id} where the member id goes")
    parser.add_argument("--ids-file", type=Path, required=True)
    parser.add_argument("--connections", type=int, default=16)
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--header", action="append", default=[], help="'Name: value'")
    parser.add_argument("--generator", choices=GENERATORS, default="auto")
    parser.add_argument("--record", type=Path, default=None, help="JSON lines per response")
    parser.add_argument("--seed", type=int, default=1)
    args = parser.parse_args(argv)

    headers: dict[str, str] = {}
    for item in args.header:
        name, sep, value = item.partition(":")
        if not sep:
            parser.error(f"--header {item!r}: expected 'Name: value'")
        headers[name.strip()] = value.strip()
    ids = [line.strip() for line in args.ids_file.read_text().splitlines() if line.strip()]
    if not ids:
        parser.error("the ids file is empty")
    if args.connections < 1 or args.seconds <= 0:
        parser.error("--connections and --seconds must be positive")

    generator = "httpx" if args.record is not None else choose_generator(args.generator)
    if generator == "wrk":
        result = run_wrk(
            args.url,
            ids_file=args.ids_file,
            connections=args.connections,
            seconds=args.seconds,
            headers=headers,
            seed=args.seed,
        )
    else:
        result = asyncio.run(
            _httpx_load(
                args.url,
                ids=ids,
                connections=args.connections,
                seconds=args.seconds,
                headers=headers,
                seed=args.seed,
                record=args.record,
            )
        )
    print(json.dumps(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
