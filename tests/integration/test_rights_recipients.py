"""``rights.recipients.recipients_of``: the one function over the log that says which
clients received a member's data (erasure and correction recipients, breach scoping)."""

from __future__ import annotations

from typing import Any

import pytest
from sqlalchemy.orm import Session

from audit import actions
from audit.actions import Action, Record, UnknownAction
from gate.context import Services
from policies.decide import Decision
from principals import Actor
from rights.recipients import recipients_of

MEMBER, OTHER = "m" * 24, "n" * 24
POLICY = "0" * 64


def client(n: int) -> Actor:
    return Actor(id=f"client{n:018d}", name=f"c{n}", role="client", kind="client")


STAFF = Actor(id="s" * 24, name="dpo", role="dpo", kind="staff")
THE_MEMBER = Actor(id=MEMBER, name="member", role="member", kind="member")


def permit(purpose: str, views: dict[str, str]) -> Decision:
    return Decision("permit", "legal-basis:contract", purpose, views)


def read(who: Actor, member: str, views: dict[str, str], *, allowed: bool = True) -> Record:
    decision = permit("delivery", views) if allowed else Decision("deny", "consent-required", "p")
    return actions.member_read(
        who,
        policy=POLICY,
        decision=decision,
        member_id=member,
        released_views=views if allowed else {},
        request_id=None,
    )


def record(services: Services, *records: Record) -> None:
    with services.uow() as uow:
        for one in records:
            uow.record(one)
        uow.commit()


@pytest.fixture
def log(services: Services) -> dict[str, Any]:
    """A log in which six clients did different things with MEMBER."""
    reader, refused, exporter, finder, consent, other = (client(n) for n in range(6))
    record(
        services,
        actions.member_created(
            reader, policy=POLICY, member_id=MEMBER, fields=["name"], request_id=None
        ),
        read(reader, MEMBER, {"name": "clear", "phone": "masked"}),
        read(refused, MEMBER, {"phone": "clear"}, allowed=False),
        read(refused, MEMBER, {"phone": "clear"}, allowed=False),
        actions.members_exported(
            exporter,
            policy=POLICY,
            decision=permit("personalization", {"birthday": "year", "tier": "clear"}),
            member_ids=[OTHER, MEMBER],
            batch=1,
            examined=2,
            request_id=None,
        ),
        actions.members_looked_up(
            finder,
            policy=POLICY,
            decision=permit("customer_service", {"phone": "masked"}),
            by="phone",
            matched=1,
            admitted=[MEMBER],
            request_id=None,
        ),
        actions.consent_read(consent, policy=POLICY, member_id=MEMBER, request_id=None),
        read(other, OTHER, {"name": "clear"}),
        # Staff and the member themselves are no recipients to be told.
        read(STAFF, MEMBER, {"name": "clear"}),
        actions.copy_downloaded(
            THE_MEMBER,
            policy=POLICY,
            member_id=MEMBER,
            rights_request="r" * 24,
            fields=["name"],
            request_id=None,
        ),
    )
    return {
        "reader": reader.id,
        "refused": refused.id,
        "exporter": exporter.id,
        "finder": finder.id,
        "consent": consent.id,
        "other": other.id,
    }


def test_every_client_released_anything_of_the_member_is_a_recipient(
    log: dict[str, Any], session: Session
) -> None:
    assert recipients_of(session, MEMBER) == sorted(
        [log["reader"], log["exporter"], log["finder"], log["consent"]]
    )


def test_a_client_that_was_only_refused_is_no_recipient(
    log: dict[str, Any], session: Session
) -> None:
    assert log["refused"] not in recipients_of(session, MEMBER)


def test_with_fields_only_releases_of_those_fields_values_count(
    log: dict[str, Any], session: Session
) -> None:
    assert recipients_of(session, MEMBER, ["name"]) == [log["reader"]]
    assert recipients_of(session, MEMBER, ["birthday"]) == [log["exporter"]]  # its year
    # A lookup by phone released who holds it, not the number: no recipient of the phone.
    assert recipients_of(session, MEMBER, ["phone"]) == [log["reader"]]
    assert recipients_of(session, MEMBER, ["email"]) == []


def test_another_members_recipients_are_their_own(log: dict[str, Any], session: Session) -> None:
    assert recipients_of(session, OTHER) == sorted([log["exporter"], log["other"]])
    assert recipients_of(session, "z" * 24) == []


def test_an_entry_from_before_actor_kind_counts_by_its_role(
    services: Services, session: Session
) -> None:
    legacy = Record(
        action=Action.MEMBER_READ,
        decision="permit",
        reason="legal-basis:contract",
        policy=POLICY,
        actor="l" * 24,
        actor_role="client",
        purpose="delivery",
        members=[MEMBER],
        fields={"name": "clear"},
    )
    record(services, legacy)
    assert recipients_of(session, MEMBER) == ["l" * 24]


def test_an_action_this_version_does_not_know_is_an_error_not_nothing(
    services: Services, session: Session
) -> None:
    newer = Record(
        action="member.teleport",  # type: ignore[arg-type]  (written by a newer version)
        decision="permit",
        reason="x",
        policy=POLICY,
        actor=client(9).id,
        actor_role="client",
        actor_kind="client",
        members=[MEMBER],
    )
    record(services, newer)
    with pytest.raises(UnknownAction):
        recipients_of(session, MEMBER)
