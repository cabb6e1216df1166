"""The scheduler's table: one row per job, its lease and how its runs went.

Scheduling metadata only, never a fact about members: what a job did is
recorded by the job's own use cases, in the audit log. ``last_result`` holds
counts (``{"expired": 3}``) and ``last_error`` an exception class name, so
that nothing personal can land here.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import JSON, Integer, String
from sqlalchemy.orm import Mapped, mapped_column

from core.db import Base, UTCDateTime

JOB_NAME_LENGTH = 64


class WorkerJob(Base):
    __tablename__ = "worker_job"

    name: Mapped[str] = mapped_column(String(JOB_NAME_LENGTH), primary_key=True)
    # When the job may run next: a run's start plus the job's interval, or
    # after a failure, the end of the run plus the back-off.
    next_due_at: Mapped[datetime] = mapped_column(UTCDateTime())
    # The lease: while it lasts, no other worker claims the job. Set to the
    # claim's time plus the job's maximum runtime, cleared when the run ends;
    # a worker that dies mid-run leaves it to expire.
    lease_expires_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    # Who holds the lease ("host pid N" and a random id per claim): the run
    # that ends releases only its own lease, never a successor's.
    lease_owner: Mapped[str | None] = mapped_column(String(320))
    last_started_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    last_finished_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    # running, ok or failed; null before the first run.
    last_status: Mapped[str | None] = mapped_column(String(16))
    last_result: Mapped[dict[str, Any] | None] = mapped_column(JSON())
    last_error: Mapped[str | None] = mapped_column(String(128))
    runs: Mapped[int] = mapped_column(Integer)
    failures: Mapped[int] = mapped_column(Integer)
    # Failures since the last success: the back-off grows with them.
    consecutive_failures: Mapped[int] = mapped_column(Integer)
