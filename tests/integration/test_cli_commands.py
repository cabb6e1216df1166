"""The operator's CLI on the embedded default (SQLite and a local key file)."""

from __future__ import annotations

import json
import os
import re
import shutil
import stat
from collections.abc import Iterator
from pathlib import Path

import pytest
from click.testing import CliRunner

from cli.main import main
from policies.loader import default_policy_dir


@pytest.fixture
def home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    target = tmp_path / "home"
    monkeypatch.setenv("MEMBERGUARD_HOME", str(target))
    monkeypatch.delenv("MEMBERGUARD_DATABASE_URL", raising=False)
    monkeypatch.delenv("MEMBERGUARD_KEY_PROVIDER", raising=False)
    return target


def run(*args: str) -> tuple[int, str]:
    result = CliRunner().invoke(main, list(args))
    return result.exit_code, result.output


@pytest.mark.parametrize(
    "command",
    [
        [],
        ["init"],
        ["serve"],
        ["demo"],
        ["clients"],
        ["clients", "add"],
        ["clients", "list"],
        ["clients", "revoke"],
        ["clients", "webhook"],
        ["policy", "check"],
        ["audit", "verify"],
        ["keys", "rotate"],
        ["rights", "list"],
        ["rights", "extend"],
        ["holds", "add"],
        ["holds", "release"],
        ["worker"],
        ["worker", "status"],
    ],
)
def test_every_command_has_help(command: list[str]) -> None:
    code, output = run(*command, "--help")
    assert code == 0
    assert "Usage:" in output


def test_init_creates_a_0600_key_file_and_is_idempotent(home: Path) -> None:
    code, output = run("init")
    assert code == 0, output
    key_file = home / "keys" / "keyring.json"
    assert stat.S_IMODE(os.stat(key_file).st_mode) == 0o600
    assert "created" in output
    before = key_file.read_bytes()
    code, output = run("init")
    assert code == 0 and "exists" in output
    assert key_file.read_bytes() == before


def mode(path: Path) -> int:
    return stat.S_IMODE(os.stat(path).st_mode)


@pytest.fixture
def usual_umask() -> Iterator[None]:
    """The usual umask, under which a file or directory made without a mode is world-readable."""
    previous = os.umask(0o022)
    try:
        yield
    finally:
        os.umask(previous)


@pytest.mark.usefixtures("usual_umask")
def test_init_creates_a_0600_database_and_a_0700_checkpoint_directory(home: Path) -> None:
    code, output = run("init")
    assert code == 0, output
    # Created 0600 before anything opened it, not tightened afterwards.
    assert "now mode 0600" not in output
    assert mode(home / "memberguard.db") == 0o600
    assert mode(home / "checkpoints") == 0o700
    assert mode(home) == 0o700


@pytest.mark.usefixtures("usual_umask")
def test_init_tightens_a_database_and_checkpoint_directory_readable_by_others(
    home: Path,
) -> None:
    run("init")
    (home / "memberguard.db").chmod(0o644)
    (home / "checkpoints").chmod(0o755)
    code, output = run("init")
    assert code == 0, output
    assert "now mode 0600" in output
    assert mode(home / "memberguard.db") == 0o600
    assert mode(home / "checkpoints") == 0o700


@pytest.mark.usefixtures("usual_umask")
def test_the_demo_database_and_published_checkpoints_are_private(home: Path) -> None:
    code, output = run("demo", "--members", "20", "--no-serve")
    assert code == 0, output
    assert mode(home / "memberguard.db") == 0o600
    assert mode(home / "checkpoints") == 0o700
    # A checkpoint directory that is gone is made again, private, by the next publish.
    shutil.rmtree(home / "checkpoints")
    code, output = run("audit", "checkpoint")
    assert code == 0, output
    assert mode(home / "checkpoints") == 0o700
    published = sorted((home / "checkpoints").glob("*.checkpoint"))
    assert published and {mode(path) for path in published} == {0o600}


def test_clients_add_prints_the_key_once_and_list_never_shows_it(home: Path) -> None:
    run("init")
    code, output = run(
        "clients",
        "add",
        "crm",
        "--role",
        "client",
        "--purpose",
        "membership",
        "--scope",
        "members:write",
        "--json",
    )
    assert code == 0, output
    created = json.loads(output)
    assert created["key"].startswith("mg_") and created["name"] == "crm"
    code, listed = run("clients", "list")
    assert code == 0 and "crm" in listed and created["key"] not in listed
    code, output = run("clients", "add", "crm", "--role", "client")
    assert code == 1 and "already exists" in output
    code, output = run("clients", "add", "x", "--role", "client", "--purpose", "telepathy")
    assert code == 1
    assert "purpose not in the policy: telepathy;" in output
    assert "the policy's purposes are: analytics, birthday_benefits," in output
    code, output = run("clients", "revoke", "crm")
    assert code == 0 and "revoked" in output
    code, listed = run("clients", "list", "--json")
    assert json.loads(listed)[0]["revoked_at"] is not None


def test_clients_webhook_sets_rotates_shows_and_removes_printing_each_secret_once(
    home: Path,
) -> None:
    assert run("init")[0] == 0
    assert run("clients", "add", "crm", "--role", "client")[0] == 0
    url = "https://93.184.215.14/hooks/crm?token=t0k3n"  # a public address: no DNS needed
    code, output = run("clients", "webhook", "crm", url)
    assert code == 0, output
    assert "webhook of crm set: https://93.184.215.14 (audit entry" in output
    (secret,) = re.findall(r"secret \(shown once\): (whsec_\S+)", output)
    assert "t0k3n" not in output
    code, output = run("clients", "webhook", "crm", "--rotate")
    assert code == 0, output
    assert "the previous one also signs until" in output
    (rotated,) = re.findall(r"secret \(shown once\): (whsec_\S+)", output)
    assert rotated != secret
    code, output = run("clients", "webhook", "crm")
    assert code == 0, output
    shown = json.loads(output)
    assert shown["origin"] == "https://93.184.215.14" and shown["rotated_at"] is not None
    assert secret not in output and rotated not in output and "t0k3n" not in output
    code, output = run("clients", "webhook", "crm", "http://127.0.0.1/hook")
    assert code == 1 and "must be https://" in output and "127.0.0.1" not in output
    code, output = run("clients", "webhook", "crm", url, "--remove")
    assert code == 2 and "one at a time" in output
    code, output = run("clients", "webhook", "crm", "--remove")
    assert code == 0 and "removed" in output
    code, output = run("clients", "webhook", "crm", "--rotate")
    assert code == 1 and "has no webhook" in output


def test_policy_check_accepts_the_default_and_names_problems(tmp_path: Path) -> None:
    code, output = run("policy", "check")
    assert code == 0 and "policy OK: 12 fields, 11 purposes" in output
    bad = tmp_path / "bad.toml"
    bad.write_text(
        '[programme]\nname="x"\ncontroller="c"\ncontroller_contact="c"\njurisdiction="CN"\n'
        'policy_url="u"\n[fields.phone]\ntype="telephone"\ncategory="contact"\n'
    )
    code, output = run("policy", "check", str(bad))
    assert code == 1
    assert f"{bad}: fields.phone.type:" in output


def test_policy_check_warns_when_a_pseudonymous_purpose_releases_a_singling_out_value(
    tmp_path: Path,
) -> None:
    code, output = run("policy", "check")
    assert code == 0 and "warning:" not in output  # the default analytics is generalised
    policy = tmp_path / "policy"
    shutil.copytree(default_policy_dir(), policy)
    purposes = policy / "purposes.toml"
    generalised = 'points_balance = "band", registered_at = "year"'
    assert generalised in purposes.read_text()
    purposes.write_text(
        purposes.read_text().replace(
            generalised, 'points_balance = "clear", registered_at = "clear"'
        )
    )
    code, output = run("policy", "check", str(policy))
    assert code == 0  # a warning, not an error: the author may know their data
    warnings = [line for line in output.splitlines() if line.startswith("warning: ")]
    assert len(warnings) == 2
    assert any("purposes.analytics.fields.points_balance" in w and "'band'" in w for w in warnings)
    assert any("purposes.analytics.fields.registered_at" in w and "'year'" in w for w in warnings)


def test_demo_loads_members_prints_keys_and_a_verified_log(home: Path) -> None:
    code, output = run("demo", "--members", "120", "--no-serve")
    assert code == 0, output
    assert "120 loaded" in output
    for name in ("crm", "sms_gateway", "analytics", "pos", "dpo", "admin"):
        assert f"  {name} " in output
    assert "curl" in output and "export A=" in output
    code, output = run("audit", "verify")
    assert code == 0 and output.startswith("OK:")
    # Again on the same home: nothing reloaded, fresh keys for the same clients.
    code, output = run("demo", "--members", "120", "--no-serve")
    assert code == 0 and "already loaded" in output


def test_key_rotation_rewraps_and_reads_still_work(home: Path) -> None:
    run("demo", "--members", "30", "--no-serve")
    code, output = run("keys", "rotate")
    assert code == 0, output
    assert "KEK version 2 added" in output and "keys rewrap" in output
    code, output = run("keys", "rewrap")
    assert code == 0, output
    assert "re-wrapped 30 data keys" in output and "{2: 30}" in output
    code, output = run("audit", "verify")
    assert code == 0

    from sqlalchemy import select

    from api.app import build_services
    from audit.models import AuditEntry
    from core.settings import Settings
    from vault.members import load_sealed
    from vault.models import VaultMember

    services = build_services(Settings())
    with services.uow() as uow:
        member = uow.session.query(VaultMember.id).first()[0]  # type: ignore[index]
        sealed = load_sealed(uow.session, [member], ["name", "phone"])[member]
        rewraps = uow.session.scalars(
            select(AuditEntry.entry).where(AuditEntry.action == "keys.rewrap")
        ).all()
    assert set(sealed.open(services.keyring)) == {"name", "phone"}
    # The re-wrap is a write: it committed with an audit entry naming what it did.
    assert len(rewraps) == 1 and b'"rewrapped":30' in rewraps[0]
    code, output = run("keys", "rewrap")  # nothing left to re-wrap: no entry
    assert "re-wrapped 0 data keys" in output


def test_a_world_readable_key_file_is_refused_with_a_clear_error(home: Path) -> None:
    run("init")
    (home / "keys" / "keyring.json").chmod(0o644)
    code, output = run("clients", "list")
    assert code == 2
    assert f"chmod 600 {home / 'keys' / 'keyring.json'}" in output and "Traceback" not in output


def test_a_missing_key_file_points_to_init(home: Path) -> None:
    code, output = run("clients", "list")
    assert code == 2 and "memberguard init" in output


def test_env_providers_init_with_generated_keys(
    home: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    code, keyring = run("keys", "generate")
    assert code == 0
    code, signer_output = run("keys", "generate-signer")
    assert code == 0
    signer = signer_output.splitlines()[0]
    assert signer.startswith("PRIVATE+KEY+memberguard/audit-log+")
    monkeypatch.setenv("MEMBERGUARD_KEY_PROVIDER", "env")
    monkeypatch.setenv("MEMBERGUARD_KEYRING", keyring.strip())
    monkeypatch.setenv("MEMBERGUARD_AUDIT_SIGNER", signer)
    code, output = run("init")
    assert code == 0, output
    assert not (home / "keys").exists()
    code, output = run("audit", "public-key")
    assert code == 0 and output.startswith("memberguard/audit-log+")


def test_init_with_env_provider_and_no_signer_says_how_to_make_one(
    home: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    code, keyring = run("keys", "generate")
    monkeypatch.setenv("MEMBERGUARD_KEY_PROVIDER", "env")
    monkeypatch.setenv("MEMBERGUARD_KEYRING", keyring.strip())
    monkeypatch.delenv("MEMBERGUARD_AUDIT_SIGNER", raising=False)
    code, output = run("init")
    assert code == 2 and "keys generate-signer" in output
