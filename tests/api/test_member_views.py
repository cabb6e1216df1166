"""An auditor's view of one member: their own line of a bulk entry, and who acted, by name.

The demo's import writes one entry naming every member of a batch of 1,000
(exports likewise name every member of a batch), so one member's access log
was mostly other members' ids (59 KB). Filtered by member, an entry shows
only that member (``members``, ``member_prev``) and how many it named
(``members_in_entry``); its ``seq`` and hashes are the stored entry's, so the
proof endpoint still proves it, whole.
"""

from __future__ import annotations

import base64
import csv
import hashlib
import io
import json
from typing import Any

from fastapi.testclient import TestClient

from gate.clients import revoke_client
from gate.context import Services
from gate.imports import import_members
from gate.operator import cut_checkpoint
from principals import OPERATOR_ACTOR
from tests.api.conftest import auth
from tests.conftest import Keys

BATCH = 40


def imported(services: Services) -> list[str]:
    return import_members(
        services,
        [
            {"name": f"张{chr(0x4E00 + i)}", "phone": f"139{i:08d}", "tier": "普通"}
            for i in range(BATCH)
        ],
        source="test",
    )


def by_action(entries: list[dict[str, Any]], action: str) -> dict[str, Any]:
    (entry,) = [e for e in entries if e["action"] == action]
    return entry


def proven_entry(client: TestClient, keys: Keys, seq: int, leaf_hash: str) -> dict[str, Any]:
    """The whole stored entry, from its inclusion proof; its leaf hash must match the view's."""
    cut_checkpoint(client.app.state.services)  # one that covers the entry
    proof = client.get(f"/v1/audit/entries/{seq}/proof", headers=auth(keys.auditor))
    assert proof.status_code == 200, proof.text
    raw = base64.b64decode(proof.json()["entry"])
    assert hashlib.sha256(b"\x00" + raw).hexdigest() == leaf_hash == proof.json()["leaf_hash"]
    return json.loads(raw)


def test_one_members_access_log_shows_their_own_line_of_a_bulk_entry(
    app_client: TestClient, keys: Keys, services: Services
) -> None:
    ids = imported(services)
    member, others = ids[3], set(ids) - {ids[3]}
    app_client.get("/v1/members?purpose=analytics", headers=auth(keys.analytics))  # no consent
    response = app_client.get(f"/v1/members/{member}/access-log", headers=auth(keys.auditor))
    assert response.status_code == 200
    assert not any(other in response.text for other in others)
    entry = by_action(response.json()["entries"], "member.import")
    assert entry["members"] == [member]
    assert entry["member_prev"] == {member: 0} and entry["prev"] == 0
    assert entry["members_in_entry"] == BATCH
    # Still provable: the seq and hashes are the stored entry's, which names the whole batch.
    whole = proven_entry(app_client, keys, entry["seq"], entry["leaf_hash"])
    assert whole["members"] == ids and len(whole["member_prev"]) == BATCH


def test_entries_filtered_by_member_show_their_own_line_in_every_format(
    app_client: TestClient, keys: Keys, services: Services
) -> None:
    ids = imported(services)
    for member in ids:  # every member of the batch admitted to the export
        app_client.post(
            f"/v1/members/{member}/consents",
            json={
                "purposes": ["analytics"],
                "status": "granted",
                "channel": "app",
                "collected_at": "2026-11-01T10:00:00+08:00",
            },
            headers=auth(keys.crm),
        )
    exported = app_client.get("/v1/members?purpose=analytics", headers=auth(keys.analytics))
    assert (
        exported.status_code == 200 and len(exported.text.splitlines()) == BATCH + 1
    )  # and the trailer
    member, others = ids[-1], set(ids[:-1])
    url = f"/v1/audit/entries?member={member}"
    page = app_client.get(url, headers=auth(keys.auditor))
    ndjson = app_client.get(url, headers={**auth(keys.auditor), "Accept": "application/x-ndjson"})
    table = app_client.get(url, headers={**auth(keys.auditor), "Accept": "text/csv"})
    for response in (page, ndjson, table):
        assert response.status_code == 200
        assert not any(other in response.text for other in others), response.text[:300]
    lines = [json.loads(line) for line in ndjson.text.splitlines()]
    assert page.json()["entries"] == lines
    imports = by_action(lines, "member.import")
    assert (imports["members"], imports["members_in_entry"]) == ([member], BATCH)
    export = [e for e in lines if e["action"] == "member.export"][-1]
    assert export["members"] == [member] and export["members_in_entry"] > 1
    assert list(export["member_prev"]) == [member]
    rows = list(csv.DictReader(io.StringIO(table.text)))
    assert [r["seq"] for r in rows] == [str(e["seq"]) for e in lines]
    assert {r["members"] for r in rows} == {member}
    assert [int(r["members_in_entry"]) for r in rows] == [e["members_in_entry"] for e in lines]
    # Unfiltered, the entries are whole.
    everything = app_client.get("/v1/audit/entries?limit=1000", headers=auth(keys.auditor))
    assert by_action(everything.json()["entries"], "member.import")["members"] == ids


def test_entries_name_their_actors_beside_their_ids(
    app_client: TestClient, keys: Keys, services: Services, member_id: str
) -> None:
    app_client.get(f"/v1/members/{member_id}?purpose=customer_service", headers=auth(keys.crm))
    app_client.get(f"/v1/members/{member_id}?purpose=marketing_sms", headers=auth(keys.sms))
    # A revoked client keeps its name in the log's views.
    revoke_client(services, actor=OPERATOR_ACTOR, client=keys.ids["sms"], request_id=None)
    names = {name: keys.ids[name] for name in ("crm", "sms")}

    log = app_client.get(f"/v1/members/{member_id}/access-log", headers=auth(keys.auditor))
    reads = [e for e in log.json()["entries"] if e["action"] == "member.read"]
    assert [(e["actor"], e["actor_name"]) for e in reads] == [
        (names["crm"], "crm"),
        (names["sms"], "sms"),
    ]
    entries = app_client.get("/v1/audit/entries?limit=1000", headers=auth(keys.auditor)).json()[
        "entries"
    ]
    named = {(e.get("actor"), e["actor_name"]) for e in entries}
    assert (OPERATOR_ACTOR.id, OPERATOR_ACTOR.name) in named  # the CLI's registrations
    assert (names["crm"], "crm") in named and (names["sms"], "sms") in named
    assert all(name is None for actor, name in named if actor is None)  # checkpoints
    table = app_client.get(
        "/v1/audit/entries", headers={**auth(keys.auditor), "Accept": "text/csv"}
    )
    rows = list(csv.DictReader(io.StringIO(table.text)))
    assert {(r["actor"], r["actor_name"]) for r in rows if r["actor"] == names["crm"]} == {
        (names["crm"], "crm")
    }
