"""Consent state follows its history, on every database (Hypothesis over the real registry)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy import select
from sqlalchemy.orm import Session

from consent.models import ConsentEvent
from consent.registry import ConsentChange, consent_facts_for
from gate.consents import record_member_consent
from gate.context import Services
from gate.writes import create_member_record
from principals.clients import authenticate
from tests.conftest import Keys

BASE = datetime(2026, 1, 1, tzinfo=UTC)
events = st.lists(
    st.tuples(st.sampled_from(["granted", "withdrawn", "refused"]), st.integers(0, 20)),
    min_size=1,
    max_size=8,
)


@settings(
    max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(history=events)
def test_state_is_the_latest_collected_change_and_history_keeps_every_event(
    services: Services, keys: Keys, session: Session, history: list[tuple[str, int]]
) -> None:
    with services.reading() as reading:
        crm = authenticate(reading, keys.crm)
        app = authenticate(reading, keys.app)
    member = create_member_record(
        services, actor=crm, values={"name": "张三", "phone": "+8613812345678"}, request_id=None
    ).id
    for status, day in history:
        record_member_consent(
            services,
            actor=app,
            member_id=member,
            change=ConsentChange(
                purposes=["marketing_sms"],
                status=status,  # type: ignore[arg-type]
                channel="app",
                collected_at=BASE + timedelta(days=day),
            ),
            request_id=None,
        )
    # Expected: the latest collected change wins; among changes collected at the same
    # moment, a withdrawal or refusal wins over a grant (the last one recorded).
    latest_day = max(day for _, day in history)
    at_latest = [status for status, day in history if day == latest_day]
    refusals = [status for status in at_latest if status != "granted"]
    expected = refusals[-1] if refusals else "granted"
    fact = consent_facts_for(session, {(member, "marketing_sms")}).get((member, "marketing_sms"))
    assert fact is not None and fact.status == expected
    stored = session.scalars(
        select(ConsentEvent.status)
        .where(ConsentEvent.member_id == member)
        .order_by(ConsentEvent.id)
    ).all()
    assert stored == [status for status, _ in history]
