"""The README's five-minute tour is what ``memberguard demo`` prints, and its numbers hold.

A small demo (one import batch) is run in-process; the tour's commands are taken
from what it printed and sent to the app built on the same home; the log's
size after them gives the README's count for the default demo by swapping the
small demo's import batches for the default's. The tour ends with the DPO's
breach incident, which must find exactly the members the SMS gateway received.
"""

from __future__ import annotations

import json
import logging
import math
import re
import shlex
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from functools import partial
from pathlib import Path

import click
import pytest
import structlog
from click.testing import CliRunner
from fastapi.testclient import TestClient
from httpx import Response

from api.app import create_app
from cli.demo import BATCH, CAMPAIGN_CLIENT, CAMPAIGN_SIZE, DEMO_CLIENTS
from cli.main import main
from core.settings import Settings
from gate.context import build_services

README = Path(__file__).parents[2] / "README.md"
SMALL = 120  # members: one import batch
# The tour's "now": later than any consent the demo data can hold (grants by
# 2026-12, withdrawals at most 900 days after them), so the withdrawal is the latest word.
TOUR_AT = datetime(2030, 1, 1, tzinfo=UTC)
# The demo is started an hour before the tour: its SMS campaign falls in the incident's
# "yesterday".
DEMO_AT = TOUR_AT - timedelta(hours=1)
DATE_COMMAND = "$(date -u +%Y-%m-%dT%H:%M:%SZ)"
YESTERDAY_COMMAND = (
    "$(python3 -c 'import datetime as d; print((d.datetime.now(d.timezone.utc) - "
    'd.timedelta(days=1)).isoformat(timespec="seconds"))\')'
)
# What each of the tour's requests answers, in order (the README's comments say so):
# reads, consent withdrawal, the auditor's query; then member A signs in (202, 200), reads
# their access log, asks for a copy (201) and downloads it, asks for deletion (201), after
# which customer service finds no A (404); the DPO's queue; last, the breach incident:
# opened (201), shown, its affected list, assessed, its report in HTML and JSON, the
# authority's notification, the members' notices queued (202) and their totals.
TOUR_STATUSES = [200, 200, 403, 201, 403, 200, 202, 200, 200, 201, 200, 201, 404, 200]
TOUR_STATUSES += [201, 200, 200, 200, 200, 200, 200, 202, 200]
# The CLI commands the tour runs besides curl.
TOUR_CLI = (".venv/bin/memberguard incidents list", ".venv/bin/memberguard audit verify")
# The shell function the tour defines to take one key of a JSON answer.
FIELD = "field() { python3 -c 'import json,sys; print(json.load(sys.stdin)[sys.argv[1]])' \"$1\"; }"
CAPTURE = re.compile(r"export (\w+)=\$\((curl .*?)\s*\|\s*field (\w+)\)")
OUTBOX_CODE = re.compile(r"\$\((\S+) outbox code\)")


class TourClock:
    """Time as the tour lives it: it moves on between commands, a millisecond per look.

    A fixed clock would put the gateway's read of A at the very instant the incident is
    opened, which ends its window (excluded), as no real tour can.
    """

    def __init__(self, start: datetime) -> None:
        self.now = start

    def __call__(self) -> datetime:
        self.now += timedelta(milliseconds=1)
        return self.now


@pytest.fixture
def home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    target = tmp_path / "home"
    monkeypatch.setenv("MEMBERGUARD_HOME", str(target))
    # A checkpoint is cut at the first commit after every_seconds; the tour's
    # clock is years after the demo's, so only the count rule may cut one here.
    monkeypatch.setenv("MEMBERGUARD_CHECKPOINT_EVERY_SECONDS", str(10**10))
    for name in ("MEMBERGUARD_DATABASE_URL", "MEMBERGUARD_KEY_PROVIDER"):
        monkeypatch.delenv(name, raising=False)
    return target


@pytest.fixture(autouse=True)
def logging_restored() -> Iterator[None]:
    """`incidents` commands configure logging on the runner's stderr; put it back afterwards."""
    root = logging.getLogger()
    saved_handlers, saved_level = root.handlers[:], root.level
    yield
    root.handlers[:] = saved_handlers
    root.setLevel(saved_level)
    structlog.reset_defaults()


def demo_default(option: str) -> object:
    command = main.commands["demo"]  # type: ignore[attr-defined]
    assert isinstance(command, click.Command)
    return next(p.default for p in command.params if p.name == option)


def printed_tour(output: str) -> list[str]:
    """The "Try it" block the demo printed, without its two-space indent."""
    block = output.split("Try it (in another terminal):\n", 1)[1].split("\nOpenAPI:", 1)[0]
    return [line.removeprefix("  ") for line in block.splitlines()]


def readme_tour() -> list[str]:
    text = README.read_text(encoding="utf-8")
    section = text.split("## A five-minute tour", 1)[1]
    return section.split("```sh\n", 1)[1].split("\n```", 1)[0].splitlines()


def commands_only(lines: list[str]) -> list[str]:
    """Lines that run something: blank lines and whole-line comments left out."""
    return [line for line in lines if line.strip() and not line.lstrip().startswith("#")]


def with_placeholders(lines: list[str]) -> list[str]:
    """Keys and member ids as the README writes them (``mg_...``, ``...``)."""
    placed = [re.sub(r"=mg_[A-Za-z0-9_-]+", "=mg_...", line) for line in lines]
    placed = [re.sub(r"^export ([AB])=[a-z0-9]+", r"export \1=...", line) for line in placed]
    return [re.sub(r"^export PHONE=\+\d+", "export PHONE=...", line) for line in placed]


def shell_commands(lines: list[str]) -> list[str]:
    """Continuation lines (ending in a backslash) joined into one command each."""
    joined: list[str] = []
    pending = ""
    for line in commands_only(lines):
        if line.endswith("\\"):
            pending += line[:-1]
            continue
        joined.append(pending + line)
        pending = ""
    return joined


def run_curl(client: TestClient, command: str, variables: dict[str, str], base: str) -> Response:
    """Send one of the tour's curl commands (-s, -si, -X, -H, -d, -o) through the app."""
    command = command.replace(DATE_COMMAND, TOUR_AT.strftime("%Y-%m-%dT%H:%M:%SZ"))
    # The sign-in code, read from the outbox by the CLI as the tour does.
    command = OUTBOX_CODE.sub(lambda m: outbox_code(m.group(1)), command)
    words = [
        re.sub(r"\$(\w+)", lambda m: variables[m.group(1)], word) for word in shlex.split(command)
    ]
    assert words[0] == "curl"
    method, headers, body, url = "GET", {}, None, None
    rest = iter(words[1:])
    for word in rest:
        if word in ("-s", "-si"):
            continue
        if word == "-X":
            method = next(rest)
        elif word == "-H":
            name, value = next(rest).split(": ", 1)
            headers[name] = value
        elif word == "-d":
            body = next(rest)
        elif word == "-o":
            assert next(rest) == "report.html"  # the answer is checked, not written
        else:
            assert url is None and word.startswith(base), word
            url = word
    assert url is not None
    return client.request(method, url[len(base) :], headers=headers, content=body)


def outbox_code(invoked_as: str) -> str:
    assert invoked_as == ".venv/bin/memberguard"
    printed = CliRunner().invoke(main, ["outbox", "code"])
    assert printed.exit_code == 0, printed.output
    return printed.stdout.strip()


def run_tour(
    client: TestClient, commands: list[str], variables: dict[str, str], base: str
) -> tuple[list[int], dict[str, Response], list[str]]:
    """Run the tour's shell lines in order: exports (fixed, computed, or taken from an
    answer's JSON with the tour's ``field`` function), requests and the incident list.
    Returns every request's status, the last answer to each path and query, and what
    `incidents list` printed."""
    statuses = []
    answers: dict[str, Response] = {}
    listed: list[str] = []
    yesterday = (TOUR_AT - timedelta(days=1)).isoformat(timespec="seconds")
    for command in commands:
        command = command.replace(YESTERDAY_COMMAND, yesterday)
        captured = CAPTURE.fullmatch(command)
        if captured is not None:
            name, request, key = captured.groups()
            response = run_curl(client, request, variables, base)
            statuses.append(response.status_code)
            variables[name] = response.json()[key]
        elif command.startswith("export "):
            for assignment in shlex.split(command, comments=True)[1:]:
                name, value = assignment.split("=", 1)
                variables[name] = value
        elif command.startswith("curl "):
            response = run_curl(client, command, variables, base)
            statuses.append(response.status_code)
            answers[response.request.url.raw_path.decode()] = response
        elif command == TOUR_CLI[0]:
            printed = CliRunner().invoke(main, ["incidents", "list"])
            assert printed.exit_code == 0, printed.output
            listed = printed.stdout.splitlines()
        else:
            assert command in (FIELD, TOUR_CLI[1]), command
    return statuses, answers, listed


def gateway_received(client: TestClient, variables: dict[str, str]) -> set[str]:
    """Every member the log shows the SMS gateway was released data of (its permitted
    reads), asked of the auditor's API rather than of the code under test."""
    incident = client.get(
        f"/v1/incidents/{variables['INCIDENT']}",
        headers={"Authorization": f"Bearer {variables['DPO']}"},
    ).json()
    entries = client.get(
        "/v1/audit/entries",
        params={
            "actor": incident["scope"]["client"],
            "action": "member.read",
            "decision": "permit",
            "limit": 500,
        },
        headers={"Authorization": f"Bearer {variables['DPO']}"},
    ).json()["entries"]
    assert entries and {entry["actor_name"] for entry in entries} == {CAMPAIGN_CLIENT}
    return {member for entry in entries for member in entry["members"]}


def check_incident(
    answers: dict[str, Response], variables: dict[str, str], received: set[str], listed: list[str]
) -> None:
    """The incident found exactly whom the gateway received, A (shredded) unreachable among
    them; the README's figures are those answers; the CLI lists it."""
    path = f"/v1/incidents/{variables['INCIDENT']}"
    affected = {
        line["member_id"]: line
        for line in map(json.loads, answers[f"{path}/affected"].text.splitlines())
    }
    # The campaign's members and A; not B, whose read was refused.
    assert set(affected) == received
    assert len(received) == CAMPAIGN_SIZE + 1
    assert variables["A"] in affected and variables["B"] not in affected
    # A was crypto-shredded earlier in the tour: affected, but nothing to reach them with.
    assert [m for m, line in affected.items() if line["shredded"]] == [variables["A"]]
    shown = answers[path].json()["affected"]
    notices = answers[f"{path}/notices"].json()
    assert notices == {
        "queued": 0,
        "sent": CAMPAIGN_SIZE,
        "failed": 0,
        "unreachable": 1,
        "not_asked": 0,
    }
    report = answers[f"{path}/report?lang=en"].json()
    assert report["data_subjects"] == {
        "members": CAMPAIGN_SIZE + 1,
        "shredded": 1,
        "identity_only": 0,
    }
    html = answers[f"{path}/report?format=html&lang=en"]
    assert html.headers["content-type"].startswith("text/html")
    assert "Personal Data Breach Report" in html.text
    # The README quotes these answers as they are.
    tour = "\n".join(readme_tour()).replace("\n#  ", "")  # comments wrap with "#  "
    for answer in (shown, notices):
        assert json.dumps(answer, separators=(",", ":")) in tour, answer
    # `memberguard incidents list`: a header and the incident, its members told.
    assert len(listed) == 2 and listed[0].startswith("ID")
    assert listed[1].startswith(f"{variables['INCIDENT']}  members_notified  high")


def test_the_readme_tour_is_the_printed_tour_and_its_numbers_hold(
    home: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Started the way the README's install leaves it: .venv/bin/memberguard; an hour
    # before the tour, on the tour's clock (every command builds its services with it).
    monkeypatch.setattr("sys.argv", [".venv/bin/memberguard", "demo"])
    clock = TourClock(DEMO_AT)
    monkeypatch.setattr("gate.context.build_services", partial(build_services, clock=clock))
    result = CliRunner().invoke(main, ["demo", "--members", str(SMALL), "--no-serve"])
    assert result.exit_code == 0, result.output
    assert f"campaign: {CAMPAIGN_CLIENT} read {CAMPAIGN_SIZE} members" in result.stdout
    printed = printed_tour(result.stdout)

    # The README's block runs the very commands the demo prints.
    assert commands_only(readme_tour()) == with_placeholders(commands_only(printed))

    # Run them: each answers what the tour says, and the log grows by the tour's decisions.
    commands = shell_commands(printed)
    base = f"http://127.0.0.1:{demo_default('port')}"
    # No job thread beside the tour (the demo's own serve runs one): the count is the tour's.
    clock.now = TOUR_AT
    services = build_services(Settings(worker_in_server=False), clock=clock)
    variables: dict[str, str] = {}
    try:
        with TestClient(create_app(services=services)) as client:
            statuses, answers, listed = run_tour(client, commands, variables, base)
            received = gateway_received(client, variables)
    finally:
        services.dispose()
    assert statuses == TOUR_STATUSES
    check_incident(answers, variables, received, listed)
    assert commands[-1] == TOUR_CLI[1]
    verified = CliRunner().invoke(main, ["audit", "verify"])
    assert verified.exit_code == 0, verified.output
    ok = re.match(r"OK: (\d+) entries", verified.stdout)
    assert ok is not None, verified.stdout
    small_total = int(ok.group(1))

    # The README's counts are the default demo's: its import batches instead of ours.
    default_members = demo_default("n_members")
    assert isinstance(default_members, int)
    small_batches = math.ceil(SMALL / BATCH)
    default_batches = math.ceil(default_members / BATCH)
    expected = small_total - small_batches + default_batches
    text = README.read_text(encoding="utf-8")
    assert f"loads {default_members:,} synthetic members" in text
    assert f"in {default_batches} batches of {BATCH:,}" in text
    assert re.findall(r"^# OK: (\d+) entries", "\n".join(readme_tour()), re.M) == [str(expected)]
    # ... and the line on the published checkpoints is what verify prints.
    extends = [line for line in verified.stdout.splitlines() if line.startswith("the log extends")]
    assert [f"# {line}" for line in extends] == [
        line for line in readme_tour() if line.startswith("# the log extends")
    ]
    explained = re.search(
        r"The (\d+) entries are the (\d+) import batches, the first signed checkpoint, "
        r"the (\d+) clients, the SMS campaign's (\d+) reads and the tour's (\d+) entries".replace(
            " ", r"\s+"
        ),
        text,
    )
    assert explained is not None
    assert [int(n) for n in explained.groups()] == [
        expected,
        default_batches,
        len(DEMO_CLIENTS),
        CAMPAIGN_SIZE,
        expected - default_batches - 1 - len(DEMO_CLIENTS) - CAMPAIGN_SIZE,
    ]
