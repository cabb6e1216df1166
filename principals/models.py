"""Who may call: internal systems and their API keys; members' sessions and sign-in codes."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import ForeignKey, Integer, String
from sqlalchemy.orm import Mapped, mapped_column, relationship

from core.db import Base, UTCDateTime
from core.ids import ID_LENGTH


class GateClient(Base):
    __tablename__ = "gate_client"

    id: Mapped[str] = mapped_column(String(ID_LENGTH), primary_key=True)
    name: Mapped[str] = mapped_column(String(64), unique=True)
    role: Mapped[str] = mapped_column(String(16))
    # Space-separated, e.g. "members:write consents:write".
    scopes: Mapped[str] = mapped_column(String(255), default="")
    created_at: Mapped[datetime] = mapped_column(UTCDateTime())
    revoked_at: Mapped[datetime | None] = mapped_column(UTCDateTime())

    purposes: Mapped[list[GateClientPurpose]] = relationship(
        back_populates="client", cascade="all, delete-orphan", lazy="selectin"
    )
    keys: Mapped[list[GateApiKey]] = relationship(back_populates="client", lazy="raise")


class GateClientPurpose(Base):
    __tablename__ = "gate_client_purpose"

    client_id: Mapped[str] = mapped_column(ForeignKey("gate_client.id"), primary_key=True)
    purpose: Mapped[str] = mapped_column(String(64), primary_key=True)

    client: Mapped[GateClient] = relationship(back_populates="purposes")


class GateApiKey(Base):
    """An API key, stored only as the SHA-256 of the key.

    Keys are 256-bit random strings, so a fast hash is enough: there is no
    low-entropy secret for a slow KDF to protect, and authentication stays one
    indexed lookup per request.
    """

    __tablename__ = "gate_api_key"

    key_hash: Mapped[str] = mapped_column(String(64), primary_key=True)
    client_id: Mapped[str] = mapped_column(ForeignKey("gate_client.id"), index=True)
    prefix: Mapped[str] = mapped_column(String(16))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime())
    revoked_at: Mapped[datetime | None] = mapped_column(UTCDateTime())

    client: Mapped[GateClient] = relationship(back_populates="keys")


class MemberSession(Base):
    """A signed-in member's bearer token (``mgm_…``), stored only as its SHA-256.

    Like API keys, tokens are 256-bit random strings, so a fast hash is enough.
    A session ends at ``expires_at`` (absolute: no sliding renewal), at logout
    (``ended_at``), or when the member is deleted (the row is removed with the
    member's other secrets).
    """

    __tablename__ = "member_session"

    token_hash: Mapped[str] = mapped_column(String(64), primary_key=True)
    member_id: Mapped[str] = mapped_column(ForeignKey("vault_member.id"), index=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime())
    expires_at: Mapped[datetime] = mapped_column(UTCDateTime())
    ended_at: Mapped[datetime | None] = mapped_column(UTCDateTime())


class MemberLoginChallenge(Base):
    """A one-time sign-in code asked for by phone or e-mail (``principals.signin``).

    ``id`` is the SHA-256 of the challenge token handed to whoever asked, and
    ``code_hash`` the SHA-256 of that token followed by the code: the table
    alone (a backup, a read replica) can neither answer a challenge nor try the
    million codes, since both need the token, which is never stored. Every
    request for a code writes a row, whether or not a member holds the contact
    (``member_id`` is then null and no code is sent), so that the answer and
    the work look the same either way.
    """

    __tablename__ = "member_login_challenge"

    id: Mapped[str] = mapped_column(String(64), primary_key=True)
    member_id: Mapped[str | None] = mapped_column(ForeignKey("vault_member.id"), index=True)
    channel: Mapped[str] = mapped_column(String(8))
    code_hash: Mapped[str] = mapped_column(String(64))
    attempts: Mapped[int] = mapped_column(Integer)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime())
    # Indexed: expired challenges are purged by every request for a code.
    expires_at: Mapped[datetime] = mapped_column(UTCDateTime(), index=True)
    used_at: Mapped[datetime | None] = mapped_column(UTCDateTime())


class StaffSession(Base):
    """A staff member's console session, opened with a ``dpo``, ``auditor`` or ``admin`` key.

    Only the SHA-256 of the session token is stored (a 256-bit random string, as
    member tokens). The key itself is never kept: ``key_hash`` names it (as
    ``gate_api_key`` does) so that revoking that key, or its client, ends the
    session on its next request. A session ends at ``expires_at`` (absolute) or
    at logout (``ended_at``).
    """

    __tablename__ = "staff_session"

    token_hash: Mapped[str] = mapped_column(String(64), primary_key=True)
    client_id: Mapped[str] = mapped_column(ForeignKey("gate_client.id"), index=True)
    key_hash: Mapped[str] = mapped_column(String(64))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime())
    expires_at: Mapped[datetime] = mapped_column(UTCDateTime())
    ended_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
