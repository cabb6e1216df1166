"""A memberguard server in a subprocess, for benchmarks and crash checks."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@contextmanager
def running_server(
    home: Path,
    *,
    database_url: str | None = None,
    workers: int = 1,
    extra_env: dict[str, str] | None = None,
) -> Iterator[tuple[str, subprocess.Popen[bytes]]]:
    """Start ``memberguard serve`` on a free port; yield (base URL, process) once it is ready."""
    port = free_port()
    # Hermetic: nothing of the caller's MEMBERGUARD_* settings leaks into the server.
    inherited = {k: v for k, v in os.environ.items() if not k.startswith("MEMBERGUARD_")}
    env = {**inherited, "MEMBERGUARD_HOME": str(home), **(extra_env or {})}
    if database_url:
        env["MEMBERGUARD_DATABASE_URL"] = database_url
    log = open(home / "server.log", "ab")  # noqa: SIM115 (closed below)
    process = subprocess.Popen(  # noqa: S603 (our own interpreter and arguments)
        [
            sys.executable,
            "-c",
            "from cli.main import main; main()",
            "serve",
            "--port",
            str(port),
            "--workers",
            str(workers),
        ],
        env=env,
        stdout=log,
        stderr=log,
    )
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 30
        while True:
            if process.poll() is not None:
                raise RuntimeError(
                    f"server exited with {process.returncode}; see {home / 'server.log'}"
                )
            try:
                if httpx.get(f"{base}/readyz", timeout=1).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            if time.monotonic() > deadline:
                raise RuntimeError("server did not become ready in 30 s")
            time.sleep(0.1)
        yield base, process
    finally:
        if process.poll() is None:
            process.terminate()
            try:
                process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
        log.close()
