"""Readiness: can this process reach its database and use its keys?

The probe is public and polled, so the check is read-only and short: a
read-only session (never SQLite's write lock, never the log-head lock; read
sessions have a connection pool of their own, so writers queued for the lock
cannot hold up the probe's connection) and an in-memory key round trip.
"""

from __future__ import annotations

from sqlalchemy.exc import SQLAlchemyError

from audit.log import read_head
from gate.context import Services
from vault.crypto import new_data_key, unwrap_data_key, wrap_data_key
from vault.keys import KeyringError

OK = "ok"


def check_readiness(services: Services) -> dict[str, str]:
    """Each dependency's state: ``"ok"`` or why it is not (never a value, only a type name)."""
    checks: dict[str, str] = {}
    try:
        with services.reading() as session:
            read_head(session)
        checks["database"] = OK
    except SQLAlchemyError as exc:
        checks["database"] = f"unavailable ({type(exc).__name__})"
    try:
        # A wrap/unwrap round trip proves the active KEK is usable.
        version, wrapped = wrap_data_key(services.keyring, "readyz", new_data_key())
        unwrap_data_key(services.keyring, "readyz", version, wrapped)
        checks["keys"] = OK
    except KeyringError as exc:
        checks["keys"] = f"unavailable ({type(exc).__name__})"
    return checks
