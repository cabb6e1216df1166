"""The typed audit actions: one table of what each releases, one builder per action,
and no entry or commit built anywhere else in the product's code."""

from __future__ import annotations

import ast
import inspect
import re
from pathlib import Path

import pytest

from audit import actions
from audit.actions import Action, Release, released
from policies.decide import Decision
from principals import OPERATOR_ACTOR, Actor

ROOT = Path(__file__).resolve().parents[2]
PRODUCT = (
    "api",
    "audit",
    "breach",
    "cli",
    "consent",
    "core",
    "feed",
    "gate",
    "policies",
    "notify",
    "principals",
    "rights",
    "vault",
)
CLIENT = Actor(id="c1", name="crm", role="client", kind="client", purposes=frozenset({"p"}))
PERMIT = Decision("permit", "legal-basis:contract", "customer_service", {"phone": "masked"})
DENY = Decision("deny", "consent-required", "marketing_sms")


def product_sources() -> list[Path]:
    return sorted(p for package in PRODUCT for p in (ROOT / package).rglob("*.py"))


def builders() -> dict[str, object]:
    return {
        name: fn
        for name, fn in vars(actions).items()
        if inspect.isfunction(fn) and fn.__module__ == actions.__name__ and not name.startswith("_")
    }


def test_every_action_says_what_it_releases() -> None:
    assert set(actions._RELEASES) == set(Action)


def test_every_action_has_a_builder_that_writes_it() -> None:
    source = inspect.getsource(actions)
    for action in Action:
        assert f"Action.{action.name}," in source or f"Action.{action.name}\n" in source, action


@pytest.mark.parametrize(
    ("record", "expected"),
    [
        (
            actions.member_read(
                CLIENT,
                policy="v",
                decision=PERMIT,
                member_id="m1",
                released_views={"phone": "masked"},
                request_id=None,
            ),
            (Release.FIELDS, {"phone": "masked"}),
        ),
        (
            actions.member_read(
                CLIENT,
                policy="v",
                decision=DENY,
                member_id="m1",
                released_views={},
                request_id=None,
            ),
            (Release.NONE, {}),
        ),
        (
            actions.members_looked_up(
                CLIENT,
                policy="v",
                decision=PERMIT,
                by="phone",
                matched=1,
                admitted=["m1"],
                request_id=None,
            ),
            (Release.IDENTITY, {}),
        ),
        (
            actions.consent_read(CLIENT, policy="v", member_id="m1", request_id=None),
            (Release.CONSENT, {}),
        ),
        (
            actions.member_created(
                CLIENT, policy="v", member_id="m1", fields=["phone"], request_id=None
            ),
            (Release.NONE, {}),
        ),
        (
            actions.consent_changed(
                CLIENT,
                policy="v",
                member_id="m1",
                purposes=["marketing_sms"],
                status="granted",
                channel="app",
                notice_versions={"marketing_sms": "n1"},
                receipt_id=None,
                request_id=None,
            ),
            (Release.CONSENT, {}),
        ),
    ],
)
def test_released_reads_what_a_stored_entry_let_leave(
    record: actions.Record, expected: tuple[Release, dict[str, str]]
) -> None:
    entry = {
        "action": str(record.action),
        "decision": record.decision,
        "fields": record.fields or {},
    }
    assert released(entry) == expected


def test_an_unknown_action_is_an_error_not_a_release_of_nothing() -> None:
    with pytest.raises(actions.UnknownAction):
        released({"seq": 9, "action": "member.teleport", "decision": "permit"})


def test_builders_record_the_actors_kind() -> None:
    record = actions.client_revoked(OPERATOR_ACTOR, policy="v", client_id="c1", request_id=None)
    assert (record.actor, record.actor_role, record.actor_kind) == ("operator", "admin", "staff")


def test_there_is_one_builder_per_action() -> None:
    # Every public function of the module but ``released`` builds an entry.
    names = set(builders()) - {"released"}
    assert "member_read" in names and "checkpoint_cut" in names
    assert len(names) == len(Action)


def test_the_readme_lists_every_action_with_its_builder() -> None:
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    table = readme[readme.index("## Audit actions") :]
    listed = set()
    for name, builder in builders().items():
        for member in re.findall(r"Action\.([A-Z_]+)", inspect.getsource(builder)):  # type: ignore[arg-type]
            assert f"| `{Action[member].value}` | `{name}` |" in table, (member, name)
            listed.add(Action[member])
    assert listed == set(Action)


def _calls(path: Path, name: str, *, allowed_receiver: str | None = None) -> list[int]:
    """Lines calling ``name`` (a function, or a method of anything but ``allowed_receiver``)."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    lines = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Call):
            func = node.func
            called = func.attr if isinstance(func, ast.Attribute) else getattr(func, "id", None)
            receiver = getattr(func.value, "id", None) if isinstance(func, ast.Attribute) else None
            if called == name and (allowed_receiver is None or receiver != allowed_receiver):
                lines.append(node.lineno)
    return lines


def test_entries_are_built_only_by_the_builders() -> None:
    found = {
        str(path.relative_to(ROOT)): lines
        for path in product_sources()
        if path != ROOT / "audit" / "actions.py" and (lines := _calls(path, "Record"))
    }
    assert found == {}


def test_transactions_are_committed_only_by_the_unit_of_work() -> None:
    """Use cases call ``uow.commit()``; no session or connection is committed anywhere else."""
    found = {
        str(path.relative_to(ROOT)): lines
        for path in product_sources()
        if path != ROOT / "audit" / "uow.py"
        and (lines := _calls(path, "commit", allowed_receiver="uow"))
    }
    assert found == {}


def test_the_commit_check_sees_a_session_commit(tmp_path: Path) -> None:
    sample = tmp_path / "sample.py"
    sample.write_text("def f(session, uow):\n    uow.commit()\n    session.commit()\n")
    assert _calls(sample, "commit", allowed_receiver="uow") == [3]


@pytest.mark.parametrize("name", ["append_entries", "append_entry", "lock_head"])
def test_only_the_unit_of_work_appends_or_locks(name: str) -> None:
    allowed = {ROOT / "audit" / "uow.py", ROOT / "audit" / "log.py"}
    found = {
        str(path.relative_to(ROOT)): lines
        for path in product_sources()
        if path not in allowed and (lines := _calls(path, name))
    }
    assert found == {}


def test_entry_points_never_open_a_unit_of_work() -> None:
    """``api/`` and ``cli/`` call use cases; the use cases open and commit."""
    found = {
        str(path.relative_to(ROOT)): lines
        for package in ("api", "cli")
        for path in sorted((ROOT / package).rglob("*.py"))
        if (lines := _calls(path, "uow") + _calls(path, "commit"))
    }
    assert found == {}
