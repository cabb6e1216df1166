"""Members' one-time sign-in codes: challenges, codes and their checks. Flushes only.

Asking for a code by phone or e-mail opens a *challenge*: a random token
handed to whoever asked, and a 6-digit code sent to the contact if exactly
one member holds it. Answering the challenge with the code opens a member
session (``principals.members``). What is stored is only hashes:

- the row's id is SHA-256(token), so the row is found by the token;
- ``code_hash`` is SHA-256(token ‖ code). Without the token (256 random bits,
  never stored) the table alone cannot be used to try the million codes, and
  with it the attempts go through ``check_code``, which counts them.

A challenge answers at most once, for ``lifetime`` after it was opened, and
is burned by ``max_attempts`` wrong codes: then even the right code fails.
Every request for a code opens a challenge, whether or not a member holds the
contact (``member_id`` None: no code is sent, and no code can succeed), so
that the answer and the work are the same either way (no enumeration).

The use cases (rate limits, the audit entries, sending the code after the
commit) are in ``gate.signin``.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
import unicodedata
from dataclasses import dataclass
from datetime import datetime, timedelta
from enum import StrEnum
from typing import Literal

from sqlalchemy import delete, select, update
from sqlalchemy.orm import Session

from core.errors import InvalidInput, Unauthenticated
from principals.models import MemberLoginChallenge
from vault.keys import Keyring

CODE_DIGITS = 6
CHALLENGE_BYTES = 32  # token_urlsafe(32): 43 characters
CHALLENGE_PATTERN = r"^[A-Za-z0-9_-]{43}$"

Channel = Literal["sms", "email"]
CHANNEL_BY_FIELD: dict[str, Channel] = {"phone": "sms", "email": "email"}


class InvalidCode(Unauthenticated):
    """A wrong code for a challenge that is still open; ``attempts_left`` says how many
    more codes it takes (0: this one burned it)."""

    slug = "invalid-code"
    title = "Wrong sign-in code"

    def __init__(self, *, attempts_left: int) -> None:
        super().__init__(
            "the code is not the one sent for this challenge", attempts_left=attempts_left
        )


class ChallengeClosed(Unauthenticated):
    """The challenge cannot be answered any more (or never existed): ask for a new code.

    One answer for an unknown, expired, used or burned challenge: which of them
    it was helps no one but someone guessing.
    """

    slug = "challenge-closed"
    title = "Sign-in challenge closed"

    def __init__(self) -> None:
        super().__init__(
            "this challenge is unknown, expired, already used or had too many wrong codes; "
            "ask for a new code"
        )


def _digest(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()


def challenge_id(token: str) -> str:
    return _digest(token)


def code_hash(token: str, code: str) -> str:
    """SHA-256(token ‖ code): the token is of fixed length, so the split is unambiguous."""
    return _digest(token + code)


def new_code() -> str:
    return f"{secrets.randbelow(10**CODE_DIGITS):0{CODE_DIGITS}d}"


def normalise_code(raw: str) -> str:
    """The code as typed, full-width digits (a Chinese input method) and spaces allowed."""
    code = "".join(unicodedata.normalize("NFKC", raw).split())
    if len(code) != CODE_DIGITS or not code.isascii() or not code.isdigit():
        raise InvalidInput(f"code must be {CODE_DIGITS} digits")
    return code


def throttle_digest(keyring: Keyring, kind: str, value: str) -> str:
    """A keyed digest naming a rate-limit counter: never the contact or address itself."""
    key = keyring.throttle_key_for(kind)
    return hmac.new(key, value.encode(), hashlib.sha256).hexdigest()[:32]


@dataclass(frozen=True, slots=True)
class OpenedChallenge:
    token: str  # handed to whoever asked, once
    code: str  # sent to the member's contact; for no member, sent nowhere
    expires_at: datetime


def open_challenge(
    session: Session,
    *,
    member_id: str | None,
    channel: Channel,
    now: datetime,
    lifetime: timedelta,
) -> OpenedChallenge:
    """A new challenge, for ``member_id`` or for no one (the same work either way)."""
    token = secrets.token_urlsafe(CHALLENGE_BYTES)
    code = new_code()
    expires_at = now + lifetime
    session.add(
        MemberLoginChallenge(
            id=challenge_id(token),
            member_id=member_id,
            channel=channel,
            code_hash=code_hash(token, code),
            attempts=0,
            created_at=now,
            expires_at=expires_at,
        )
    )
    session.flush()
    return OpenedChallenge(token=token, code=code, expires_at=expires_at)


def purge_expired(session: Session, *, now: datetime) -> int:
    """Delete challenges that can no longer be answered; they hold nothing anyone needs."""
    removed = session.execute(
        delete(MemberLoginChallenge).where(MemberLoginChallenge.expires_at <= now)
    )
    return removed.rowcount or 0


def delete_member_challenges(session: Session, member_id: str) -> int:
    """Remove a member's pending challenges (crypto-shredding: no code of theirs stays usable)."""
    removed = session.execute(
        delete(MemberLoginChallenge).where(MemberLoginChallenge.member_id == member_id)
    )
    return removed.rowcount or 0


class Outcome(StrEnum):
    SIGNED_IN = "signed-in"
    WRONG = "wrong-code"
    BURNED = "burned"  # this wrong code was the last one the challenge took
    CLOSED = "closed"


@dataclass(frozen=True, slots=True)
class CodeCheck:
    outcome: Outcome
    member_id: str | None = None
    channel: str | None = None
    attempts_left: int = 0


def check_code(
    session: Session, *, token: str, code: str, now: datetime, max_attempts: int
) -> CodeCheck:
    """Answer a challenge with a code; counts the attempt. Flushes only.

    The caller's unit of work holds the log-head lock, so two attempts on one
    challenge cannot both read the same count: however many arrive at once,
    at most ``max_attempts`` are ever compared. The comparison is constant-time.
    A right code closes the challenge (``used_at``) and names its member; the
    caller opens the session. A challenge opened for no member has no right
    code: none was ever sent.
    """
    row = session.execute(
        select(MemberLoginChallenge).where(MemberLoginChallenge.id == challenge_id(token))
    ).scalar_one_or_none()
    if (
        row is None
        or row.used_at is not None
        or row.expires_at <= now
        or row.attempts >= max_attempts
    ):
        return CodeCheck(Outcome.CLOSED)
    matches = hmac.compare_digest(row.code_hash, code_hash(token, code))
    if matches and row.member_id is not None:
        session.execute(
            update(MemberLoginChallenge)
            .where(MemberLoginChallenge.id == row.id)
            .values(used_at=now, attempts=row.attempts + 1)
        )
        session.flush()
        return CodeCheck(Outcome.SIGNED_IN, member_id=row.member_id, channel=row.channel)
    attempts = row.attempts + 1
    session.execute(
        update(MemberLoginChallenge)
        .where(MemberLoginChallenge.id == row.id)
        .values(attempts=attempts)
    )
    session.flush()
    left = max_attempts - attempts
    return CodeCheck(
        Outcome.BURNED if left == 0 else Outcome.WRONG,
        member_id=row.member_id,
        channel=row.channel,
        attempts_left=left,
    )
