"""The export bench's baselines release what the gated export releases, no more, no less.

``bench.export`` fails its run when A and B differ; these tests check that the
baselines are built so that they agree on a home where they should (groups of
members sharing the anonymised values, some smaller than k), and that the
comparison notices a difference. No timings are asserted. The children run
in-process here, on a SQLite file of their own (like ``test_bench_http``).
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from bench import export
from bench.baseline import build_plain_table
from cli.demo import ensure_clients
from cli.demo_data import generate_members
from cli.main import run_init
from consent.registry import ImportedConsent
from core.settings import Settings
from gate.context import Services, build_services
from gate.imports import import_members

COLLECTED = datetime(2026, 1, 5, tzinfo=UTC)

# (group size, the values every member of the group shares before generalisation)
GROUPS = [
    (6, {"gender": "女", "tier": "金卡", "points_balance": 1200, "registered_at": "2021-03-04"}),
    (5, {"gender": "男", "tier": "普通", "points_balance": 300, "registered_at": "2024-07-01"}),
    (5, {"gender": "男", "tier": "钻石", "points_balance": 60_000, "registered_at": "2019-01-01"}),
    (3, {"gender": "女", "tier": "银卡", "points_balance": 7_000, "registered_at": "2023-05-05"}),
    (
        1,
        {"gender": "未知", "tier": "银卡", "points_balance": 25_000, "registered_at": "2022-05-05"},
    ),
]


@pytest.fixture
def home(tmp_path: Path) -> Iterator[tuple[Services, dict[str, str]]]:
    settings = Settings(home=tmp_path / "home", database_url=None)
    run_init(settings, echo=False)
    services = build_services(settings)
    generated = iter(generate_members(sum(size for size, _ in GROUPS), seed=11))
    batch: list[dict[str, Any]] = []
    for size, shared in GROUPS:
        for n in range(size):
            # Exact values differ inside a group (the views generalise them away).
            member = {**next(generated), **shared, "channel": "app"}
            member["points_balance"] = shared["points_balance"] + n
            member["registered_at"] = shared["registered_at"][:5] + f"0{1 + n % 9}-1{n % 9}"
            batch.append(member)

    def history(member_id: str, _member: Any) -> list[ImportedConsent]:
        # Every other member consents to personalization as well.
        events = [ImportedConsent(member_id, "analytics", "granted", "app", COLLECTED)]
        if member_id < "m":
            events.append(
                ImportedConsent(member_id, "personalization", "granted", "app", COLLECTED)
            )
        return events

    import_members(services, batch, source="test", history=history)
    keys = ensure_clients(services)
    build_plain_table(services, settings.resolved_database_url)
    try:
        yield services, keys
    finally:
        services.dispose()


def children(
    services: Services, keys: dict[str, str], purpose: str, monkeypatch: pytest.MonkeyPatch
) -> tuple[dict[str, Any], dict[str, Any]]:
    monkeypatch.setenv(export.KEY_ENV, keys[export.client_for(purpose)])
    gated = export._child_gated(services, purpose)
    if services.policy.purposes[purpose].member_id == "pseudonym":
        return gated, export._child_plain_anonymised(services, purpose)
    return gated, export._child_plain(services, purpose)


def test_the_anonymised_baseline_releases_the_same_bytes_as_the_gated_export(
    home: tuple[Services, dict[str, str]], monkeypatch: pytest.MonkeyPatch
) -> None:
    services, keys = home
    gated, plain = children(services, keys, export.ANONYMISED_PURPOSE, monkeypatch)
    assert gated["released"] == plain["released"] == 6 + 5 + 5
    assert gated["suppressed_small_groups"] == 3 + 1
    assert gated["stream_sha256"] == plain["stream_sha256"]
    # One decision unit of work for the whole export, after a plan outside it.
    assert gated["uow_count"] == 1
    assert gated["plan_seconds"] is not None


def test_the_batched_baseline_releases_the_same_members_in_the_same_order(
    home: tuple[Services, dict[str, str]], monkeypatch: pytest.MonkeyPatch
) -> None:
    services, keys = home
    gated, plain = children(services, keys, export.BATCHED_PURPOSE, monkeypatch)
    assert 0 < gated["released"] == plain["released"] < 20
    assert gated["members_sha256"] == plain["members_sha256"]
    assert gated["uow_count"] == gated["batches"] >= 1


def test_a_difference_between_gated_and_plain_fails_the_run() -> None:
    same = {"released": 2, "stream_sha256": "a"}
    export._same([same], [dict(same)], "stream_sha256", "rows")
    with pytest.raises(RuntimeError, match="released different rows"):
        export._same([same], [{"released": 2, "stream_sha256": "b"}], "stream_sha256", "rows")
