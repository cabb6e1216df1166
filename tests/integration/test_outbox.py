"""The outbox transport's files, and ``memberguard outbox list``."""

from __future__ import annotations

import json
import os
import stat
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path

import pytest
from click.testing import CliRunner

from cli.main import main
from notify import compose
from notify.message import Message
from notify.outbox import OutboxNotifier, purge_outbox, read_outbox

NOW = datetime(2026, 11, 30, 9, 15, tzinfo=UTC)
PHONE = "+8613912345670"
EMAIL = "zhou.jinque@example.org"
CODE = "482913"
FIELDS = {"id", "channel", "to", "template", "locale", "subject", "body", "created_at"}


def login_code(channel: str, to: str) -> Message:
    return compose(
        "login_code",
        channel=channel,  # type: ignore[arg-type]
        to=to,
        locale="zh-CN",
        context={"programme": "星辰会员", "code": CODE, "minutes": 10},
    )


def request_received(to: str) -> Message:
    return compose(
        "request_received",
        channel="email",
        to=to,
        locale="en",
        context={
            "programme": "Xingchen",
            "request_id": "k3m5n7p2q4r6s2t4u6v2w4x6",
            "request_type": "access",
            "due_date": "2026-12-30",
        },
    )


@pytest.fixture
def usual_umask() -> Iterator[None]:
    """The usual umask, under which a file or directory made without a mode is world-readable."""
    previous = os.umask(0o022)
    try:
        yield
    finally:
        os.umask(previous)


@pytest.fixture
def home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    target = tmp_path / "home"
    monkeypatch.setenv("MEMBERGUARD_HOME", str(target))
    for name in ("OUTBOX_DIR", "EMAIL_TRANSPORT", "SMS_TRANSPORT"):
        monkeypatch.delenv(f"MEMBERGUARD_{name}", raising=False)
    return target


def mode(path: Path) -> int:
    return stat.S_IMODE(os.stat(path).st_mode)


def run(*args: str) -> tuple[int, str]:
    result = CliRunner().invoke(main, list(args))
    return result.exit_code, result.output


def test_a_message_is_one_0600_file_in_a_0700_directory(tmp_path: Path, usual_umask: None) -> None:
    directory = tmp_path / "outbox"
    OutboxNotifier(directory).send(login_code("sms", PHONE), now=NOW)
    (path,) = directory.iterdir()
    assert mode(directory) == 0o700
    assert mode(path) == 0o600
    assert path.name.endswith(".json") and path.name.startswith("20261130T091500")


def test_the_file_holds_the_whole_message_and_nothing_else(tmp_path: Path) -> None:
    message = login_code("email", EMAIL)
    OutboxNotifier(tmp_path).send(message, now=NOW)
    (path,) = tmp_path.iterdir()
    text = path.read_text(encoding="utf-8")
    record = json.loads(text)
    assert record == {
        "id": message.id,
        "channel": "email",
        "to": EMAIL,
        "template": "login_code",
        "locale": "zh-CN",
        "subject": message.subject,
        "body": message.body,
        "created_at": "2026-11-30T09:15:00+00:00",
    }
    assert set(record) == FIELDS
    assert "您的登录验证码是 482913" in text  # UTF-8, readable as it is


def test_messages_are_listed_oldest_first(tmp_path: Path) -> None:
    notifier = OutboxNotifier(tmp_path)
    later, earlier = login_code("sms", PHONE), login_code("sms", PHONE)
    notifier.send(later, now=NOW + timedelta(seconds=1))
    notifier.send(earlier, now=NOW)
    assert [m["id"] for m in read_outbox(tmp_path)] == [earlier.id, later.id]


# -- memberguard outbox list ----------------------------------------------------


@pytest.fixture
def filled(home: Path) -> list[Message]:
    sent = [
        login_code("sms", PHONE),
        login_code("email", EMAIL),
        request_received(EMAIL),
    ]
    notifier = OutboxNotifier(home / "outbox")
    for offset, message in enumerate(sent):
        notifier.send(message, now=NOW + timedelta(minutes=offset))
    return sent


def test_outbox_list_json_prints_the_whole_messages(filled: list[Message]) -> None:
    code, output = run("outbox", "list", "--json")
    assert code == 0, output
    listed = json.loads(output)
    assert [m["id"] for m in listed] == [m.id for m in filled]
    assert all(set(m) == FIELDS for m in listed)
    assert listed[0]["to"] == PHONE and CODE in listed[0]["body"]


def test_outbox_list_filters_by_template_and_keeps_the_newest(filled: list[Message]) -> None:
    code, output = run("outbox", "list", "--json", "--template", "login_code", "--last", "1")
    assert code == 0, output
    (only,) = json.loads(output)
    assert only["id"] == filled[1].id
    assert only["channel"] == "email" and CODE in only["body"]


def test_outbox_list_masks_recipients_and_shows_no_body(filled: list[Message]) -> None:
    code, output = run("outbox", "list")
    assert code == 0, output
    lines = output.splitlines()
    assert len(lines) == 3
    assert lines[0].startswith("2026-11-30T09:15:00+00:00  sms    login_code")
    assert lines[0].endswith(f"{filled[0].id}  139****5670")
    assert lines[1].endswith(f"{filled[1].id}  z***@example.org")
    assert "request_received" in lines[2]
    for secret in (PHONE, "13912345670", EMAIL, "zhou.jinque", CODE, "验证码"):
        assert secret not in output


def test_an_empty_outbox_says_so_and_where_it_is(home: Path) -> None:
    code, output = run("outbox", "list")
    assert code == 0
    assert output == f"outbox is empty ({home / 'outbox'})\n"
    code, output = run("outbox", "list", "--json")
    assert code == 0 and json.loads(output) == []


def test_a_filter_that_matches_nothing_says_how_many_there_are(
    home: Path, filled: list[Message]
) -> None:
    code, output = run("outbox", "list", "--template", "request_rejected")
    assert code == 0
    assert output == f"no message with template request_rejected among the 3 in {home / 'outbox'}\n"


def test_an_unreadable_message_file_is_one_error_line_without_its_content(
    home: Path, filled: list[Message]
) -> None:
    broken = home / "outbox" / "20261130T100000000000-broken.json"
    broken.write_bytes(b'{"to": "' + PHONE.encode() + b'", \xff')
    result = CliRunner().invoke(main, ["outbox", "list"])
    assert result.exit_code == 2
    assert result.output.startswith("memberguard: error: cannot read the outbox")
    assert "UnicodeDecodeError" in result.output and PHONE not in result.output
    assert result.exception is None or isinstance(result.exception, SystemExit)


# -- memberguard outbox code ----------------------------------------------------


def test_outbox_code_prints_the_newest_sign_in_code_alone(home: Path) -> None:
    notifier = OutboxNotifier(home / "outbox")
    notifier.send(login_code("sms", PHONE), now=NOW)
    newer = compose(
        "login_code",
        channel="sms",
        to=PHONE,
        locale="en",
        context={"programme": "Xingchen 2026", "code": "007311", "minutes": 10},
    )
    notifier.send(newer, now=NOW + timedelta(minutes=1))
    notifier.send(request_received(EMAIL), now=NOW + timedelta(minutes=2))  # not a sign-in
    assert run("outbox", "code") == (0, "007311\n")


def test_outbox_code_fails_when_no_sign_in_code_was_sent(home: Path) -> None:
    OutboxNotifier(home / "outbox").send(request_received(EMAIL), now=NOW)
    code, output = run("outbox", "code")
    assert code == 1
    assert "no sign-in code in the outbox" in output


# -- the notify.outbox job ---------------------------------------------------------


def test_messages_older_than_the_cutoff_are_deleted_and_newer_ones_kept(tmp_path: Path) -> None:
    notifier = OutboxNotifier(tmp_path)
    old, edge, new = (login_code("sms", PHONE) for _ in range(3))
    notifier.send(old, now=NOW - timedelta(days=8))
    notifier.send(edge, now=NOW - timedelta(days=7))
    notifier.send(new, now=NOW - timedelta(days=6))
    assert purge_outbox(tmp_path, sent_before=NOW - timedelta(days=7)) == 1
    assert [m["id"] for m in read_outbox(tmp_path)] == [edge.id, new.id]
    assert purge_outbox(tmp_path, sent_before=NOW - timedelta(days=7)) == 0


def test_the_cutoff_is_compared_in_utc_whatever_zone_it_is_given_in(tmp_path: Path) -> None:
    OutboxNotifier(tmp_path).send(login_code("sms", PHONE), now=NOW)
    shanghai = timezone(timedelta(hours=8))
    # 09:15 UTC is 17:15 in Shanghai: a cutoff of 17:00 there is before the message.
    assert purge_outbox(tmp_path, sent_before=NOW.replace(hour=17, minute=0, tzinfo=shanghai)) == 0
    assert purge_outbox(tmp_path, sent_before=NOW.replace(hour=17, minute=30, tzinfo=shanghai)) == 1


def test_purging_a_missing_outbox_deletes_nothing(tmp_path: Path) -> None:
    assert purge_outbox(tmp_path / "never-made", sent_before=NOW) == 0
