"""kill -9 under load loses no audit entry that a released read depends on.

Runs ``bench/crash_check.py`` once, on SQLite (the embedded default, where a
process crash is the realistic failure): the server is a real subprocess and
its database a real file, so this test does not use the ``backend`` fixture.
The script itself takes ``--db-url`` for PostgreSQL or MariaDB by hand.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from audit.log import append_entry
from bench.crash_check import Load, check_log, run
from core.db import build_engine, session_factory
from migrations import upgrade
from tests.integration.conftest import member_ref, record, ticking_clock


@pytest.mark.slow
def test_sigkill_mid_load_keeps_every_answered_read_in_a_valid_log(tmp_path: Path) -> None:
    result = run(None, 3.0, members=300, threads=8, home=tmp_path)
    assert result["violations"] == []
    assert result["ok"]
    assert result["verify"] == "OK"
    assert result["statuses"].get("200", 0) > 0
    # The kill landed mid-load: requests were open when the server died.
    assert result["cut_off_at_kill"] >= 1


def test_crash_check_flags_a_200_whose_entry_is_not_in_the_log(tmp_path: Path) -> None:
    # The checker has teeth: a release without its committed entry, or with
    # someone else's entry, is a violation.
    url = f"sqlite:///{tmp_path / 'log.db'}"
    upgrade(url=url)
    engine = build_engine(url)
    try:
        tick = ticking_clock()
        with session_factory(engine)() as session:
            appended = [
                append_entry(session, record(n, members=(member_ref(n),)), clock=tick)
                for n in range(2)
            ]
            session.commit()
    finally:
        engine.dispose()
    load = Load()
    load.responses += [
        (member_ref(0), 200, appended[0].seq),  # the entry of this read: fine
        (member_ref(5), 200, appended[1].seq),  # another member's entry
        (member_ref(0), 200, 99),  # no such entry
    ]
    result = check_log(url, load, start_size=0, threads=8)
    assert not result["ok"]
    assert result["violations"] == [
        f"entry {appended[1].seq} does not record the permitted read of {member_ref(5)}",
        f"200 for {member_ref(0)} names entry 99, which is not in the log",
    ]
