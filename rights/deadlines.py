"""When a member's rights request is due: pure functions of the policy's ``[rights]`` rules.

How a period is counted (DESIGN-workflows, "Legal anchors"):

- Days are days of the policy's time zone: a request received at 17:30 UTC on
  26 September was received on 27 September in Shanghai.
- Counting starts the day after the day of receipt. ``N days`` ends on the day
  of receipt + N; ``N working days`` on the Nth working day after it;
  ``N months`` on the same date N months after the day of receipt, or on that
  month's last day if it has none (received 31 January: the end of February).
- CN: the end of a period is never moved (PIPL has no rule that moves it), so
  ``30 days`` may end on a Sunday.
- EU: a ``days`` or ``months`` period that ends on a Saturday, Sunday or public
  holiday ends on the next working day (Regulation 1182/71 Art. 3(4), applied
  to GDPR Art. 12(3) by EDPB Guidelines 01/2022).
- The request is due at the end of the last day: 23:59:59.999999 in the
  policy's time zone, as an aware datetime carrying that zone's offset
  (``isoformat()`` is then RFC 3339, e.g. ``2025-10-23T23:59:59.999999+08:00``).
  A request is overdue once ``now > due_at``.

Working days:

- CN: China's official calendar from ``chinese_calendar``: the State Council's
  yearly schedule, the make-up working weekends (调休) included. The package
  raises for a year it has no schedule for; such a day is counted Monday to
  Friday, and a deadline that needed one says ``calendar_estimated``.
- EU: Monday to Friday, less the public holidays of ``[rights]
  public_holidays`` (``holidays`` package) when the policy names a member state.

Nothing here reads a clock: the caller passes ``received_at`` and ``now``.
"""

from __future__ import annotations

import calendar as gregorian
from dataclasses import dataclass
from datetime import date, datetime, time, timedelta
from functools import cache
from typing import TYPE_CHECKING, Protocol
from zoneinfo import ZoneInfo

from core.errors import Conflict, InvalidInput
from policies.model import DeadlineRule, Jurisdiction, RequestType, Rights

if TYPE_CHECKING:
    from holidays import HolidayBase

ONE_DAY = timedelta(days=1)


@dataclass(frozen=True, slots=True)
class Deadline:
    """A request's due instant and how it was reached.

    ``due_at`` is the end of the last day (23:59:59.999999) in the policy's
    time zone. ``calendar`` names the working-day calendar of the jurisdiction;
    ``calendar_estimated`` is true when a day the due date depended on lies
    outside that calendar's data (counted Monday to Friday instead).
    ``extended_from`` is the due instant before the one extension allowed.
    """

    due_at: datetime
    rule: str
    calendar: str
    calendar_estimated: bool
    extended_from: datetime | None = None

    @property
    def extended(self) -> bool:
        return self.extended_from is not None


# -- working-day calendars ----------------------------------------------------------


class WorkingCalendar(Protocol):
    @property
    def name(self) -> str: ...

    def is_working_day(self, day: date) -> bool: ...

    def covers(self, day: date) -> bool:
        """Is ``is_working_day`` taken from the calendar's data for ``day`` (not estimated)?"""
        ...


@cache
def china_calendar_years() -> tuple[int, int]:
    """The first and last year ``chinese_calendar`` has the official schedule for.

    Taken from the package's own table, as its ``is_workday`` does before it
    refuses a year: a release that adds the next year's schedule moves the
    bound with no change here.
    """
    import chinese_calendar

    years = {day.year for day in chinese_calendar.holidays}
    return min(years), max(years)


class ChinaOfficialCalendar:
    """China's working days: Monday to Friday, less the statutory holidays, plus the
    make-up working weekends, as the State Council publishes them each year."""

    name = "CN official"

    def covers(self, day: date) -> bool:
        first, last = china_calendar_years()
        return first <= day.year <= last

    def is_working_day(self, day: date) -> bool:
        if not self.covers(day):
            return day.weekday() < 5
        import chinese_calendar

        return bool(chinese_calendar.is_workday(day))


class EuropeanCalendar:
    """Monday to Friday, less the public holidays of one member state (or region) if named."""

    def __init__(self, public_holidays: str | None) -> None:
        self.public_holidays = public_holidays
        if public_holidays is None:
            self.name = "EU weekends"
            self._years = (date.min.year, date.max.year)
        else:
            self.name = f"EU weekends and {public_holidays} public holidays"
            # The years the package has rules for (DE: from 1991, the unified
            # state); outside them a day counts as estimated.
            found = _country_holidays(public_holidays)
            self._years = (found.start_year, found.end_year)

    def covers(self, day: date) -> bool:
        return self._years[0] <= day.year <= self._years[1]

    def is_working_day(self, day: date) -> bool:
        if day.weekday() >= 5:
            return False
        if self.public_holidays is None or not self.covers(day):
            return True
        return day not in _public_holidays(self.public_holidays, day.year)


def _country_holidays(code: str, year: int | None = None) -> HolidayBase:
    """``code`` is what the policy validated: "DE", or "DE-BY" for a region too."""
    import holidays

    country, _, subdivision = code.partition("-")
    return holidays.country_holidays(country, subdiv=subdivision or None, years=year)


@cache
def _public_holidays(code: str, year: int) -> frozenset[date]:
    return frozenset(_country_holidays(code, year))


@cache
def working_calendar(
    jurisdiction: Jurisdiction, public_holidays: str | None = None
) -> WorkingCalendar:
    if jurisdiction == "CN":
        return ChinaOfficialCalendar()
    return EuropeanCalendar(public_holidays)


# -- counting -------------------------------------------------------------------------


def end_of_day(day: date, zone: ZoneInfo) -> datetime:
    """The last representable instant of ``day`` in ``zone``."""
    return datetime.combine(day, time.max, tzinfo=zone)


def add_months(day: date, months: int) -> date:
    """The same date ``months`` later, or that month's last day if it has none."""
    index = day.month - 1 + months
    year, month = day.year + index // 12, index % 12 + 1
    return date(year, month, min(day.day, gregorian.monthrange(year, month)[1]))


def _local_day(instant: datetime, zone: ZoneInfo, name: str) -> date:
    if instant.tzinfo is None or instant.utcoffset() is None:
        raise InvalidInput(f"{name} needs a UTC offset")
    return instant.astimezone(zone).date()


def due_date(
    rule: str | DeadlineRule,
    *,
    received_at: datetime,
    timezone: str,
    jurisdiction: Jurisdiction,
    public_holidays: str | None = None,
) -> Deadline:
    """The deadline of a request received at ``received_at`` under ``rule``."""
    parsed = rule if isinstance(rule, DeadlineRule) else DeadlineRule.parse(rule)
    zone = ZoneInfo(timezone)
    workdays = working_calendar(jurisdiction, public_holidays)
    received = _local_day(received_at, zone, "received_at")
    estimated = False
    if parsed.unit == "working_days":
        last, counted = received, 0
        while counted < parsed.count:
            last += ONE_DAY
            estimated = estimated or not workdays.covers(last)
            counted += workdays.is_working_day(last)
    else:
        if parsed.unit == "days":
            last = received + timedelta(days=parsed.count)
        else:
            last = add_months(received, parsed.count)
        if jurisdiction == "EU":
            estimated = not workdays.covers(last)
            while not workdays.is_working_day(last):
                last += ONE_DAY
                estimated = estimated or not workdays.covers(last)
    return Deadline(
        due_at=end_of_day(last, zone),
        rule=parsed.text,
        calendar=workdays.name,
        calendar_estimated=estimated,
    )


def request_deadline(
    rights: Rights, request_type: RequestType, *, received_at: datetime
) -> Deadline:
    """The deadline the policy sets for a request of ``request_type``."""
    return due_date(
        rights.deadline_rule(request_type),
        received_at=received_at,
        timezone=rights.timezone,
        jurisdiction=rights.jurisdiction,
        public_holidays=rights.public_holidays,
    )


# -- extending ----------------------------------------------------------------------


def extend(
    deadline: Deadline,
    until: date | datetime,
    *,
    extension_max: str | None,
    timezone: str,
    jurisdiction: Jurisdiction,
    public_holidays: str | None = None,
) -> Deadline:
    """Move a deadline to the end of ``until``'s day, once, by at most ``extension_max``.

    The limit is ``extension_max`` counted from the original due date by the
    same rules as a deadline (EU: "2 months" from a due date of 2 March is
    2 May, a Saturday in 2026, so 4 May). Refused: ``extension-not-allowed``
    when the policy sets no ``extension_max``; ``already-extended`` for a
    deadline extended before; ``extension-out-of-range`` for a day that is not
    after the current due date or beyond the limit.
    """
    if extension_max is None:
        raise Conflict(
            "the policy allows no extension of a request's deadline ([rights] extension_max)",
            slug="extension-not-allowed",
        )
    if deadline.extended_from is not None:
        raise Conflict(
            "the deadline was extended once already; it cannot be extended again",
            slug="already-extended",
        )
    zone = ZoneInfo(timezone)
    current = deadline.due_at.astimezone(zone).date()
    new_last = until if not isinstance(until, datetime) else _local_day(until, zone, "until")
    latest = due_date(
        extension_max,
        received_at=deadline.due_at,
        timezone=timezone,
        jurisdiction=jurisdiction,
        public_holidays=public_holidays,
    )
    latest_day = latest.due_at.date()
    if not current < new_last <= latest_day:
        raise InvalidInput(
            f"the new due date must be after {current.isoformat()} and no later than "
            f"{latest_day.isoformat()} (extension_max {extension_max!r} from the due date)",
            slug="extension-out-of-range",
        )
    return Deadline(
        due_at=end_of_day(new_last, zone),
        rule=deadline.rule,
        calendar=deadline.calendar,
        calendar_estimated=deadline.calendar_estimated or latest.calendar_estimated,
        extended_from=deadline.due_at,
    )


def extend_request(rights: Rights, deadline: Deadline, until: date | datetime) -> Deadline:
    """``extend`` under the policy's ``extension_max``, zone and calendar."""
    return extend(
        deadline,
        until,
        extension_max=rights.extension_max,
        timezone=rights.timezone,
        jurisdiction=rights.jurisdiction,
        public_holidays=rights.public_holidays,
    )


# -- how much time is left ------------------------------------------------------------


def working_days_between(
    start: date, end: date, *, jurisdiction: Jurisdiction, public_holidays: str | None = None
) -> int:
    """Working days ``d`` with ``start < d <= end`` (0 when ``end <= start``).

    Days outside the calendar's data count Monday to Friday, as in ``due_date``.
    """
    workdays = working_calendar(jurisdiction, public_holidays)
    count, day = 0, start + ONE_DAY
    while day <= end:
        count += workdays.is_working_day(day)
        day += ONE_DAY
    return count


def working_days_left(
    now: datetime,
    due_at: datetime,
    *,
    timezone: str,
    jurisdiction: Jurisdiction,
    public_holidays: str | None = None,
) -> int:
    """Working days after today up to and including the due day, in the policy's zone.

    0 on the due day itself and once it has passed (whether it has is
    ``now > due_at``). The worker flags a request with at most 3 left.
    """
    zone = ZoneInfo(timezone)
    return working_days_between(
        _local_day(now, zone, "now"),
        _local_day(due_at, zone, "due_at"),
        jurisdiction=jurisdiction,
        public_holidays=public_holidays,
    )
