"""KEK rotation while servers run: `keys rotate`, then `keys rewrap`, without a restart;
then `keys retire`, once nothing needs the old KEK.

A server holds the keyring it loaded. Before, a re-wrap under a KEK it did not
hold made every read of a re-wrapped member fail (503), and the members it
created went on being wrapped under the old KEK. Now a server loads the keyring
again when it meets an unknown KEK version or its key file changed, and
``keys rewrap`` refuses while a running server still wraps under an older KEK.
"""

from __future__ import annotations

import json
import os
import stat
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from click.testing import CliRunner, Result
from fastapi.testclient import TestClient
from sqlalchemy import select

from api.app import create_app
from audit.models import AuditEntry
from cli.main import main, run_init
from core.clock import Clock
from core.settings import Settings
from gate.clients import register_client
from gate.context import Services, build_services
from gate.keyholders import KeyringBehind, KeyringHeartbeat
from gate.operator import KekInUse, data_keys_by_version, retire_kek, rewrap_data_keys
from gate.reads import Decided, ReadRequest, decide_reads
from gate.writes import create_member_record
from principals import OPERATOR_ACTOR
from principals.clients import authenticate
from tests.api.conftest import MEMBER
from tests.conftest import NOW, FreshDatabase, ticking_clock
from vault.keys import EnvKeyring, Keyring
from vault.models import VaultKeyringHolder


@dataclass
class Deployment:
    settings: Settings
    env: dict[str, str | None]
    built: list[Services]

    def services(self, clock: Clock | None = None, **changes: object) -> Services:
        """What a server (or a CLI command) builds when it starts: the keyring as it is now."""
        settings = self.settings.model_copy(update=changes) if changes else self.settings
        services = build_services(settings, clock=clock or ticking_clock())
        self.built.append(services)
        return services

    def cli(self, *args: str) -> Result:
        return CliRunner().invoke(main, list(args), env=self.env)


@pytest.fixture
def deployment(fresh_database: FreshDatabase, tmp_path: Path) -> Iterator[Deployment]:
    """A home with a local key file, on the test's database."""
    home = tmp_path / "home"
    settings = Settings(home=home, database_url=fresh_database.url)
    run_init(settings, echo=False)
    env: dict[str, str | None] = {
        "MEMBERGUARD_HOME": str(home),
        "MEMBERGUARD_DATABASE_URL": fresh_database.url,
        "MEMBERGUARD_KEY_PROVIDER": None,
        "MEMBERGUARD_KEY_PATH": None,
        "MEMBERGUARD_KEYRING_LIVE_SECONDS": None,
    }
    built: list[Services] = []
    yield Deployment(settings, env, built)
    for services in built:
        services.dispose()


def crm_key(services: Services) -> str:
    return register_client(
        services,
        actor=OPERATOR_ACTOR,
        name="crm",
        role="client",
        purposes=["customer_service"],
        scopes=["members:write"],
        request_id=None,
    ).key


def create(services: Services, key: str) -> str:
    with services.reading() as session:
        actor = authenticate(session, key)
    return create_member_record(services, actor=actor, values=MEMBER, request_id=None).id


def read(services: Services, key: str, member: str) -> dict[str, object]:
    request = ReadRequest(
        credential=key,
        member_id=member,
        purpose="customer_service",
        request_id=None,
        roles=("client",),
    )
    (outcome,) = decide_reads(services, [request])
    assert isinstance(outcome, Decided), outcome
    return outcome.release(services).fields


# -- (i) a server built before the rotation keeps reading ---------------------------


def test_a_server_built_before_rotation_reads_a_member_rewrapped_after_it(
    deployment: Deployment,
) -> None:
    server = deployment.services()
    key = crm_key(server)
    member = create(server, key)
    assert read(server, key, member)["name"] == "张*"
    assert deployment.cli("keys", "rotate").exit_code == 0
    # No server has recorded itself here, so nothing holds the re-wrap back.
    result = deployment.cli("keys", "rewrap")
    assert result.exit_code == 0, result.output
    assert data_keys_by_version(server) == {2: 1}
    # The server never restarted: it meets KEK 2 and loads the keyring again.
    assert read(server, key, member)["name"] == "张*"
    # And what it creates from now on is wrapped under the newest KEK.
    create(server, key)
    assert data_keys_by_version(server) == {2: 2}


def test_a_rewrap_by_a_process_on_the_old_keyring_never_moves_a_key_down(
    deployment: Deployment,
) -> None:
    stale = deployment.services()  # loaded KEK 1 and has not met KEK 2 yet
    create(stale, crm_key(stale))
    assert deployment.cli("keys", "rotate").exit_code == 0
    assert deployment.cli("keys", "rewrap").exit_code == 0
    assert data_keys_by_version(stale) == {2: 1}
    # Its batch's keyring says KEK 1 is the newest: a key under KEK 2 stays.
    assert rewrap_data_keys(stale).rewrapped == 0
    assert data_keys_by_version(stale) == {2: 1}


# -- (ii) the unsafe sequence is refused --------------------------------------------


def holders(services: Services) -> list[tuple[int, int]]:
    with services.reading() as session:
        rows = session.scalars(select(VaultKeyringHolder)).all()
        return [(row.pid, row.kek_version) for row in rows]


def test_rewrap_waits_until_a_running_server_has_loaded_the_rotated_key_file(
    deployment: Deployment,
) -> None:
    server = deployment.services()
    create(server, crm_key(server))
    heartbeat = KeyringHeartbeat(server)
    heartbeat.start()  # what `serve` does at start-up; the next beat is a day away
    try:
        assert [version for _pid, version in holders(server)] == [1]
        assert deployment.cli("keys", "rotate").exit_code == 0
        operator = deployment.services()  # `keys rewrap`, holding KEK 2
        with pytest.raises(KeyringBehind) as refused:
            rewrap_data_keys(operator)
        assert "wrap new data keys under a KEK older than version 2" in refused.value.detail
        assert data_keys_by_version(operator) == {1: 1}  # nothing was re-wrapped
        heartbeat.beat()  # the server notices the rotated key file and says so
        assert server.keyring.active_version == 2
        assert [version for _pid, version in holders(server)] == [2]
        assert rewrap_data_keys(operator).by_version == {2: 1}
    finally:
        heartbeat.stop()
    assert holders(server) == []  # a stopped server leaves no row behind


def test_rewrap_is_refused_while_a_server_on_the_env_provider_runs_the_old_keyring(
    deployment: Deployment, monkeypatch: pytest.MonkeyPatch
) -> None:
    old = Keyring.generate()
    monkeypatch.setenv("MEMBERGUARD_KEYRING", EnvKeyring.encode(old))
    signer = deployment.settings.resolved_signer_path.read_text(encoding="ascii").strip()
    monkeypatch.setenv("MEMBERGUARD_AUDIT_SIGNER", signer)
    server = deployment.services(key_provider="env")
    heartbeat = KeyringHeartbeat(server)
    heartbeat.start()
    try:
        # The operator deploys the rotated keyring; this server was not restarted.
        monkeypatch.setenv("MEMBERGUARD_KEYRING", EnvKeyring.encode(old.with_new_kek()))
        operator = deployment.services(key_provider="env")
        heartbeat.beat()  # its environment cannot change: still KEK 1
        with pytest.raises(KeyringBehind):
            rewrap_data_keys(operator)
    finally:
        heartbeat.stop()  # the restart
    assert rewrap_data_keys(operator).rewrapped == 0


def test_a_server_not_seen_within_the_live_window_does_not_hold_rewrap_back(
    deployment: Deployment,
) -> None:
    server = deployment.services(clock=ticking_clock(NOW))
    heartbeat = KeyringHeartbeat(server)
    heartbeat.start()
    try:
        assert deployment.cli("keys", "rotate").exit_code == 0
        live = deployment.settings.keyring_live_seconds
        soon = deployment.services(clock=ticking_clock(NOW + timedelta(seconds=live - 5)))
        with pytest.raises(KeyringBehind):
            rewrap_data_keys(soon)
        # Killed without stopping: its row stays, but it is not seen again.
        later = deployment.services(clock=ticking_clock(NOW + timedelta(seconds=live + 5)))
        assert rewrap_data_keys(later).rewrapped == 0
    finally:
        heartbeat.stop()


def test_keys_rewrap_refuses_with_one_line_naming_the_server(deployment: Deployment) -> None:
    # Recorded by a server whose clock runs far ahead: it counts as running whatever
    # the date is where the CLI runs (a stopped-looking server is the unsafe guess).
    ahead = datetime(9000, 1, 1, tzinfo=UTC)
    server = deployment.services(clock=ticking_clock(ahead))
    create(server, crm_key(server))
    heartbeat = KeyringHeartbeat(server)
    heartbeat.start()
    try:
        # Rotated, and re-wrapped before the server's next beat: it still says KEK 1.
        assert deployment.cli("keys", "rotate").exit_code == 0
        result = deployment.cli("keys", "rewrap")
        assert result.exit_code == 1, result.output
        # The progress bar's label, then the refusal on one line.
        *_label, line = result.stderr.strip().splitlines()
        assert line.startswith("memberguard: error: not re-wrapping: 1 running server(s) "), line
        assert f"pid {heartbeat.process.pid} (KEK 1, seen 9000-01-01T" in line  # type: ignore[union-attr]
        assert "error" not in "".join(_label)
        assert "Traceback" not in result.output
        assert data_keys_by_version(server) == {1: 1}
    finally:
        heartbeat.stop()


def test_a_running_app_records_the_kek_it_wraps_under_until_it_stops(services: Services) -> None:
    with TestClient(create_app(services=services)) as client:
        assert client.get("/healthz").status_code == 200
        assert holders(services) == [(os.getpid(), services.keyring.active_version)]
    assert holders(services) == []


# -- (iii) retiring a KEK: destroyed once nothing needs it ---------------------------


def retire_entries(services: Services) -> list[dict[str, object]]:
    with services.reading() as session:
        rows = session.scalars(
            select(AuditEntry.entry).where(AuditEntry.action == "keys.retire")
        ).all()
    return [json.loads(bytes(row)) for row in rows]


def key_file_versions(deployment: Deployment) -> list[int]:
    document = json.loads(deployment.settings.resolved_key_path.read_bytes())
    return sorted(int(version) for version in document["keks"])


def test_retire_refuses_while_a_data_key_is_wrapped_under_the_version(
    deployment: Deployment,
) -> None:
    server = deployment.services()
    create(server, crm_key(server))
    assert deployment.cli("keys", "rotate").exit_code == 0
    before = deployment.settings.resolved_key_path.read_bytes()
    result = deployment.cli("keys", "retire", "1")
    assert result.exit_code == 1, result.output
    assert result.stderr.strip() == (
        "memberguard: error: not retiring KEK version 1: 1 data key(s) are still wrapped "
        "under it; run `memberguard keys rewrap` first"
    )
    assert deployment.settings.resolved_key_path.read_bytes() == before  # nothing changed
    assert retire_entries(server) == []


def test_after_rotate_and_rewrap_retire_destroys_the_version_and_every_member_reads(
    deployment: Deployment,
) -> None:
    server = deployment.services()  # a running server, built on KEK 1
    key = crm_key(server)
    members = [create(server, key) for _ in range(3)]
    assert deployment.cli("keys", "rotate").exit_code == 0
    assert deployment.cli("keys", "rewrap").exit_code == 0
    result = deployment.cli("keys", "retire", "1")
    assert result.exit_code == 0, result.output
    assert "KEK version 1 destroyed" in result.stdout and "versions left: 2." in result.stdout
    assert key_file_versions(deployment) == [2]
    assert stat.S_IMODE(deployment.settings.resolved_key_path.stat().st_mode) == 0o600
    # The running server drops the retired KEK at its next look at the key file ...
    assert server.keys.refresh() is True
    assert sorted(server.keyring.keks) == [2]
    # ... and every member still reads, there and in a process started now.
    fresh = deployment.services()
    for member in members:
        assert read(server, key, member)["name"] == "张*"
        assert read(fresh, key, member)["name"] == "张*"
    (entry,) = retire_entries(fresh)
    assert entry["detail"] == {"version": 1, "provider": "local", "remaining": [2]}
    assert (entry["actor"], entry["decision"]) == (OPERATOR_ACTOR.id, "permit")
    assert f"(audit entry {entry['seq']})" in result.stdout
    verified = deployment.cli("audit", "verify")
    assert verified.exit_code == 0 and verified.stdout.startswith("OK:"), verified.output
    # Retired means gone: a second retirement finds nothing to destroy.
    again = deployment.cli("keys", "retire", "1")
    assert again.exit_code == 1
    assert "KEK version 1 is not in the keyring (versions: 2)" in again.stderr


def test_retiring_the_active_version_is_refused(deployment: Deployment) -> None:
    result = deployment.cli("keys", "retire", "1")
    assert result.exit_code == 1
    assert "not retiring KEK version 1: it is the active version" in result.stderr
    assert "Traceback" not in result.output
    assert key_file_versions(deployment) == [1]
    assert retire_entries(deployment.services()) == []


def test_retire_waits_until_no_running_server_wraps_under_the_version(
    deployment: Deployment,
) -> None:
    server = deployment.services()
    heartbeat = KeyringHeartbeat(server)
    heartbeat.start()  # wraps under KEK 1; the next beat is a day away
    try:
        assert deployment.cli("keys", "rotate").exit_code == 0
        operator = deployment.services()
        with pytest.raises(KekInUse) as refused:
            retire_kek(operator, 1)
        pid = heartbeat.process.pid  # type: ignore[union-attr]
        assert "1 running server(s) still wrap new data keys under it: " in refused.value.detail
        assert f"pid {pid}" in refused.value.detail
        assert key_file_versions(deployment) == [1, 2]
        heartbeat.beat()  # the server loads KEK 2 and wraps under it from now on
        assert retire_kek(operator, 1).keyring.keks.keys() == {2}
        heartbeat.beat()  # and forgets KEK 1 at its next beat
        assert sorted(server.keyring.keks) == [2]
    finally:
        heartbeat.stop()


def test_retire_with_the_env_provider_prints_the_keyring_to_deploy(
    deployment: Deployment, monkeypatch: pytest.MonkeyPatch
) -> None:
    rotated = Keyring.generate().with_new_kek()
    monkeypatch.setenv("MEMBERGUARD_KEYRING", EnvKeyring.encode(rotated))
    signer = deployment.settings.resolved_signer_path.read_text(encoding="ascii").strip()
    monkeypatch.setenv("MEMBERGUARD_AUDIT_SIGNER", signer)
    env = {**deployment.env, "MEMBERGUARD_KEY_PROVIDER": "env"}
    result = CliRunner().invoke(main, ["keys", "retire", "1"], env=env)
    assert result.exit_code == 0, result.output
    printed = EnvKeyring("K", {"K": result.stdout.strip()}).load()
    assert printed == rotated.without_kek(1)
    assert "restart them, then delete every copy of the old value" in result.stderr
    (entry,) = retire_entries(deployment.services(key_provider="env"))
    assert entry["detail"] == {"version": 1, "provider": "env", "remaining": [2]}
