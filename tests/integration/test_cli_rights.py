"""``memberguard rights`` and ``memberguard holds``: the operator acting as the DPO."""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from click.testing import CliRunner

from cli.main import main
from core.settings import load_settings
from gate.clients import register_client
from gate.consents import read_member_consents
from gate.context import Services, build_services
from gate.feed import acknowledge_event, read_feed
from gate.rights import submit_relayed_request
from gate.writes import create_member_record
from notify.outbox import read_outbox
from principals import OPERATOR_ACTOR, Actor
from principals.clients import authenticate
from rights.requests import Verification
from tests.api.conftest import MEMBER


def run(*args: str) -> tuple[int, str]:
    result = CliRunner().invoke(main, list(args))
    return result.exit_code, result.output


@dataclass
class Home:
    services: Services
    care: Actor
    member: str

    def relay(self, body: dict) -> str:
        shown = submit_relayed_request(
            self.services,
            actor=self.care,
            member_id=self.member,
            request_type=body["type"],
            changes=body.get("changes"),
            verification=Verification("in_person_id"),
            received_at=None,
            request_id=None,
        )
        return shown.request["id"]


@pytest.fixture
def home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Home]:
    monkeypatch.setenv("MEMBERGUARD_HOME", str(tmp_path / "home"))
    monkeypatch.delenv("MEMBERGUARD_DATABASE_URL", raising=False)
    monkeypatch.delenv("MEMBERGUARD_KEY_PROVIDER", raising=False)
    code, output = run("init")
    assert code == 0, output
    services = build_services(load_settings())
    try:
        keys = {
            name: register_client(
                services,
                actor=OPERATOR_ACTOR,
                name=name,
                role="client",
                purposes=[],
                scopes=[scope],
                request_id=None,
            ).key
            for name, scope in (("crm", "members:write"), ("care", "rights:submit"))
        }
        with services.reading() as session:
            crm, care = (authenticate(session, keys[n]) for n in ("crm", "care"))
        member = create_member_record(services, actor=crm, values=MEMBER, request_id=None).id
        yield Home(services=services, care=care, member=member)
    finally:
        services.dispose()


def show(request_id: str) -> dict:
    code, output = run("rights", "show", request_id)
    assert code == 0, output
    return json.loads(output)


def test_a_held_deletion_is_listed_and_runs_when_the_cli_releases_the_hold(home: Home) -> None:
    code, hold = run("holds", "add", home.member, "--reason", "litigation case 118")
    assert code == 0, hold
    hold = hold.strip()
    deletion = home.relay({"type": "deletion"})
    code, output = run("rights", "list")
    assert code == 0 and deletion in output and "on_hold" in output
    code, output = run("rights", "list", "--json", "--type", "deletion")
    assert [r["id"] for r in json.loads(output)] == [deletion]
    code, output = run("rights", "list", "--overdue")
    assert code == 0 and output == ""
    code, output = run("holds", "list")
    assert code == 0 and hold in output and "litigation case 118" in output
    code, output = run("holds", "release", home.member, hold)
    assert code == 0, output
    assert f"deletion {deletion} ran" in output
    shown = show(deletion)
    assert shown["status"] == "completed"
    assert [line["status"] for line in shown["history"]] == [
        "submitted",
        "on_hold",
        "in_progress",
        "completed",
    ]
    assert shown["history"][-1]["by"] == {"kind": "staff", "id": "operator"}
    code, output = run("holds", "list", home.member)
    assert code == 1 and "no such member" in output  # deleted: gone for every command


def test_the_cli_lists_deletions_awaiting_acknowledgements_with_their_count(
    home: Home,
) -> None:
    reader = register_client(
        home.services,
        actor=OPERATOR_ACTOR,
        name="reader",
        role="client",
        purposes=[],
        scopes=["consents:read"],
        request_id=None,
    ).key
    with home.services.reading() as session:
        actor = authenticate(session, reader)
    read_member_consents(home.services, actor=actor, member_id=home.member, request_id=None)
    deletion = home.relay({"type": "deletion"})
    code, output = run("rights", "list", "--awaiting-ack")
    assert code == 0, output
    assert deletion in output and "acks 0/1" in output
    (event,) = read_feed(home.services, actor=actor).items
    acknowledge_event(home.services, actor=actor, event_id=event["id"], request_id=None)
    code, output = run("rights", "list", "--awaiting-ack")
    assert code == 0 and output == ""
    code, output = run("rights", "list", "--type", "deletion")
    assert code == 0 and deletion in output and "acks 1/1" in output


def test_the_cli_approves_and_rejects_corrections(home: Home) -> None:
    approve = home.relay({"type": "correction", "changes": {"name": "王五"}})
    code, output = run("rights", "approve", approve)
    assert code == 0, output
    assert "completed" in output
    reject = home.relay({"type": "correction", "changes": {"name": "王六"}})
    code, output = run("rights", "reject", reject, "--reason", "no evidence (case 9)")
    assert code == 0 and "rejected" in output
    assert show(reject)["history"][-1]["reason"] == "no evidence (case 9)"
    code, output = run("rights", "approve", reject)
    assert code == 1 and "not waiting for a DPO's approval" in output


def test_the_cli_refuses_what_the_policy_refuses_in_one_line(home: Home) -> None:
    request = home.relay({"type": "correction", "changes": {"name": "王五"}})
    code, output = run("rights", "extend", request, "--reason", "x", "--until", "2099-01-01")
    assert code == 1
    assert output.startswith("memberguard: error: the policy allows no extension")
    code, output = run("rights", "show", "c" * 24)
    assert code == 1 and "no such request" in output
    code, output = run("holds", "add", "c" * 24, "--reason", "x")
    assert code == 1 and "no such member" in output


def test_the_member_is_told_of_the_clis_decisions_as_they_commit(home: Home) -> None:
    outbox = home.services.settings.resolved_outbox_dir
    approve = home.relay({"type": "correction", "changes": {"name": "王五"}})
    assert run("rights", "approve", approve)[0] == 0
    reject = home.relay({"type": "correction", "changes": {"name": "王六"}})
    assert run("rights", "reject", reject, "--reason", "no evidence (case 9)")[0] == 0
    code, hold = run("holds", "add", home.member, "--reason", "litigation case 118")
    assert code == 0, hold
    deletion = home.relay({"type": "deletion"})
    assert run("holds", "release", home.member, hold.strip())[0] == 0
    told = [(m["template"], m["body"]) for m in read_outbox(outbox)]
    assert [template for template, _ in told] == [
        "request_received",
        "request_completed",
        "request_received",
        "request_rejected",
        "request_on_hold",
        "request_completed",
    ]
    for (_, body), request in zip(told, [approve] * 2 + [reject] * 2 + [deletion] * 2, strict=True):
        assert request in body
    assert "no evidence (case 9)" in told[3][1]
