"""The domain error hierarchy.

Every error carries a stable ``slug`` (the problem+json ``type``) and a
``detail`` written for the caller. Neither may contain personal data: details
name fields, purposes and rules, never the values that were sent or stored.
``api/problems.py`` maps the classes to HTTP statuses in one place.
"""

from __future__ import annotations


class DomainError(Exception):
    slug = "error"
    title = "Error"

    def __init__(self, detail: str, *, slug: str | None = None, **extra: object) -> None:
        super().__init__(detail)
        self.detail = detail
        if slug is not None:
            self.slug = slug
        # Extra members of the problem body. Callers put only ids, names and
        # rule descriptions here, never submitted or stored values.
        self.extra = extra


class InvalidInput(DomainError):
    slug = "validation-failed"
    title = "The request is not valid"


class NotFound(DomainError):
    slug = "not-found"
    title = "Not found"


class Conflict(DomainError):
    slug = "conflict"
    title = "Conflict"


class Gone(DomainError):
    """It existed and is no longer available (an expired access copy)."""

    slug = "gone"
    title = "Gone"


class Forbidden(DomainError):
    slug = "forbidden"
    title = "Forbidden"


class Unauthenticated(DomainError):
    slug = "unauthenticated"
    title = "Authentication required"


class Unavailable(DomainError):
    """A dependency the request cannot be served without (audit log, keys) failed."""

    slug = "unavailable"
    title = "Service unavailable"


class RateLimited(DomainError):
    """Too many requests of one kind from one caller; ``retry_after`` is in whole seconds."""

    slug = "rate-limited"
    title = "Too many requests"

    def __init__(self, detail: str, *, retry_after: int, **extra: object) -> None:
        super().__init__(detail, **extra)
        self.retry_after = max(1, retry_after)


class SetupError(Exception):
    """memberguard cannot start or run here: a setting, key file, database or port is
    missing or wrong.

    Raised by the code that loads settings, keys and the database, before any
    request or use case runs; not a ``DomainError``, so it never becomes an HTTP
    problem. Its message is one line that names the problem and the fix (``run
    `memberguard init```, ``chmod 600 <file>``), for an entry point to print as it
    is: it never holds key material or a database password.
    """
