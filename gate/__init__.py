"""The gate: every use case, each one decide → record → release.

Each use case opens one audited unit of work (``services.uow(actor)``, which
takes the log-head lock before any fact is read), records its entries through
the builders in ``audit.actions``, and commits it; the commit appends the
entries with the change or decision, and only then is anything decrypted and
returned. Entry points (``api``, ``cli``, the coming ``web`` and ``worker``)
call one use case and never commit.
"""
