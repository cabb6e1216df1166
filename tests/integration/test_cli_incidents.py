"""``memberguard incidents``: the DPO's breach walk-through at the CLI, on a small home.

The home's traffic is made through the gate's own use cases on a clock set hours in the
past (ticking a millisecond per look), so that the SMS client's reads fall before, inside
and after a window the tests name; the CLI then runs on the real clock, as an operator's
would, and finds in the log exactly what was released inside the window.
"""

from __future__ import annotations

import json
import logging
import os
import pty
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
import structlog
from click.testing import CliRunner
from sqlalchemy import func, select

from audit.models import AuditEntry
from breach.models import BreachIncident
from cli.main import main
from consent.registry import ConsentChange
from core.settings import load_settings
from gate.clients import register_client
from gate.consents import record_member_consent
from gate.context import Services, build_services
from gate.reads import Decided, ReadRequest, decide_reads
from gate.writes import create_member_record
from notify.outbox import read_outbox
from principals import OPERATOR_ACTOR
from principals.clients import authenticate
from tests.api.conftest import MEMBER
from tests.conftest import weasyprint_or_skip

TITLE = "The SMS gateway's key leaked"
# The command in a process of its own, for what CliRunner cannot be: a terminal.
CLI = (sys.executable, "-c", "from cli.main import main; main()")


class PastClock:
    """Hours ago, moving on a millisecond per look: the home's traffic happened earlier."""

    def __init__(self, start: datetime) -> None:
        self.now = start

    def __call__(self) -> datetime:
        self.now += timedelta(milliseconds=1)
        return self.now

    def advance(self, **delta: float) -> datetime:
        self.now += timedelta(**delta)
        return self.now


@pytest.fixture(autouse=True)
def logging_restored() -> Iterator[None]:
    """`incidents` commands configure logging on the runner's stderr; put it back afterwards."""
    root = logging.getLogger()
    saved_handlers, saved_level = root.handlers[:], root.level
    yield
    root.handlers[:] = saved_handlers
    root.setLevel(saved_level)
    structlog.reset_defaults()


def run(*args: str) -> tuple[int, str]:
    result = CliRunner().invoke(main, list(args))
    return result.exit_code, result.output


def stdout_of(*args: str) -> str:
    result = CliRunner().invoke(main, list(args))
    assert result.exit_code == 0, result.output
    return result.stdout


def iso(moment: datetime) -> str:
    return moment.isoformat()


@dataclass
class Home:
    """Five members; the SMS client (``sms``, marketing_sms) read one before the window,
    two inside it, was refused one there, and read one after it; ``crm`` read another
    member inside it."""

    path: Path
    services: Services
    members: list[str]
    start: datetime
    end: datetime

    @property
    def in_window(self) -> set[str]:
        return {self.members[1], self.members[2]}

    def incidents(self) -> int:
        with self.services.reading() as session:
            return session.scalar(select(func.count()).select_from(BreachIncident)) or 0

    def log_size(self) -> int:
        with self.services.reading() as session:
            return session.scalar(select(func.count()).select_from(AuditEntry)) or 0


def read(services: Services, key: str, member_id: str, purpose: str) -> bool:
    """A gated read through the API's own path (decided, recorded, then decrypted)."""
    (outcome,) = decide_reads(
        services,
        [ReadRequest(key, member_id, purpose, request_id=None, roles=("client",))],
    )
    if isinstance(outcome, Decided):
        outcome.release(services)
        return True
    return False


@pytest.fixture
def home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Home]:
    path = tmp_path / "home"
    monkeypatch.setenv("MEMBERGUARD_HOME", str(path))
    for name in ("MEMBERGUARD_DATABASE_URL", "MEMBERGUARD_KEY_PROVIDER"):
        monkeypatch.delenv(name, raising=False)
    code, output = run("init")
    assert code == 0, output
    clock = PastClock(datetime.now(UTC) - timedelta(hours=5))
    services = build_services(load_settings(), clock=clock)
    try:
        clients = (
            ("sms", ["marketing_sms"], []),
            ("crm", ["customer_service"], ["members:write"]),
            ("app", [], ["consents:write"]),  # the consent screen: records, reads nothing
        )
        keys = {
            name: register_client(
                services,
                actor=OPERATOR_ACTOR,
                name=name,
                role="client",
                purposes=purposes,
                scopes=scopes,
                request_id=None,
            ).key
            for name, purposes, scopes in clients
        }
        with services.reading() as session:
            crm, app = (authenticate(session, keys[name]) for name in ("crm", "app"))
        members = [
            create_member_record(
                services,
                actor=crm,
                values={**MEMBER, "phone": f"1390000{n:04d}", "email": f"member{n}@example.com"},
                request_id=None,
            ).id
            for n in range(5)
        ]
        for member_id in members[:4]:
            record_member_consent(
                services,
                actor=app,
                member_id=member_id,
                change=ConsentChange(["marketing_sms"], "granted", "app", clock.now),
                request_id=None,
            )
        assert read(services, keys["sms"], members[0], "marketing_sms")  # before the window
        start = clock.advance(hours=1)
        assert read(services, keys["sms"], members[1], "marketing_sms")
        assert read(services, keys["sms"], members[2], "marketing_sms")
        assert not read(services, keys["sms"], members[4], "marketing_sms")  # no consent
        assert read(services, keys["crm"], members[3], "customer_service")  # another client
        end = clock.advance(minutes=30)
        assert read(services, keys["sms"], members[3], "marketing_sms")  # after the window
        yield Home(path=path, services=services, members=members, start=start, end=end)
    finally:
        services.dispose()


def open_args(home: Home, *scope: str) -> list[str]:
    return [
        "incidents",
        "open",
        "--title",
        TITLE,
        "--description",
        "Its API key was found in a public paste.",
        "--detected-at",
        iso(home.end),
        "--severity",
        "high",
        *scope,
    ]


def window(home: Home) -> list[str]:
    return ["--client", "sms", "--from", iso(home.start), "--to", iso(home.end)]


def opened(home: Home, *scope: str) -> dict:
    return json.loads(stdout_of(*open_args(home, *(scope or window(home))), "--json"))


def affected(incident_id: str) -> dict[str, dict]:
    lines = stdout_of("incidents", "affected", incident_id).splitlines()
    return {line["member_id"]: line for line in map(json.loads, lines)}


def assessed(incident_id: str) -> None:
    code, output = run(
        "incidents",
        "assess",
        incident_id,
        "--consequences",
        "Spam texts.",
        "--measures",
        "The key was replaced.",
        "--advice",
        "Ignore texts asking for a code.",
    )
    assert code == 0 and "assessed" in output, output


def test_open_with_a_client_and_a_window_finds_the_members_it_read_in_the_window(
    home: Home,
) -> None:
    first, *summary = stdout_of(*open_args(home, *window(home))).splitlines()
    incident_id, status = first.split()[:2]
    assert status == "open" and "2 affected" in first and "authority due" in first
    assert summary[0] == "affected: 2 members, 2 records"
    assert summary[1] == "fields:   name 2 (masked 2), phone 2 (clear 2), tier 2 (clear 2)"
    # Not the member read before or after the window, nor the refused one, nor crm's.
    lines = affected(incident_id)
    assert set(lines) == home.in_window
    assert all(line["views"]["phone"] == ["clear"] for line in lines.values())


def test_open_without_to_ends_the_window_now(home: Home) -> None:
    incident = opened(home, "--client", "sms", "--from", iso(home.start))
    assert set(affected(incident["id"])) == home.in_window | {home.members[3]}


def test_open_with_members_lists_them_comma_separated_or_repeated(home: Home) -> None:
    first, second, third = home.members[:3]
    incident = opened(home, "--members", f"{first},{second}", "--members", third)
    assert incident["scope"] == {"kind": "members", "members": 3}
    assert set(affected(incident["id"])) == {first, second, third}


def test_list_shows_each_incident_with_its_deadline_and_affected_count(home: Home) -> None:
    incident = opened(home)
    header, row = stdout_of("incidents", "list").splitlines()
    assert header.split()[:3] == ["ID", "STATUS", "SEVERITY"] and header.endswith("TITLE")
    due = datetime.fromisoformat(incident["authority_due_at"])
    assert row.startswith(f"{incident['id']}  open")
    assert due.isoformat(sep=" ", timespec="minutes") in row
    assert row.split()[-7:] == ["no", "2", *TITLE.split()]
    assert stdout_of("incidents", "list", "--status", "closed") == ""
    listed = json.loads(stdout_of("incidents", "list", "--json"))
    assert [item["id"] for item in listed] == [incident["id"]]


def test_show_prints_the_incident_as_json_with_its_notice_totals(home: Home) -> None:
    incident = opened(home)
    shown = json.loads(stdout_of("incidents", "show", incident["id"]))
    assert shown["id"] == incident["id"] and shown["title"] == TITLE
    assert shown["affected"]["members"] == 2
    assert shown["notices"] == {
        "queued": 0,
        "sent": 0,
        "failed": 0,
        "unreachable": 0,
        "not_asked": 2,
    }


def test_the_report_is_written_to_out_as_json_and_as_html(home: Home, tmp_path: Path) -> None:
    incident = opened(home)
    assessed(incident["id"])
    as_json, as_html = tmp_path / "report.json", tmp_path / "report.html"
    code, output = run("incidents", "report", incident["id"], "--out", str(as_json))
    assert code == 0 and f"report written to {as_json}" in output, output
    report = json.loads(as_json.read_text(encoding="utf-8"))
    assert report["report"]["locale"] == "zh-CN"  # the default policy's jurisdiction is CN
    assert report["data_subjects"] == {"members": 2, "shredded": 0, "identity_only": 0}
    assert report["likely_consequences"] == "Spam texts."
    code, output = run(
        "incidents",
        "report",
        incident["id"],
        "--format",
        "html",
        "--lang",
        "en",
        "--out",
        str(as_html),
    )
    assert code == 0, output
    html = as_html.read_text(encoding="utf-8")
    assert html.startswith("<!DOCTYPE html>") and '<html lang="en">' in html
    assert "Personal Data Breach Report" in html and "The SMS gateway&#39;s key leaked" in html


def test_the_report_goes_to_stdout_without_out(home: Home) -> None:
    incident = opened(home)
    report = json.loads(stdout_of("incidents", "report", incident["id"], "--lang", "en"))
    assert report["incident"]["id"] == incident["id"]


def test_a_pdf_report_is_written_to_out(home: Home, tmp_path: Path) -> None:
    weasyprint_or_skip()
    incident = opened(home)
    target = tmp_path / "report.pdf"
    code, output = run(
        "incidents", "report", incident["id"], "--format", "pdf", "--out", str(target)
    )
    assert code == 0, output
    assert target.read_bytes().startswith(b"%PDF-")


def test_a_pdf_report_is_refused_on_a_terminal_before_anything_is_recorded(home: Home) -> None:
    incident = opened(home)
    before = home.log_size()
    leader, terminal = pty.openpty()
    try:
        finished = subprocess.run(  # noqa: S603  (our own entry point, fixed arguments)
            [*CLI, "incidents", "report", incident["id"], "--format", "pdf"],
            stdout=terminal,
            stderr=subprocess.PIPE,
            env={**os.environ, "MEMBERGUARD_HOME": str(home.path)},
            timeout=60,
            check=False,
        )
    finally:
        os.close(terminal)
        os.close(leader)
    assert finished.returncode == 2
    assert "a PDF is binary: write it with --out FILE" in finished.stderr.decode()
    assert home.log_size() == before


@pytest.mark.parametrize(
    ("scope", "message"),
    [
        (["--client", "nobody", "--from", "2026-01-01T00:00:00Z"], "--client: no such client"),
        (
            ["--client", "sms", "--from", "2026-01-02T00:00:00Z", "--to", "2026-01-01T00:00:00Z"],
            "--to: must be after from",
        ),
        (["--client", "sms", "--members", "x", "--from", "2026-01-01T00:00:00Z"], "one scope"),
        (["--all", "--members", "x"], "give one scope"),
        (["--from", "2026-01-01T00:00:00Z"], "give one scope"),
        (["--client", "sms"], "--client needs --from"),
        (["--all", "--to", "2026-01-01T00:00:00Z"], "--from and --to go with --client"),
        (["--client", "sms", "--from", "2026-01-01T00:00:00"], "has no time zone"),
        (["--client", "sms", "--from", "yesterday"], "not an ISO 8601 time"),
        (["--members", "not-an-id"], "--members: holds a value that is not a member id"),
    ],
)
def test_a_bad_scope_is_one_clear_error_and_stores_nothing(
    home: Home, scope: list[str], message: str
) -> None:
    before = home.log_size()
    code, output = run(*open_args(home, *scope))
    assert code != 0
    assert message in output.strip().splitlines()[-1], output
    assert "Traceback" not in output
    assert home.incidents() == 0 and home.log_size() == before


def test_a_future_detected_at_is_refused_and_stores_nothing(home: Home) -> None:
    args = open_args(home, "--all")
    args[args.index("--detected-at") + 1] = iso(datetime.now(UTC) + timedelta(hours=1))
    code, output = run(*args)
    assert code == 1
    assert output.strip() == "memberguard: error: --detected-at: is in the future"
    assert home.incidents() == 0


def test_an_empty_or_overlong_title_is_refused(home: Home) -> None:
    for title in ("", "x" * 201):
        args = open_args(home, "--all")
        args[args.index("--title") + 1] = title
        code, output = run(*args)
        assert code == 2 and "1 to 200 characters" in output, output
    assert home.incidents() == 0


def test_notify_members_twice_sends_each_member_one_notice(home: Home) -> None:
    incident = opened(home)
    assessed(incident["id"])
    printed = stdout_of("incidents", "notify-members", incident["id"])
    assert printed == "notices:  sent 2, queued 0, failed 0, unreachable 0, not asked 0\n"
    again = stdout_of("incidents", "notify-members", incident["id"], "--channel", "sms")
    assert again == printed
    notices = [m for m in read_outbox(home.path / "outbox") if m["template"] == "breach_notice"]
    # E-mail first by default: each member has an address, so one e-mail each, no SMS.
    assert sorted(m["to"] for m in notices) == sorted(f"member{n}@example.com" for n in (1, 2))
    assert {m["channel"] for m in notices} == {"email"}


def test_notify_members_waits_for_the_assessment(home: Home) -> None:
    incident = opened(home)
    code, output = run("incidents", "notify-members", incident["id"])
    assert code == 1
    assert output.strip().startswith("memberguard: error: assess the incident first")


def test_the_walk_through_ends_with_the_authority_told_and_the_incident_closed(
    home: Home,
) -> None:
    incident = opened(home)
    assessed(incident["id"])
    told = iso(datetime.now(UTC).replace(microsecond=0))
    code, output = run(
        "incidents",
        "authority-notified",
        incident["id"],
        "--at",
        told,
        "--authority",
        "Shenzhen Cyberspace Administration",
        "--reference",
        "SZ-0042",
    )
    assert code == 0 and "authority_notified" in output and "(in time)" in output, output
    code, output = run(
        "incidents", "authority-notified", incident["id"], "--at", told, "--authority", "again"
    )
    assert code == 1 and "already recorded" in output
    code, output = run("incidents", "close", incident["id"], "--summary", "Key rotated.")
    assert code == 0 and f"{incident['id']}  closed" in output
    shown = json.loads(stdout_of("incidents", "show", incident["id"]))
    assert [line["step"] for line in shown["timeline"]] == [
        "opened",
        "assessed",
        "authority_notified",
        "closed",
    ]
    assert {line["actor"] for line in shown["timeline"]} == {"operator"}
    code, output = run(
        "incidents",
        "assess",
        incident["id"],
        "--consequences",
        "x",
        "--measures",
        "y",
        "--advice",
        "z",
    )
    assert code == 1 and "the incident is closed" in output


def test_an_unknown_incident_is_one_line_and_exit_1(home: Home) -> None:
    code, output = run("incidents", "show", "a" * 24)
    assert (code, output.strip()) == (1, "memberguard: error: no such incident")


@pytest.mark.parametrize(
    "command", [["incidents"], ["incidents", "open"], ["incidents", "authority-notified"]]
)
def test_the_help_says_times_are_iso_8601_with_a_zone(command: list[str]) -> None:
    code, output = run(*command, "--help")
    assert code == 0
    assert "ISO 8601 with a" in " ".join(output.split())
