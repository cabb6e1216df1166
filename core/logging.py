"""Structured logging with redaction.

Two layers keep personal data out of log lines:

1. Key redaction: any event key that names a personal field (``phone``,
   ``email``, ``name`` …, plus every field in the loaded policy) is replaced.
2. Value scrubbing: every string that reaches the renderer, exception text
   included, is scanned for things shaped like phone numbers, e-mail addresses
   and resident ID numbers, which are replaced. This catches values that slip
   in through a third-party exception message.

Code should not log personal values in the first place; these processors are
the guardrail, and ``tests/api/test_canaries.py`` proves that it holds.
"""

from __future__ import annotations

import logging
import re
import sys
from collections.abc import Iterable, MutableMapping
from typing import Any

import structlog

REDACTED = "[redacted]"

DEFAULT_PERSONAL_KEYS = frozenset(
    {
        "name",
        "phone",
        "email",
        "mobile",
        "address",
        "birthday",
        "id_number",
        "dob",
        "date_of_birth",
        "password",
        "api_key",
        "key",
        "authorization",
    }
)

_SCRUB_PATTERNS = (
    # Resident ID numbers (18 chars) before phones, so the longer match wins.
    re.compile(r"(?<![0-9A-Za-z])[1-9]\d{16}[\dXx](?![0-9A-Za-z])"),
    # E-mail addresses.
    re.compile(r"[\w.+-]+@[\w-]+(?:\.[\w-]+)+", re.UNICODE),
    # Phone numbers: runs of 7+ digits, optionally with +, spaces or dashes.
    re.compile(r"\+?\d[\d \-]{6,}\d"),
    # API keys and members' session tokens.
    re.compile(r"mgm?_[A-Za-z0-9_\-]{20,}"),
)


def scrub(text: str) -> str:
    for pattern in _SCRUB_PATTERNS:
        text = pattern.sub(REDACTED, text)
    return text


# Keys whose values memberguard itself produces; scrubbing them would only
# mangle them (an ISO timestamp looks like a run of digits).
# Only values memberguard generates itself (never request text) are listed.
TRUSTED_KEYS = frozenset(
    {
        "timestamp",
        "level",
        "logger",
        "request_id",
        "actor",
        "route",
        "method",
        "status",
        "duration_ms",
    }
)


class RedactPersonalData:
    def __init__(self, personal_keys: Iterable[str] = ()) -> None:
        self.personal_keys = DEFAULT_PERSONAL_KEYS | frozenset(personal_keys)

    def __call__(
        self, _logger: Any, _method: str, event_dict: MutableMapping[str, Any]
    ) -> MutableMapping[str, Any]:
        return {
            key: value if key in TRUSTED_KEYS else self._clean(key, value)
            for key, value in event_dict.items()
        }

    def _clean(self, key: str, value: Any) -> Any:
        if key.lower() in self.personal_keys:
            return REDACTED
        if isinstance(value, str):
            return scrub(value)
        if isinstance(value, dict):
            return {k: self._clean(str(k), v) for k, v in value.items()}
        if isinstance(value, list | tuple):
            return [self._clean(key, v) for v in value]
        return value


def configure_logging(
    *, log_format: str = "json", level: str = "INFO", personal_keys: Iterable[str] = ()
) -> None:
    """Configure structlog and route the standard library's loggers through it."""
    redact = RedactPersonalData(personal_keys)
    shared: list[Any] = [
        structlog.contextvars.merge_contextvars,
        structlog.stdlib.add_log_level,
        structlog.stdlib.add_logger_name,
        structlog.processors.TimeStamper(fmt="iso", utc=True),
        structlog.processors.format_exc_info,
        redact,
    ]
    renderer: Any = (
        structlog.processors.JSONRenderer(ensure_ascii=False)
        if log_format == "json"
        else structlog.dev.ConsoleRenderer(colors=False)
    )
    structlog.configure(
        processors=[*shared, structlog.stdlib.ProcessorFormatter.wrap_for_formatter],
        logger_factory=structlog.stdlib.LoggerFactory(),
        wrapper_class=structlog.make_filtering_bound_logger(logging.getLevelName(level)),
        cache_logger_on_first_use=False,
    )
    formatter = structlog.stdlib.ProcessorFormatter(
        foreign_pre_chain=shared,
        processors=[structlog.stdlib.ProcessorFormatter.remove_processors_meta, renderer],
    )
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(formatter)
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level)
    # The access log is written by our middleware with the route template in
    # place of the raw path, and without the query string.
    for name in ("uvicorn", "uvicorn.error"):
        logging.getLogger(name).handlers[:] = []
        logging.getLogger(name).propagate = True
    logging.getLogger("uvicorn.access").handlers[:] = []
    logging.getLogger("uvicorn.access").propagate = False
    logging.getLogger("uvicorn.access").disabled = True
    # WeasyPrint (the PDF breach report) narrates each rendering step at INFO.
    logging.getLogger("weasyprint").setLevel(logging.WARNING)
