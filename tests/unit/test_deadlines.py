"""Legal deadlines of members' rights requests, and the policy's ``[rights]`` table.

The worked examples are the ones the design names: a deletion in China over the
National Day holiday and its make-up working weekends, a GDPR month that ends
in a short February, and a request received in the evening UTC that was
already the next day in Shanghai.
"""

from __future__ import annotations

import shutil
from datetime import UTC, date, datetime, timedelta
from importlib import resources
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from core.errors import Conflict, InvalidInput
from policies import PolicyError, load_policy
from policies.loader import default_policy_dir
from policies.model import DeadlineRule
from rights.deadlines import (
    Deadline,
    china_calendar_years,
    due_date,
    extend,
    extend_request,
    request_deadline,
    working_calendar,
    working_days_between,
    working_days_left,
)

SHANGHAI = ZoneInfo("Asia/Shanghai")
BERLIN = ZoneInfo("Europe/Berlin")
CN = {"timezone": "Asia/Shanghai", "jurisdiction": "CN"}
EU = {"timezone": "Europe/Berlin", "jurisdiction": "EU"}
EU_PROFILE = Path(str(resources.files("policies") / "profiles" / "eu" / "rights.toml"))


def last_day(deadline: Deadline) -> date:
    return deadline.due_at.date()


def days(first: date, last: date) -> list[date]:
    return [first + timedelta(days=n) for n in range((last - first).days + 1)]


# -- China: working days on the official calendar -------------------------------------


def test_a_deletion_over_national_day_is_due_after_the_holiday_and_the_make_up_days() -> None:
    received = datetime(2025, 9, 26, 10, 0, tzinfo=SHANGHAI)  # a Friday
    deadline = due_date("15 working days", received_at=received, **CN)
    assert deadline.due_at == datetime(2025, 10, 23, 23, 59, 59, 999999, tzinfo=SHANGHAI)
    assert deadline.due_at.isoformat() == "2025-10-23T23:59:59.999999+08:00"
    assert deadline.rule == "15 working days"
    assert deadline.calendar == "CN official"
    assert deadline.calendar_estimated is False
    # Counted Monday to Friday it would end six calendar days earlier ...
    weekdays = [d for d in days(date(2025, 9, 27), date(2025, 10, 31)) if d.weekday() < 5]
    assert weekdays[14] == date(2025, 10, 17)
    # ... and the whole difference is the holiday (Oct 1-8: six weekdays lost) and
    # the two make-up working Sundays/Saturdays (Sep 28, Oct 11: two days gained).
    official = working_calendar("CN")
    differ = {
        d
        for d in days(date(2025, 9, 27), date(2025, 10, 23))
        if official.is_working_day(d) != (d.weekday() < 5)
    }
    holiday_weekdays = {d for d in days(date(2025, 10, 1), date(2025, 10, 8)) if d.weekday() < 5}
    assert differ == holiday_weekdays | {date(2025, 9, 28), date(2025, 10, 11)}
    assert len(holiday_weekdays) - 2 == working_days_between(
        date(2025, 10, 17), date(2025, 10, 23), jurisdiction="CN"
    )


def test_a_request_received_in_the_evening_utc_counts_from_the_shanghai_date() -> None:
    received = datetime(2025, 9, 26, 17, 30, tzinfo=UTC)  # 01:30 on 27 September in Shanghai
    deadline = due_date("30 days", received_at=received, **CN)
    assert last_day(deadline) == date(2025, 10, 27)  # 27 Sep + 30, not 26 Sep + 30
    assert deadline.due_at.utcoffset() == timedelta(hours=8)
    earlier = due_date("30 days", received_at=received - timedelta(minutes=91), **CN)
    assert last_day(earlier) == date(2025, 10, 26)  # 23:59 in Shanghai, still the 26th


def test_a_cn_period_in_days_is_not_moved_off_a_rest_day() -> None:
    deadline = due_date("30 days", received_at=datetime(2025, 9, 5, 12, tzinfo=SHANGHAI), **CN)
    assert last_day(deadline) == date(2025, 10, 5)  # a Sunday inside the holiday: kept
    assert deadline.calendar_estimated is False


def test_a_day_beyond_the_calendars_data_counts_monday_to_friday_and_is_flagged() -> None:
    _first, last = china_calendar_years()
    assert last >= 2026  # the package holds this year's schedule at least
    received = datetime(last + 1, 3, 1, tzinfo=SHANGHAI)
    received -= timedelta(days=received.weekday())  # the Monday of that week
    deadline = due_date("15 working days", received_at=received, **CN)
    assert last_day(deadline) == received.date() + timedelta(weeks=3)  # 15 weekdays on
    assert deadline.calendar_estimated is True


def test_a_count_that_runs_past_the_calendars_last_year_is_flagged() -> None:
    _first, last = china_calendar_years()
    inside = due_date("15 working days", received_at=datetime(last, 11, 2, tzinfo=SHANGHAI), **CN)
    assert inside.calendar_estimated is False
    across = due_date("15 working days", received_at=datetime(last, 12, 20, tzinfo=SHANGHAI), **CN)
    assert last_day(across).year == last + 1
    assert across.calendar_estimated is True
    # A period in days never consults the calendar: nothing is estimated.
    assert due_date("30 days", received_at=datetime(last, 12, 20, tzinfo=SHANGHAI), **CN) == (
        Deadline(
            due_at=datetime(last + 1, 1, 19, 23, 59, 59, 999999, tzinfo=SHANGHAI),
            rule="30 days",
            calendar="CN official",
            calendar_estimated=False,
        )
    )


# -- EU: the GDPR month --------------------------------------------------------------


def test_a_gdpr_month_from_31_january_ends_in_february_and_moves_off_the_weekend() -> None:
    received = datetime(2026, 1, 31, 9, 0, tzinfo=BERLIN)
    deadline = due_date("1 month", received_at=received, **EU)
    # 31 Feb does not exist: 28 Feb, a Saturday, so Monday 2 March.
    assert deadline.due_at.isoformat() == "2026-03-02T23:59:59.999999+01:00"
    assert deadline.calendar == "EU weekends"


def test_a_gdpr_month_from_31_january_of_a_leap_year_ends_on_29_february() -> None:
    deadline = due_date("1 month", received_at=datetime(2028, 1, 31, tzinfo=BERLIN), **EU)
    assert last_day(deadline) == date(2028, 2, 29)
    assert last_day(deadline).weekday() == 1  # a Tuesday: not moved


def test_an_eu_period_in_days_ending_on_a_sunday_moves_to_monday() -> None:
    received = datetime(2026, 3, 6, 12, tzinfo=BERLIN)
    assert date(2026, 3, 6) + timedelta(days=30) == date(2026, 4, 5)  # Easter Sunday
    assert last_day(due_date("30 days", received_at=received, **EU)) == date(2026, 4, 6)
    # In Germany Easter Monday is a public holiday too.
    german = due_date("30 days", received_at=received, public_holidays="DE", **EU)
    assert last_day(german) == date(2026, 4, 7)


def test_an_eu_period_ending_on_a_public_holiday_moves_past_it() -> None:
    received = datetime(2026, 11, 25, 12, tzinfo=BERLIN)
    # 25 December 2026 is a Friday: a working day when only weekends count ...
    assert last_day(due_date("1 month", received_at=received, **EU)) == date(2026, 12, 25)
    # ... and Christmas in Germany: then the 26th (a Saturday and a holiday) and the
    # Sunday go by too.
    german = due_date("1 month", received_at=received, public_holidays="DE", **EU)
    assert last_day(german) == date(2026, 12, 28)
    assert german.calendar == "EU weekends and DE public holidays"
    assert german.calendar_estimated is False


# -- extensions ------------------------------------------------------------------------


def eu_deadline() -> Deadline:
    return due_date("1 month", received_at=datetime(2026, 1, 31, tzinfo=BERLIN), **EU)


def test_an_eu_deadline_extends_once_by_at_most_two_months_from_its_due_date() -> None:
    deadline = eu_deadline()  # due 2 March 2026
    # 2 May 2026 is a Saturday: the two months end on Monday 4 May.
    extended = extend(deadline, date(2026, 5, 4), extension_max="2 months", **EU)
    assert extended.due_at == datetime(2026, 5, 4, 23, 59, 59, 999999, tzinfo=BERLIN)
    assert extended.extended_from == deadline.due_at and extended.extended
    assert extended.rule == deadline.rule
    with pytest.raises(Conflict) as again:
        extend(extended, date(2026, 5, 4), extension_max="2 months", **EU)
    assert again.value.slug == "already-extended"


@pytest.mark.parametrize("until", [date(2026, 5, 5), date(2026, 3, 2), date(2026, 2, 27)])
def test_an_extension_beyond_the_maximum_or_not_after_the_due_date_is_refused(
    until: date,
) -> None:
    with pytest.raises(InvalidInput) as refused:
        extend(eu_deadline(), until, extension_max="2 months", **EU)
    assert refused.value.slug == "extension-out-of-range"
    assert "2026-03-02" in refused.value.detail and "2026-05-04" in refused.value.detail


def test_an_extension_given_as_an_instant_takes_its_day_in_the_policy_zone() -> None:
    until = datetime(2026, 5, 3, 22, 30, tzinfo=UTC)  # 00:30 on 4 May in Berlin
    extended = extend(eu_deadline(), until, extension_max="2 months", **EU)
    assert last_day(extended) == date(2026, 5, 4)


def test_a_policy_without_extension_max_refuses_every_extension() -> None:
    rights = load_policy().rights
    assert rights.extension_max is None
    deadline = request_deadline(
        rights, "deletion", received_at=datetime(2025, 9, 26, tzinfo=SHANGHAI)
    )
    with pytest.raises(Conflict) as refused:
        extend_request(rights, deadline, date(2025, 10, 24))
    assert refused.value.slug == "extension-not-allowed"


# -- time left ---------------------------------------------------------------------


def test_working_days_left_counts_the_official_calendar_up_to_the_due_day() -> None:
    due = datetime(2025, 10, 23, 23, 59, 59, 999999, tzinfo=SHANGHAI)

    def left(now: datetime) -> int:
        return working_days_left(now, due, **CN)

    assert left(datetime(2025, 10, 20, 9, tzinfo=SHANGHAI)) == 3  # Tue, Wed, Thu
    assert left(datetime(2025, 10, 23, 9, tzinfo=SHANGHAI)) == 0  # due today
    assert left(datetime(2025, 10, 30, tzinfo=SHANGHAI)) == 0  # past
    # From 30 September: the holiday counts for nothing, the make-up Saturday does.
    assert left(datetime(2025, 9, 30, 12, tzinfo=SHANGHAI)) == 15 - 3
    # 20 October 00:30 in Shanghai is 19 October in UTC: the policy zone decides.
    assert left(datetime(2025, 10, 19, 16, 30, tzinfo=UTC)) == 3


# -- properties --------------------------------------------------------------------

RECEIVED = st.datetimes(
    min_value=datetime(2004, 1, 1), max_value=datetime(2035, 12, 31), timezones=st.just(UTC)
)
RULES = st.one_of(
    st.integers(1, 60).map(lambda n: f"{n} days"),
    st.integers(1, 40).map(lambda n: f"{n} working days"),
    st.integers(1, 3).map(lambda n: f"{n} months"),
)
SETUPS = st.sampled_from(
    [
        {"timezone": "Asia/Shanghai", "jurisdiction": "CN"},
        {"timezone": "Europe/Berlin", "jurisdiction": "EU"},
        {"timezone": "Europe/Berlin", "jurisdiction": "EU", "public_holidays": "DE"},
        {"timezone": "Europe/Paris", "jurisdiction": "EU", "public_holidays": "FR"},
        {"timezone": "Europe/Berlin", "jurisdiction": "EU", "public_holidays": "DE-BY"},
    ]
)


@settings(max_examples=300, deadline=None)
@given(rule=RULES, received=RECEIVED, setup=SETUPS)
def test_a_deadline_is_never_before_the_request(
    rule: str, received: datetime, setup: dict[str, str]
) -> None:
    deadline = due_date(rule, received_at=received, **setup)
    assert deadline.due_at > received
    assert deadline.due_at.tzinfo == ZoneInfo(setup["timezone"])


@settings(max_examples=300, deadline=None)
@given(
    rule=RULES, first=RECEIVED, later=st.timedeltas(timedelta(0), timedelta(days=40)), setup=SETUPS
)
def test_a_later_request_is_never_due_earlier(
    rule: str, first: datetime, later: timedelta, setup: dict[str, str]
) -> None:
    before = due_date(rule, received_at=first, **setup)
    after = due_date(rule, received_at=first + later, **setup)
    assert before.due_at <= after.due_at


@settings(max_examples=300, deadline=None)
@given(rule=RULES, received=RECEIVED, setup=SETUPS)
def test_working_day_rules_and_eu_rules_end_on_a_working_day(
    rule: str, received: datetime, setup: dict[str, str]
) -> None:
    parsed = DeadlineRule.parse(rule)
    deadline = due_date(parsed, received_at=received, **setup)
    workdays = working_calendar(setup["jurisdiction"], setup.get("public_holidays"))
    if parsed.unit == "working_days" or setup["jurisdiction"] == "EU":
        assert workdays.is_working_day(last_day(deadline))
    if parsed.unit == "working_days":
        received_day = received.astimezone(ZoneInfo(setup["timezone"])).date()
        assert (
            working_days_between(
                received_day,
                last_day(deadline),
                jurisdiction=setup["jurisdiction"],
                public_holidays=setup.get("public_holidays"),
            )
            == parsed.count
        )


# -- the policy's [rights] table ----------------------------------------------------


@pytest.fixture
def policy_dir(tmp_path: Path) -> Path:
    target = tmp_path / "policy"
    shutil.copytree(default_policy_dir(), target)
    return target


def test_the_default_rights_are_the_china_profile() -> None:
    rights = load_policy().rights
    assert (rights.jurisdiction, rights.timezone, rights.copy_days) == ("CN", "Asia/Shanghai", 7)
    assert rights.deadlines.model_dump() == {
        "access": "30 days",
        "correction": "30 days",
        "deletion": "15 working days",
    }
    assert rights.extension_max is None and rights.public_holidays is None
    assert rights.correction.self_service == ("address",)
    assert rights.deletion.review is False


def test_the_eu_profile_replaces_the_default_rights_file(policy_dir: Path) -> None:
    shutil.copyfile(EU_PROFILE, policy_dir / "rights.toml")
    policy = load_policy(policy_dir)
    rights = policy.rights
    assert (rights.jurisdiction, rights.extension_max) == ("EU", "2 months")
    assert rights.timezone in ("Europe/Berlin", "Europe/Brussels")
    assert {rights.deadline_rule(t).text for t in ("access", "correction", "deletion")} == {
        "1 month"
    }
    assert policy.version != load_policy().version
    deadline = request_deadline(
        rights, "deletion", received_at=datetime(2026, 1, 31, 12, tzinfo=UTC)
    )
    assert last_day(deadline) == date(2026, 3, 2)


def test_the_policy_version_changes_with_the_rights(policy_dir: Path) -> None:
    target = policy_dir / "rights.toml"
    target.write_text(target.read_text().replace("review = false", "review = true"))
    assert load_policy(policy_dir).version != load_policy().version


@pytest.mark.parametrize(
    ("old", "new", "expected"),
    [
        (
            'timezone = "Asia/Shanghai"',
            'timezone = "Asia/Shangai"',
            "rights.toml: rights.timezone: 'Asia/Shangai' is not an IANA time zone",
        ),
        (
            'timezone = "Asia/Shanghai"',
            'timezone = "../../etc/passwd"',
            "rights.toml: rights.timezone:",
        ),
        (
            'deletion = "15 working days"',
            'deletion = "15 workdays"',
            "rights.toml: rights.deadlines.deletion: '15 workdays' is not a period",
        ),
        (
            'deletion = "15 working days"',
            'deletion = "0 days"',
            "rights.toml: rights.deadlines.deletion:",
        ),
        (
            'correction = "30 days"\n',
            "",
            "rights.toml: rights.deadlines.correction: Field required",
        ),
        (
            'correction = "30 days"\n',
            'correction = "30 days"\nportability = "30 days"\n',
            "rights.toml: rights.deadlines.portability: Extra inputs are not permitted",
        ),
        (
            'self_service = ["address"]',
            'self_service = ["adress"]',
            "rights.toml: rights.correction.self_service: unknown field 'adress'",
        ),
        (
            'self_service = ["address"]',
            'self_service = ["address", "id_number"]',
            "rights.toml: rights.correction.self_service: 'id_number' is sensitive",
        ),
        (
            'self_service = ["address"]',
            'self_service = ["email", "address"]',
            "rights.toml: rights.correction.self_service: 'email' is searchable",
        ),
        (
            'jurisdiction = "CN"',
            'jurisdiction = "US"',
            "rights.toml: rights.jurisdiction:",
        ),
        (
            "copy_days = 7",
            'copy_days = 7\nextension_max = "2 weeks"',
            "rights.toml: rights.extension_max: '2 weeks' is not a period",
        ),
        (
            "copy_days = 7",
            'copy_days = 7\npublic_holidays = "CN"',
            "rights.toml: rights: public_holidays applies to the EU jurisdiction only",
        ),
        (
            "copy_days = 7",
            "copy_days = 0",
            "rights.toml: rights.copy_days:",
        ),
    ],
)
def test_a_bad_rights_table_names_the_file_the_key_and_the_problem(
    policy_dir: Path, old: str, new: str, expected: str
) -> None:
    target = policy_dir / "rights.toml"
    text = target.read_text()
    assert old in text
    target.write_text(text.replace(old, new, 1))
    with pytest.raises(PolicyError) as info:
        load_policy(policy_dir)
    assert any(expected in problem for problem in info.value.problems), info.value.problems


@pytest.mark.parametrize(
    ("old", "new", "expected"),
    [
        (
            'extension_max = "2 months"',
            'extension_max = "3 months"',
            "at most '2 months'",
        ),
        (
            'extension_max = "2 months"',
            'extension_max = "60 days"',
            "at most '2 months'",
        ),
        (
            'public_holidays = "DE"',
            'public_holidays = "XX"',
            "rights.public_holidays: 'XX' is not a country",
        ),
        (
            'public_holidays = "DE"',
            'public_holidays = "DE-ZZ"',
            "rights.public_holidays: 'DE-ZZ': DE has no subdivision 'ZZ'",
        ),
    ],
)
def test_a_bad_eu_profile_is_rejected(policy_dir: Path, old: str, new: str, expected: str) -> None:
    text = EU_PROFILE.read_text()
    assert old in text
    (policy_dir / "rights.toml").write_text(text.replace(old, new, 1))
    with pytest.raises(PolicyError) as info:
        load_policy(policy_dir)
    assert any(expected in problem for problem in info.value.problems), info.value.problems


def test_a_policy_without_rights_or_with_two_is_rejected(policy_dir: Path) -> None:
    rights = (policy_dir / "rights.toml").read_text()
    (policy_dir / "rights.toml").unlink()
    with pytest.raises(PolicyError) as missing:
        load_policy(policy_dir)
    assert any(p.endswith("rights: Field required") for p in missing.value.problems)
    (policy_dir / "rights.toml").write_text(rights)
    (policy_dir / "zz-rights-eu.toml").write_text(EU_PROFILE.read_text())
    with pytest.raises(PolicyError) as twice:
        load_policy(policy_dir)
    assert any("zz-rights-eu.toml: rights: already defined in" in p for p in twice.value.problems)
