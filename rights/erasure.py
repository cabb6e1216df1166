"""Erasure (PIPL Art. 47, GDPR Art. 17): crypto-shred a member and everything sealed for them.

What is destroyed, in one transaction with the entry that records it:

- the wrapped data key, the field ciphertexts and the blind-index rows
  (``vault.members.shred_member``): without the key nothing sealed for the
  member can be opened again, backups included once the KEK that wrapped it
  is retired (README, "Rotating the key-encryption key");
- their sign-in sessions (``principals.members.delete_member_sessions``) and
  pending sign-in codes (``principals.signin.delete_member_challenges``);
- the values of their corrections still waiting for a DPO, and their access
  copies (both sealed under the destroyed key, and deleted too).

What is kept: the ``vault_member`` row (the id), consent state and history,
audit entries, and the rights requests with their history: ids, names and
times, no personal value. Flushes only.
"""

from __future__ import annotations

from sqlalchemy import delete
from sqlalchemy.orm import Session

from core.errors import NotFound
from principals.members import delete_member_sessions
from principals.signin import delete_member_challenges
from rights.models import RightsCopy, RightsCorrection
from vault.members import shred_member


def erase_member(session: Session, member_id: str) -> dict[str, int]:
    """Destroy the member's secrets; how many of each went. ``NotFound`` if already gone."""
    if not shred_member(session, member_id):
        raise NotFound("no such member")
    destroyed = {
        "data_key": 1,
        # Counted first: removing the sessions removes the codes too.
        "login_codes": delete_member_challenges(session, member_id),
        "sessions": delete_member_sessions(session, member_id),
        "pending_corrections": _delete(session, RightsCorrection, member_id),
        "copies": _delete(session, RightsCopy, member_id),
    }
    session.flush()
    return destroyed


def _delete(
    session: Session, model: type[RightsCorrection] | type[RightsCopy], member_id: str
) -> int:
    removed = session.execute(delete(model).where(model.member_id == member_id))
    return removed.rowcount or 0
