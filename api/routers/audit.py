"""Endpoints for auditors and the DPO (role ``auditor``)."""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Iterator
from datetime import datetime
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Path, Query, Request
from fastapi.responses import StreamingResponse

from api.deps import ServicesDep, require_role
from api.openapi import problems
from api.schemas import AuditEntriesOut, AuditHeadOut
from audit.log import read_head
from audit.notary import latest_checkpoint
from audit.proofs import consistency, get_checkpoint, inclusion
from audit.queries import EntryFilter, time_bound
from gate.auditor import entries_page, entries_stream, member_access_log

router = APIRouter(
    prefix="/v1/audit", tags=["audit"], dependencies=[Depends(require_role("auditor", "dpo"))]
)

CSV_COLUMNS = (
    "seq",
    "at",
    "action",
    "actor",
    "actor_name",
    "actor_role",
    "purpose",
    "decision",
    "reason",
    "members",
    "members_in_entry",
    "fields",
    "policy",
    "request_id",
    "leaf_hash",
    "chain_hash",
)
Id = Annotated[str | None, Query(max_length=64, pattern=r"^[A-Za-z0-9_.:-]+$")]


def _filters(
    member: Id = None,
    actor: Id = None,
    purpose: Id = None,
    action: Id = None,
    decision: Annotated[str | None, Query(pattern="^(permit|deny)$")] = None,
    since: datetime | None = None,
    until: datetime | None = None,
) -> EntryFilter:
    since, until = time_bound(since, "since"), time_bound(until, "until")
    return EntryFilter(
        member=member,
        actor=actor,
        purpose=purpose,
        action=action,
        decision=decision,
        since=since,
        until=until,
    )


Filters = Annotated[EntryFilter, Depends(_filters)]


@router.get(
    "/entries",
    response_model=AuditEntriesOut,
    responses={200: {"content": {"application/x-ndjson": {}, "text/csv": {}}}},
    openapi_extra=problems("invalid-cursor"),
)
def entries(
    request: Request,
    filters: Filters,
    services: ServicesDep,
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
    cursor: Annotated[str | None, Query(max_length=200)] = None,
) -> Any:
    accept = request.headers.get("accept", "")
    if "application/x-ndjson" in accept or "text/csv" in accept:
        rows = entries_stream(services, filters)
        if "application/x-ndjson" in accept:
            return StreamingResponse(_ndjson(rows), media_type="application/x-ndjson")
        return StreamingResponse(
            _csv(rows),
            media_type="text/csv; charset=utf-8",
            headers={"Content-Disposition": 'attachment; filename="audit-entries.csv"'},
        )
    page = entries_page(services, filters, cursor=cursor, limit=limit)
    return {"entries": page.entries, "next_cursor": page.next_cursor}


def _ndjson(rows: Iterator[dict[str, Any]]) -> Iterator[bytes]:
    for row in rows:
        yield json.dumps(row, ensure_ascii=False, separators=(",", ":")).encode() + b"\n"


def _csv(rows: Iterator[dict[str, Any]]) -> Iterator[str]:
    buffer = io.StringIO()
    writer = csv.writer(buffer)
    writer.writerow(CSV_COLUMNS)
    for row in rows:
        writer.writerow(
            [
                " ".join(row.get("members", []))
                if col == "members"
                else json.dumps(row.get("fields", {}), ensure_ascii=False, sort_keys=True)
                if col == "fields"
                else row.get(col)
                for col in CSV_COLUMNS
            ]
        )
        if buffer.tell() > 64 * 1024:
            yield buffer.getvalue()
            buffer.seek(0)
            buffer.truncate()
    yield buffer.getvalue()


@router.get("/head", response_model=AuditHeadOut)
def head(services: ServicesDep) -> dict[str, Any]:
    with services.reading() as session:
        current = read_head(session)
        latest = latest_checkpoint(session)
        return {
            "size": current.size,
            "head_hash": current.head_hash,
            "checkpoint": latest.note if latest is not None else None,
        }


Size = Annotated[int | None, Query(ge=1, le=2**62, description="A checkpointed tree size")]


@router.get("/checkpoint", openapi_extra=problems("no-checkpoint"))
def checkpoint(services: ServicesDep, size: Size = None) -> dict[str, Any]:
    """The latest signed checkpoint, or the one cut at ``size``."""
    with services.reading() as session:
        return get_checkpoint(session, size)


@router.get("/entries/{seq}/proof", openapi_extra=problems("no-checkpoint", "not-found"))
def entry_proof(
    services: ServicesDep, seq: Annotated[int, Path(ge=1, le=2**62)], size: Size = None
) -> dict[str, Any]:
    """Inclusion proof of entry ``seq`` in the checkpointed tree of ``size`` (default: latest)."""
    with services.reading() as session:
        return inclusion(session, seq=seq, size=size)


@router.get("/consistency", openapi_extra=problems("no-checkpoint"))
def consistency_proof(
    services: ServicesDep,
    from_size: Annotated[int, Query(alias="from", ge=1, le=2**62)],
    to_size: Annotated[int, Query(alias="to", ge=1, le=2**62)],
) -> dict[str, Any]:
    """Proof that the checkpointed tree of ``to`` extends the one of ``from``."""
    with services.reading() as session:
        return consistency(session, old=from_size, new=to_size)


@router.get("/public-key")
def public_key(services: ServicesDep) -> dict[str, str]:
    """The checkpoint verifier key, as a C2SP note verifier key."""
    return {"verifier_key": services.notary.verifier_key}


members_router = APIRouter(
    prefix="/v1/members", tags=["audit"], dependencies=[Depends(require_role("auditor", "dpo"))]
)


@members_router.get(
    "/{member_id}/access-log", openapi_extra=problems("not-found", "invalid-cursor")
)
def access_log(
    member_id: str,
    services: ServicesDep,
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
    cursor: Annotated[str | None, Query(max_length=200)] = None,
) -> dict[str, Any]:
    """Every entry touching the member (reads, lookups, exports, consent changes, imports).

    Each item carries its ``seq`` (ask for its inclusion proof) and ``prev``,
    the member's previous entry as named inside the entry's hashed bytes: the
    history is complete when each item's ``prev`` is the ``seq`` of the item
    before it (0 for the first), so an entry left out breaks the links. A bulk
    entry shows the member's own line (``members_in_entry`` says how many it
    names); each item names its actor (``actor_name``).
    """
    log = member_access_log(services, member_id, cursor=cursor, limit=limit)
    return {
        "member": log.member,
        "entries": log.entries,
        "next_cursor": log.next_cursor,
        "checkpoint": log.checkpoint,
    }
