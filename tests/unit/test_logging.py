"""The redaction processors keep personal values out of log lines."""

from __future__ import annotations

import logging

import pytest
import structlog

from core.logging import REDACTED, RedactPersonalData, configure_logging, scrub


@pytest.mark.parametrize(
    "value",
    [
        "13812345678",
        "+86 138 1234 5678",
        "zhang.san@example.com",
        "11010519491231002X",
        "mg_" + "a" * 43,
        "mgm_" + "a" * 43,
    ],
)
def test_scrub_removes_values_shaped_like_personal_data(value: str) -> None:
    assert value not in scrub(f"failed for {value} today")


def test_keys_naming_personal_fields_are_redacted() -> None:
    redact = RedactPersonalData(personal_keys={"home_store"})
    event = redact(
        None,
        "info",
        {"event": "x", "name": "张三", "home_store": "SZ-001", "nested": {"phone": "1"}},
    )
    assert event["name"] == REDACTED
    assert event["home_store"] == REDACTED
    assert event["nested"]["phone"] == REDACTED


def test_timestamps_and_request_ids_survive() -> None:
    redact = RedactPersonalData()
    event = redact(
        None, "info", {"timestamp": "2026-11-22T10:00:00Z", "request_id": "1234567890abcdef"}
    )
    assert event == {"timestamp": "2026-11-22T10:00:00Z", "request_id": "1234567890abcdef"}


def test_exception_text_in_log_lines_is_scrubbed(capsys: pytest.CaptureFixture[str]) -> None:
    configure_logging(log_format="json", level="INFO")
    try:
        raise ValueError("input_value='13812345678' is bad")
    except ValueError:
        structlog.get_logger("t").exception("boom")
        logging.getLogger("thirdparty").exception("also boom for zhang@example.com")
    err = capsys.readouterr().err
    assert "boom" in err and "also boom" in err
    assert "13812345678" not in err
    assert "zhang@example.com" not in err
