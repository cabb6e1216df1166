"""Member records: validate, encrypt, store, look up, decrypt.

These functions only ``flush()``: the caller's unit of work commits, together
with the audit entry that records the change.
"""

from __future__ import annotations

from collections.abc import Collection, Iterable, Mapping
from dataclasses import dataclass
from datetime import date, datetime
from typing import Any

from sqlalchemy import delete, func, insert, select, update
from sqlalchemy.orm import Session

from core.errors import InvalidInput, NotFound
from core.ids import new_id
from policies.model import Policy
from vault.crypto import (
    blind_index,
    encrypt_value,
    new_data_key,
    open_fields,
    unwrap_data_key,
    wrap_data_key,
)
from vault.fields import InvalidFieldValue, normalise_email, normalise_phone, normalise_value
from vault.keys import Keyring
from vault.models import VaultBlindIndex, VaultDataKey, VaultField, VaultMember

Value = str | int


def validate_values(
    policy: Policy, raw: Mapping[str, Any], *, partial: bool, today: date
) -> dict[str, Value | None]:
    """Normalise every submitted value against the policy, or raise with every problem.

    ``partial`` (updates): only the given fields, and ``null`` clears an optional
    field. Problems name fields and rules, never the values; an unknown key is
    never named, since a key can be personal data sent in the wrong place.
    """
    problems: list[dict[str, str]] = []
    clean: dict[str, Value | None] = {}
    for key, value in raw.items():
        spec = policy.fields.get(key)
        if spec is None:
            # The key is not echoed: a client that put a value where a key
            # belongs (or a pinyin name as a key) must not see it in a log or
            # an error body. allowed_fields below says what is accepted.
            problems.append({"field": "(unknown field)", "problem": "not a field of this policy"})
            continue
        if value is None:
            if not partial:
                continue
            if spec.required:
                problems.append({"field": key, "problem": "is required and cannot be cleared"})
                continue
            clean[key] = None
            continue
        try:
            clean[key] = normalise_value(
                spec.type,
                value,
                field=key,
                values=spec.values,
                pattern=spec.pattern,
                max_length=spec.max_length,
                today=today,
            )
        except InvalidFieldValue as exc:
            problems.append({"field": key, "problem": exc.detail.removeprefix(f"{key}: ")})
    if not partial:
        reported = {p["field"] for p in problems}
        for name, spec in policy.fields.items():
            if spec.required and clean.get(name) is None and name not in reported:
                problems.append({"field": name, "problem": "is required"})
    if not partial and not clean and not problems:
        problems.append({"field": "(body)", "problem": "no fields given"})
    if partial and not raw:
        problems.append({"field": "(body)", "problem": "no fields given"})
    if problems:
        raise InvalidInput(
            f"{len(problems)} field(s) are invalid",
            errors=problems,
            allowed_fields=sorted(policy.fields),
        )
    return clean


def create_member(
    session: Session,
    *,
    policy: Policy,
    keyring: Keyring,
    values: Mapping[str, Value],
    now: datetime,
) -> str:
    member_id = new_id()
    data_key = new_data_key()
    version, wrapped = wrap_data_key(keyring, member_id, data_key)
    session.add(VaultMember(id=member_id, created_at=now, updated_at=now))
    session.flush()
    session.add(
        VaultDataKey(member_id=member_id, kek_version=version, data_key_ct=wrapped, created_at=now)
    )
    _write_fields(
        session,
        policy=policy,
        keyring=keyring,
        member_id=member_id,
        data_key=data_key,
        values=values,
    )
    session.flush()
    return member_id


def create_members_bulk(
    session: Session,
    *,
    policy: Policy,
    keyring: Keyring,
    batch: Iterable[Mapping[str, Value]],
    now: datetime,
) -> list[str]:
    """Insert many already-validated members with executemany statements (imports, demo)."""
    members: list[dict[str, Any]] = []
    keys: list[dict[str, Any]] = []
    fields: list[dict[str, Any]] = []
    indexes: list[dict[str, Any]] = []
    for values in batch:
        member_id = new_id()
        data_key = new_data_key()
        version, wrapped = wrap_data_key(keyring, member_id, data_key)
        members.append({"id": member_id, "created_at": now, "updated_at": now})
        keys.append(
            {
                "member_id": member_id,
                "kek_version": version,
                "data_key_ct": wrapped,
                "created_at": now,
            }
        )
        for name, value in values.items():
            fields.append(
                {
                    "member_id": member_id,
                    "name": name,
                    "value_ct": encrypt_value(data_key, member_id, name, value),
                }
            )
            if policy.fields[name].searchable:
                indexes.append(
                    {
                        "field": name,
                        "digest": blind_index(keyring, name, str(value)),
                        "member_id": member_id,
                    }
                )
    for model, rows in (
        (VaultMember, members),
        (VaultDataKey, keys),
        (VaultField, fields),
        (VaultBlindIndex, indexes),
    ):
        if rows:
            # Core executemany on the table: the ORM's per-row bookkeeping
            # would double the cost of a bulk import.
            session.execute(insert(model.__table__), rows)
    return [m["id"] for m in members]


def update_member(
    session: Session,
    *,
    policy: Policy,
    keyring: Keyring,
    member_id: str,
    values: Mapping[str, Value | None],
    now: datetime,
) -> None:
    data_key = member_data_key(session, keyring, member_id)  # NotFound: no such member (any more)
    names = list(values)
    session.execute(
        delete(VaultField).where(VaultField.member_id == member_id, VaultField.name.in_(names))
    )
    searchable = [n for n in names if policy.fields[n].searchable]
    if searchable:
        session.execute(
            delete(VaultBlindIndex).where(
                VaultBlindIndex.member_id == member_id, VaultBlindIndex.field.in_(searchable)
            )
        )
    present = {name: value for name, value in values.items() if value is not None}
    _write_fields(
        session,
        policy=policy,
        keyring=keyring,
        member_id=member_id,
        data_key=data_key,
        values=present,
    )
    session.execute(update(VaultMember).where(VaultMember.id == member_id).values(updated_at=now))
    session.flush()


def _write_fields(
    session: Session,
    *,
    policy: Policy,
    keyring: Keyring,
    member_id: str,
    data_key: bytes,
    values: Mapping[str, Value],
) -> None:
    for name, value in values.items():
        session.add(
            VaultField(
                member_id=member_id,
                name=name,
                value_ct=encrypt_value(data_key, member_id, name, value),
            )
        )
        if policy.fields[name].searchable:
            session.add(
                VaultBlindIndex(
                    field=name, digest=blind_index(keyring, name, str(value)), member_id=member_id
                )
            )


def member_exists(session: Session, member_id: str) -> bool:
    """A member exists while they have a data key.

    This is the one definition: reads (``load_sealed``), lookups, exports,
    consent reads and writes and updates all use it. A crypto-shredded member
    keeps their ``vault_member`` row (consent history and the audit log name
    the id) but has no data key, so for every use case they no longer exist.
    """
    return (
        session.scalar(select(VaultDataKey.member_id).where(VaultDataKey.member_id == member_id))
        is not None
    )


def existing_members_after(session: Session, after: str, *, limit: int) -> list[str]:
    """The next ``limit`` existing members (``member_exists``) after ``after``, in id order."""
    # On the table, not the ORM entity, and one fetch: an export examines
    # every member, and ORM row processing cost more than the query did.
    key = VaultDataKey.__table__.c.member_id
    statement = select(key).where(key > after).order_by(key).limit(limit)
    return [member_id for (member_id,) in session.execute(statement).all()]


def member_versions(session: Session, member_ids: Collection[str]) -> dict[str, datetime]:
    """Each existing member's ``updated_at``: it changes whenever any of their fields does.

    A cheap stand-in for the ciphertexts (one narrow row per member): a use case
    that opened a member's fields earlier checks under the lock that what it
    opened is still what the member has. Crypto-shredded members are absent.
    """
    if not member_ids:
        return {}
    members, keys = VaultMember.__table__.c, VaultDataKey.__table__.c
    statement = (
        select(members.id, members.updated_at)
        .join_from(VaultMember.__table__, VaultDataKey.__table__, keys.member_id == members.id)
        .where(members.id.in_(list(member_ids)))
    )
    return {member_id: updated_at for member_id, updated_at in session.execute(statement).all()}


def shred_member(session: Session, member_id: str) -> bool:
    """Crypto-shred: destroy the data key, then the ciphertexts and blind-index entries.

    Without the data key no ciphertext of the member can be decrypted, backups
    included once the KEK that wrapped it is retired; deleting the blind-index
    rows means no lookup can find the member either. Returns False if the
    member did not exist (no data key). Flushes only.
    """
    removed = session.execute(delete(VaultDataKey).where(VaultDataKey.member_id == member_id))
    session.execute(delete(VaultField).where(VaultField.member_id == member_id))
    session.execute(delete(VaultBlindIndex).where(VaultBlindIndex.member_id == member_id))
    session.flush()
    return bool(removed.rowcount)


def normalise_lookup(field_name: str, raw: object) -> str:
    if field_name == "phone":
        return normalise_phone(raw, field=field_name)
    if field_name == "email":
        return normalise_email(raw, field=field_name)
    raise InvalidInput(f"{field_name} is not searchable")


def lookup(session: Session, *, keyring: Keyring, field_name: str, normalised: str) -> list[str]:
    """The members holding this value, among those that exist (``member_exists``)."""
    digest = blind_index(keyring, field_name, normalised)
    rows = session.scalars(
        select(VaultBlindIndex.member_id)
        .join(VaultDataKey, VaultDataKey.member_id == VaultBlindIndex.member_id)
        .where(VaultBlindIndex.field == field_name, VaultBlindIndex.digest == digest)
        .order_by(VaultBlindIndex.member_id)
    )
    return list(rows)


@dataclass(frozen=True, slots=True)
class SealedMember:
    """A member's ciphertexts, loaded inside the deciding transaction.

    A single read decrypts after its audit entry is committed, outside any
    lock. An export opens a batch before writing its entry (so that the entry
    names only members whose ciphertexts authenticated) and sends the lines
    only after the commit (``gate.export``).
    """

    member_id: str
    kek_version: int
    data_key_ct: bytes
    fields: dict[str, bytes]

    def open(self, keyring: Keyring) -> dict[str, Value]:
        return open_fields(keyring, self.member_id, self.kek_version, self.data_key_ct, self.fields)


def load_sealed(
    session: Session, member_ids: Collection[str], field_names: Collection[str]
) -> dict[str, SealedMember]:
    """The wrapped data keys and the named fields' ciphertexts of these members.

    Two statements on the tables (Core, not ORM entities): bulk exports load
    thousands of rows per batch, and ORM row processing cost more than the
    database did.
    """
    if not member_ids:
        return {}
    ids = list(member_ids)
    data_keys = VaultDataKey.__table__.c
    keys = session.execute(
        select(data_keys.member_id, data_keys.kek_version, data_keys.data_key_ct).where(
            data_keys.member_id.in_(ids)
        )
    ).all()
    fields: dict[str, dict[str, bytes]] = {member_id: {} for member_id in ids}
    if field_names:
        columns = VaultField.__table__.c
        rows = session.execute(
            select(columns.member_id, columns.name, columns.value_ct).where(
                columns.member_id.in_(ids), columns.name.in_(list(field_names))
            )
        ).all()  # one fetch: cheaper than row-by-row iteration
        for member_id, name, value_ct in rows:
            fields[member_id][name] = bytes(value_ct)
    return {
        member_id: SealedMember(
            member_id=member_id,
            kek_version=kek_version,
            data_key_ct=bytes(data_key_ct),
            fields=fields[member_id],
        )
        for member_id, kek_version, data_key_ct in keys
    }


def member_data_key(session: Session, keyring: Keyring, member_id: str) -> bytes:
    """The member's data key, unwrapped; ``NotFound`` once they are crypto-shredded.

    Also for ciphertexts kept outside the vault that must die with the member
    (a correction's pending values, an access copy: ``rights``): sealed under
    this key, they are unreadable once the shred destroys it.
    """
    row = session.get(VaultDataKey, member_id)
    if row is None:
        raise NotFound("no such member")
    return unwrap_data_key(keyring, member_id, row.kek_version, row.data_key_ct)


def rewrap_batch(
    session: Session, *, keyring: Keyring, after: str, limit: int
) -> tuple[int, str | None]:
    """Re-wrap up to ``limit`` data keys after member id ``after`` under the active KEK.

    Only the wrapped data keys change; field ciphertexts are untouched, which
    is what makes KEK rotation cheap. Returns (re-wrapped, last member id seen).
    """
    rows = session.execute(
        select(VaultDataKey.member_id, VaultDataKey.kek_version, VaultDataKey.data_key_ct)
        .where(VaultDataKey.member_id > after)
        .order_by(VaultDataKey.member_id)
        .limit(limit)
    ).all()
    if not rows:
        return 0, None
    active = keyring.active_version
    changed = 0
    for row in rows:
        # Never down: a key under a newer KEK than this keyring's (a rotation
        # and a re-wrap ran since this keyring was loaded) stays where it is.
        if row.kek_version >= active:
            continue
        data_key = unwrap_data_key(keyring, row.member_id, row.kek_version, bytes(row.data_key_ct))
        version, wrapped = wrap_data_key(keyring, row.member_id, data_key)
        session.execute(
            update(VaultDataKey)
            .where(VaultDataKey.member_id == row.member_id)
            .values(kek_version=version, data_key_ct=wrapped)
        )
        changed += 1
    return changed, rows[-1].member_id


def count_by_kek_version(session: Session) -> dict[int, int]:
    rows = session.execute(
        select(VaultDataKey.kek_version, func.count()).group_by(VaultDataKey.kek_version)
    ).all()
    return {version: count for version, count in rows}
