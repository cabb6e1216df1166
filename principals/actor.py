"""The authenticated caller, whatever signed it in."""

from __future__ import annotations

from dataclasses import dataclass

from audit.actions import ActorKind
from core.errors import Forbidden

OPERATOR = "operator"  # the actor named in entries written from the CLI
# The roles an API key may have, and the scopes a client may be granted. Here, with no
# database import, so that the CLI can offer them without loading the ORM.
ROLES: tuple[str, ...] = ("client", "auditor", "dpo", "admin")
# rights:submit: relay a member's rights request (the brand app, customer service).
SCOPES = frozenset({"members:write", "consents:read", "consents:write", "rights:submit"})


@dataclass(frozen=True, slots=True)
class Actor:
    """Who acts, and what they are granted.

    ``kind`` says what signed them in: ``client`` (a system's API key),
    ``member`` (a member's session) or ``staff`` (a person: an auditor's or
    admin's key, a console session, the operator at the CLI). ``role`` says
    what they may do.
    """

    id: str
    name: str
    role: str
    kind: ActorKind
    purposes: frozenset[str] = frozenset()
    scopes: frozenset[str] = frozenset()
    # The SHA-256 of the API key that signed the caller in (never the key), so
    # that the re-check under the log-head lock can refuse that key alone
    # once it is revoked or replaced.
    key_hash: str | None = None

    @property
    def collects_consent_only(self) -> bool:
        """A client whose only job is collecting consent: it may read no purpose.

        Such a client (the brand app's consent screen, a store's sign-up
        tablet) may record separate consents; a client that reads data may not
        (``consent.registry.check_recorder``).
        """
        return (
            self.kind == "client"
            and not self.purposes
            and self.scopes <= {"consents:read", "consents:write"}
        )

    def require_role(self, *roles: str) -> None:
        if self.role not in roles:
            raise Forbidden(
                f"this endpoint needs the role {' or '.join(roles)}", slug="role-required"
            )

    def require_scope(self, scope: str) -> None:
        self.require_role("client")
        if scope not in self.scopes:
            raise Forbidden(f"this endpoint needs the scope {scope}", slug="scope-required")


OPERATOR_ACTOR = Actor(id=OPERATOR, name=OPERATOR, role="admin", kind="staff")
# The operator at the CLI acting as the DPO (``memberguard rights``, ``memberguard holds``):
# whoever runs commands on the host with its keys is trusted with the DPO's decisions.
OPERATOR_DPO_ACTOR = Actor(id=OPERATOR, name=OPERATOR, role="dpo", kind="staff")
