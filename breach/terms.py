"""The breach workflow's closed vocabularies, as plain tuples with no imports.

The CLI offers them as choices when it starts, so it must not load the policy model
or the report's templates to know them (``memberguard --help`` stays fast).
``policies.model.Severity``, ``breach.report`` and ``gate.incidents`` use these;
tests/unit/test_breach_clock.py holds the policy's ``Severity`` to ``SEVERITIES``.
"""

from __future__ import annotations

SEVERITIES = ("low", "medium", "high", "critical")
# The regulator report's formats and languages (``breach.report``).
REPORT_FORMATS = ("json", "html", "pdf")
REPORT_LOCALES = ("zh-CN", "en")
# The channels a member's breach notice may go by (``gate.incidents.notify_members``).
NOTICE_CHANNELS = ("sms", "email")
