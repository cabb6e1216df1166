"""Request ids: the server's own, in every audit entry; a client's UUID only in logs and a header.

The request id is written into audit entries, which are permanent and hashed,
so it must never carry client text: a UUID-shaped value can end in a phone
number's digits. The server assigns every request its id (``X-Request-ID``);
a client's own UUID is bound to the log lines as ``client_request_id``, where
the log's scrubbing applies, and echoed back as ``X-Client-Request-ID``.
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Callable
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import text
from sqlalchemy.orm import Session

from api.middleware import UUID_RE, new_request_id
from core.logging import REDACTED
from tests.api.conftest import auth
from tests.conftest import Keys

# A UUID in shape whose last group ends in a CN mobile number.
SMUGGLED = "7c9e6679-7425-40de-944b-013912345670"
PHONE = "13912345670"
# A UUID with no run of digits the log's scrubbing would take for a phone number.
PLAIN = "3F2504E0-4F89-41D3-9A0C-0305E82C3301"


def test_assigned_ids_are_32_hex_digits_and_unique() -> None:
    ids = [new_request_id() for _ in range(20_000)]
    assert all(re.fullmatch(r"[0-9a-f]{32}", i) and UUID_RE.fullmatch(i) for i in ids)
    assert len(set(ids)) == len(ids)


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs os.fork")
def test_a_forked_worker_does_not_repeat_its_parents_ids() -> None:
    read_end, write_end = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: report its next ids and leave at once
        os.close(read_end)
        os.write(write_end, ",".join(new_request_id() for _ in range(3)).encode())
        os._exit(0)
    os.close(write_end)
    parent = [new_request_id() for _ in range(3)]
    with os.fdopen(read_end) as pipe:
        child = pipe.read().split(",")
    os.waitpid(pid, 0)
    assert len(child) == 3 and not set(child) & set(parent)


def entries(session: Session) -> list[dict[str, Any]]:
    try:
        rows = session.execute(text("SELECT entry FROM audit_entry ORDER BY seq")).scalars()
        return [json.loads(bytes(row)) for row in rows]
    finally:
        session.close()


def access_lines(log: str) -> list[dict[str, Any]]:
    records = [json.loads(line) for line in log.splitlines() if line.startswith("{")]
    return [r for r in records if r.get("event") == "http.request"]


@pytest.mark.parametrize("supplied", [SMUGGLED, PLAIN, PLAIN.replace("-", "").lower()])
def test_audit_entries_hold_the_servers_request_id_never_the_clients(
    app_client: TestClient, keys: Keys, member_id: str, session: Session, supplied: str
) -> None:
    responses = [
        app_client.get(
            f"/v1/members/{member_id}?purpose=customer_service",
            headers={**auth(keys.crm), "X-Request-ID": supplied},
        ),
        app_client.get(  # a recorded refusal
            f"/v1/members/{member_id}?purpose=marketing_sms",
            headers={**auth(keys.sms), "X-Request-ID": supplied},
        ),
        app_client.post(
            "/v1/members",
            json={"name": "李四", "phone": "13900001111", "tier": "普通"},
            headers={**auth(keys.crm), "X-Request-ID": supplied},
        ),
    ]
    assert [r.status_code for r in responses] == [200, 403, 201]
    by_seq = {e["seq"]: e for e in entries(session)}
    for response in responses:
        server_id = response.headers["X-Request-ID"]
        assert re.fullmatch(r"[0-9a-f]{32}", server_id)
        assert server_id != supplied.lower().replace("-", "")
        assert by_seq[int(response.headers["Audit-Seq"])]["request_id"] == server_id
        assert response.headers["X-Client-Request-ID"] == supplied
    stored = json.dumps(list(by_seq.values())).lower()
    assert supplied.lower() not in stored and supplied.replace("-", "").lower() not in stored
    assert PHONE not in stored


def test_problem_bodies_name_the_servers_request_id(
    app_client: TestClient, keys: Keys, member_id: str
) -> None:
    refused = app_client.get(
        f"/v1/members/{member_id}?purpose=marketing_sms",
        headers={**auth(keys.sms), "X-Request-ID": SMUGGLED},
    )
    assert refused.status_code == 403
    assert refused.json()["request_id"] == refused.headers["X-Request-ID"]
    assert PHONE not in refused.text


def test_a_clients_uuid_reaches_the_log_lines_as_client_request_id_scrubbed(
    app_client: TestClient, keys: Keys, member_id: str, json_logs: Callable[[], str]
) -> None:
    path = f"/v1/members/{member_id}?purpose=customer_service"
    plain = app_client.get(path, headers={**auth(keys.crm), "X-Request-ID": PLAIN})
    smuggled = app_client.get(path, headers={**auth(keys.crm), "X-Request-ID": SMUGGLED})
    log = json_logs()
    lines = {line["request_id"]: line for line in access_lines(log)}
    assert lines[plain.headers["X-Request-ID"]]["client_request_id"] == PLAIN
    # The log's scrubbing applies to the client's id (it is client text).
    assert REDACTED in lines[smuggled.headers["X-Request-ID"]]["client_request_id"]
    assert PHONE not in log


@pytest.mark.parametrize(
    "supplied", ["+8613912345670", "not-a-uuid", PLAIN + "0", "{" + PLAIN + "}", ""]
)
def test_a_client_request_id_that_is_not_a_uuid_is_dropped(
    app_client: TestClient,
    keys: Keys,
    member_id: str,
    json_logs: Callable[[], str],
    supplied: str,
) -> None:
    response = app_client.get(
        f"/v1/members/{member_id}?purpose=customer_service",
        headers={**auth(keys.crm), "X-Request-ID": supplied},
    )
    assert response.status_code == 200
    assert re.fullmatch(r"[0-9a-f]{32}", response.headers["X-Request-ID"])
    assert "X-Client-Request-ID" not in response.headers
    (line,) = [
        r for r in access_lines(json_logs()) if r["request_id"] == response.headers["X-Request-ID"]
    ]
    assert "client_request_id" not in line
