"""The ungated baseline: what a team would build without memberguard.

A plain table ``bench_plain_member`` with every member field in clear, in the
same database as memberguard, and a FastAPI app with one sync route,
``GET /plain/members/{id}``, answering ``{"id", "fields"}`` with the fields
the ``customer_service`` purpose sees. No authentication, no decision, no
audit, no encryption: one primary-key ``SELECT`` and JSON.

It is served by the same stack as ``memberguard serve`` (FastAPI sync route
in uvicorn's thread pool, one worker, no access log, the same engine options),
so that a comparison measures the gate and nothing else::

    MG_BENCH_BASELINE_URL=sqlite:///var/memberguard.db \\
        python -m uvicorn bench.baseline:app_factory --factory --port 8001

The table is bench-only (``metadata.create_all`` here, not a migration) and is
filled by decrypting each member once through the vault.
"""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from fastapi import FastAPI, HTTPException
from pydantic import BaseModel
from sqlalchemy import (
    BigInteger,
    Column,
    Engine,
    MetaData,
    String,
    Table,
    Text,
    func,
    insert,
    select,
)

from bench.server import serving
from core.db import READ_ONLY_OPTION, build_engine
from core.ids import ID_LENGTH
from gate.context import Services
from policies.model import Policy
from vault.members import load_sealed
from vault.models import VaultMember

TABLE_NAME = "bench_plain_member"
PURPOSE = "customer_service"
URL_ENV = "MG_BENCH_BASELINE_URL"
REPO_ROOT = Path(__file__).resolve().parent.parent


def plain_table(policy: Policy, metadata: MetaData | None = None) -> Table:
    """One row per member, one column per policy field, values in clear."""
    columns = [
        Column(name, BigInteger if spec.type == "integer" else Text, nullable=True)
        for name, spec in policy.fields.items()
    ]
    return Table(
        TABLE_NAME,
        metadata or MetaData(),
        Column("id", String(ID_LENGTH), primary_key=True),
        *columns,
    )


def build_plain_table(services: Services, db_url: str, *, batch: int = 1000) -> int:
    """Create and fill ``bench_plain_member`` from the vault; returns the row count.

    Idempotent: a table that already holds as many rows as the vault has
    members is left alone (the copy of 100,000 members costs tens of seconds).
    """
    engine = build_engine(db_url)
    try:
        table = plain_table(services.policy)
        table.metadata.create_all(engine)
        with services.reading() as session:
            members = session.scalar(select(func.count()).select_from(VaultMember)) or 0
        with engine.connect() as conn:
            have = conn.scalar(select(func.count()).select_from(table)) or 0
        if have == members:
            return have
        with engine.begin() as conn:
            conn.execute(table.delete())
        fields = list(services.policy.fields)
        after = ""
        copied = 0
        while True:
            with services.reading() as session:
                ids = list(
                    session.scalars(
                        select(VaultMember.id)
                        .where(VaultMember.id > after)
                        .order_by(VaultMember.id)
                        .limit(batch)
                    )
                )
                if not ids:
                    break
                sealed = load_sealed(session, ids, fields)
            empty = dict.fromkeys(fields)  # a field the member lacks is NULL
            rows = [
                {**empty, "id": member_id, **sealed[member_id].open(services.keyring)}
                for member_id in ids
                if member_id in sealed
            ]
            with engine.begin() as conn:
                conn.execute(insert(table), rows)
            copied += len(rows)
            after = ids[-1]
        return copied
    finally:
        engine.dispose()


class PlainMemberOut(BaseModel):
    id: str
    fields: dict[str, Any]


def create_baseline_app(db_url: str, *, policy: Policy | None = None) -> FastAPI:
    """The ungated read over ``bench_plain_member``."""
    from policies import load_policy

    policy = policy or load_policy()
    table = plain_table(policy)
    released = [table.c[name] for name in policy.purposes[PURPOSE].fields]
    # The product's engine options (driver, pool, pre-ping, isolation); reads
    # begin like memberguard's read-only sessions, without SQLite's write lock.
    engine: Engine = build_engine(db_url).execution_options(**{READ_ONLY_OPTION: True})
    statement = select(*released)
    app = FastAPI(title="plain baseline", docs_url=None, redoc_url=None, openapi_url=None)

    @app.get("/healthz")
    def healthz() -> dict[str, str]:
        return {"status": "ok"}

    @app.get("/plain/members/{member_id}", response_model=PlainMemberOut)
    def read(member_id: str) -> dict[str, Any]:
        with engine.connect() as conn:
            row = conn.execute(statement.where(table.c.id == member_id)).first()
        if row is None:
            raise HTTPException(status_code=404, detail="no such member")
        values = {name: value for name, value in row._mapping.items() if value is not None}
        return {"id": member_id, "fields": values}

    return app


def app_factory() -> FastAPI:
    """For ``uvicorn --factory``: the database URL comes from ``MG_BENCH_BASELINE_URL``."""
    url = os.environ.get(URL_ENV)
    if not url:
        raise RuntimeError(f"set {URL_ENV} to the database URL")
    return create_baseline_app(url)


@contextmanager
def running_baseline(
    db_url: str, *, log_path: Path
) -> Iterator[tuple[str, subprocess.Popen[bytes]]]:
    """Serve the baseline in a uvicorn subprocess; yield (base URL, process) once ready."""
    env = {**os.environ, URL_ENV: db_url}

    def command(port: int) -> list[str]:
        return [
            sys.executable,
            "-m",
            "uvicorn",
            "bench.baseline:app_factory",
            "--factory",
            "--host",
            "127.0.0.1",
            "--port",
            str(port),
            "--workers",
            "1",
            "--no-access-log",
            "--no-proxy-headers",
            "--log-level",
            "warning",
        ]

    with serving(
        command, env=env, log_path=log_path, ready_path="/healthz", cwd=REPO_ROOT
    ) as running:
        yield running
