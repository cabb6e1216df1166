"""A memberguard server in a subprocess, for benchmarks and crash checks."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@contextmanager
def serving(
    command: Callable[[int], list[str]],
    *,
    env: dict[str, str],
    log_path: Path,
    ready_path: str,
    cwd: Path | None = None,
) -> Iterator[tuple[str, subprocess.Popen[bytes]]]:
    """Run ``command(port)``; yield (base URL, process) once ``ready_path`` answers 200."""
    port = free_port()
    log = open(log_path, "ab")  # noqa: SIM115 (closed below)
    process = subprocess.Popen(  # noqa: S603 (our own interpreter and arguments)
        command(port), env=env, cwd=cwd, stdout=log, stderr=log
    )
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 30
        while True:
            if process.poll() is not None:
                raise RuntimeError(f"server exited with {process.returncode}; see {log_path}")
            try:
                if httpx.get(f"{base}{ready_path}", timeout=1).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            if time.monotonic() > deadline:
                raise RuntimeError(f"server did not become ready in 30 s; see {log_path}")
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


@contextmanager
def running_server(
    home: Path,
    *,
    database_url: str | None = None,
    workers: int = 1,
    extra_env: dict[str, str] | None = None,
) -> Iterator[tuple[str, subprocess.Popen[bytes]]]:
    """Start ``memberguard serve`` on a free port; yield (base URL, process) once it is ready."""
    # Hermetic: nothing of the caller's MEMBERGUARD_* settings leaks into the server.
    inherited = {k: v for k, v in os.environ.items() if not k.startswith("MEMBERGUARD_")}
    # No scheduled jobs in the server: a run measures requests, not a checkpoint a job cut.
    env = {
        **inherited,
        "MEMBERGUARD_HOME": str(home),
        "MEMBERGUARD_WORKER_IN_SERVER": "false",
        **(extra_env or {}),
    }
    if database_url:
        env["MEMBERGUARD_DATABASE_URL"] = database_url

    def command(port: int) -> list[str]:
        return [
            sys.executable,
            "-c",
            "from cli.main import main; main()",
            "serve",
            "--port",
            str(port),
            "--workers",
            str(workers),
        ]

    with serving(command, env=env, log_path=home / "server.log", ready_path="/readyz") as running:
        yield running
