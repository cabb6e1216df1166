"""Group commit for gated reads: many decisions, one transaction, one fsync.

Every gated read must be decided and durably recorded before anything is
released, and on SQLite (and on the log-head row elsewhere) durable appends
are one at a time. Done per request, a busy server spends its time in
BEGIN/COMMIT, fsync and per-statement overhead, one request after another.

``ReadBatcher`` has one thread that takes whatever reads are waiting (up to
``max_batch``), decides them all in one transaction under the log-head lock
(``gate.reads.decide_reads``: one query per kind of fact for the whole
batch), appends one entry per read and commits once. Each caller's future is
resolved only after that commit: a response is never released before its
entry is durable, and if the append or the commit fails, every read of the
batch gets ``AuditUnavailable`` and nothing. Nothing waits for a batch to
fill: an idle server decides a lone read at once, a busy one decides what
arrived while the previous batch was committing.

Decryption and masking stay with the caller, after the future resolves, so the
writer thread does only what must be serialised.
"""

from __future__ import annotations

import asyncio
import contextlib
import queue
import threading
from concurrent.futures import Future

import structlog

from audit.log import AuditUnavailable
from gate.context import Services
from gate.reads import Outcome, ReadRequest, decide_reads

log = structlog.get_logger("memberguard.reads")

_Item = tuple[ReadRequest, "Future[Outcome]"]
_STOP = None


class ReadBatcher:
    def __init__(self, services: Services, *, max_batch: int = 64, idle_seconds: float = 5.0):
        if max_batch < 1:
            raise ValueError("max_batch must be at least 1")
        self.services = services
        self.max_batch = max_batch
        self.idle_seconds = idle_seconds
        self._queue: queue.SimpleQueue[_Item | None] = queue.SimpleQueue()
        self._lock = threading.Lock()
        self._thread: threading.Thread | None = None
        self._closed = False

    def submit(self, request: ReadRequest) -> Future[Outcome]:
        """Queue a read; the future resolves once it is decided and its entry committed."""
        future: Future[Outcome] = Future()
        with self._lock:
            if self._closed:
                raise AuditUnavailable("the server is shutting down; nothing was released")
            self._queue.put((request, future))
            if self._thread is None:
                # Started on demand and ended when idle, so that an app that
                # serves no reads (or a test's) keeps no thread.
                self._start()
        return future

    def _start(self) -> None:
        """Start the thread; the caller holds ``_lock``."""
        self._thread = threading.Thread(target=self._run, name="memberguard-reads", daemon=True)
        self._thread.start()

    async def read(self, request: ReadRequest) -> Outcome:
        return await asyncio.wrap_future(self.submit(request))

    def close(self, timeout: float = 30.0) -> None:
        """Decide what is queued, then stop the thread."""
        with self._lock:
            self._closed = True
            thread = self._thread
            self._queue.put(_STOP)
        if thread is not None:
            thread.join(timeout)

    def _run(self) -> None:
        try:
            self._serve()
        finally:
            with self._lock:
                # A thread ended by an error (not by idling) hands over what
                # is queued, so that no caller waits for a thread that is gone.
                if self._thread is threading.current_thread():
                    self._thread = None
                    if not self._queue.empty():
                        self._start()

    def _serve(self) -> None:
        while True:
            try:
                first = self._queue.get(timeout=self.idle_seconds)
            except queue.Empty:
                with self._lock:
                    if self._queue.empty():  # submit() queues under this lock
                        self._thread = None
                        return
                continue
            if first is _STOP:
                return
            batch = [first]
            stopping = False
            while len(batch) < self.max_batch:
                try:
                    item = self._queue.get_nowait()
                except queue.Empty:
                    break
                if item is _STOP:
                    stopping = True
                    break
                batch.append(item)
            self._decide(batch)
            if stopping:
                return

    def _decide(self, batch: list[_Item]) -> None:
        live = [
            (request, future) for request, future in batch if future.set_running_or_notify_cancel()
        ]
        if not live:
            return
        try:
            outcomes = decide_reads(self.services, [request for request, _ in live])
        except BaseException as exc:
            # Fail closed: a fresh error per caller, and nothing released. The
            # callers are answered first, whatever logging then does.
            cause = exc.__cause__ if isinstance(exc, AuditUnavailable) and exc.__cause__ else exc
            for _, future in live:
                failure = AuditUnavailable(
                    "the audit log could not be written; nothing was released"
                )
                failure.__cause__ = cause
                future.set_exception(failure)
            if not isinstance(exc, AuditUnavailable):
                with contextlib.suppress(Exception):
                    log.error("reads.batch_failed", size=len(live), error=type(exc).__name__)
            if not isinstance(exc, Exception):
                raise
            return
        for (_, future), outcome in zip(live, outcomes, strict=True):
            future.set_result(outcome)
