"""One prepared memberguard for every suite of a ``python -m bench`` run.

A fresh home (keys, signer, SQLite file) in a temporary directory; with
``--db URL`` a scratch database ``mg_bench_<hex>`` of its own on that server,
created here and dropped by ``close()``, so that a run never touches data it
did not make and concurrent runs never collide.
"""

from __future__ import annotations

import secrets
import shutil
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

from sqlalchemy import text
from sqlalchemy.engine import make_url

from cli.demo import ensure_clients, load_members
from cli.main import run_init
from core.db import build_engine
from core.settings import Settings
from gate.context import Services, build_services

QUICK_MEMBERS = 2_000
FULL_MEMBERS = 100_000


@dataclass
class BenchContext:
    quick: bool
    db_url: str | None
    home: Path
    members: int
    keys: dict[str, str]
    services: Services
    settings: Settings
    # The server URL the scratch database was made on (None for SQLite).
    server_url: str | None = None
    load_seconds: float = 0.0
    _dropped: bool = field(default=False, repr=False)

    @property
    def database(self) -> str:
        url = make_url(self.settings.resolved_database_url)
        return url.get_backend_name()

    def close(self) -> None:
        """Dispose of the engine, drop the scratch database, remove the home."""
        if self._dropped:
            return
        self._dropped = True
        self.services.dispose()
        if self.server_url is not None and self.db_url is not None:
            _drop_database(self.server_url, make_url(self.db_url).database or "")
        shutil.rmtree(self.home, ignore_errors=True)


def _create_database(server_url: str) -> str:
    name = f"mg_bench_{secrets.token_hex(4)}"
    admin = build_engine(server_url, isolation_level="AUTOCOMMIT")
    try:
        with admin.connect() as conn:
            conn.execute(text(f"CREATE DATABASE {name}"))
    finally:
        admin.dispose()
    return make_url(server_url).set(database=name).render_as_string(hide_password=False)


def _drop_database(server_url: str, name: str) -> None:
    if not name.startswith("mg_bench_"):  # never drop anything this module did not create
        return
    admin = build_engine(server_url, isolation_level="AUTOCOMMIT")
    try:
        force = " WITH (FORCE)" if make_url(server_url).get_backend_name() == "postgresql" else ""
        with admin.connect() as conn:
            conn.execute(text(f"DROP DATABASE IF EXISTS {name}{force}"))
    finally:
        admin.dispose()


def prepare(*, quick: bool, db_url: str | None, members: int | None = None) -> BenchContext:
    """Init a fresh memberguard, load synthetic members and register the demo clients."""
    count = members if members is not None else (QUICK_MEMBERS if quick else FULL_MEMBERS)
    home = Path(tempfile.mkdtemp(prefix="mg-bench-"))
    scratch_url = _create_database(db_url) if db_url else None
    try:
        settings = Settings(home=home, database_url=scratch_url)
        run_init(settings, echo=False)
        services = build_services(settings)
        started = time.perf_counter()
        done = 0

        def progress(n: int) -> None:
            nonlocal done
            done += n
            if done % 20_000 == 0:
                print(f"  loaded {done:,}/{count:,} members", file=sys.stderr, flush=True)

        load_members(services, count, seed=1, progress=progress)
        load_seconds = time.perf_counter() - started
        keys = ensure_clients(services)
    except BaseException:
        if scratch_url is not None and db_url is not None:
            _drop_database(db_url, make_url(scratch_url).database or "")
        shutil.rmtree(home, ignore_errors=True)
        raise
    return BenchContext(
        quick=quick,
        db_url=scratch_url,
        home=home,
        members=count,
        keys=keys,
        services=services,
        settings=settings,
        server_url=db_url,
        load_seconds=load_seconds,
    )
