"""Canary values prove that personal data never leaves through a side door.

Two members are created from planted canary values (a CN mobile number, an
e-mail address, a Chinese and a Latin name, a resident ID, an address, a birth
date), then every endpoint is driven with them: writes, gated reads for many
purposes (refusals included), lookups, exports, consents, the audit endpoints,
client management, health, members' sign-in and own endpoints, rights requests
(corrections to canary values, relayed requests with a canary-like case
reference, the DPO's decisions and legal holds with a canary in the reason,
the access copy, a deletion), and bad requests that carry the canaries in the
wrong places. Afterwards no canary, raw or normalised, may be found in:

- any log line (production JSON logging at DEBUG level, as its handler renders it);
- any audit entry, byte for byte;
- any error response, body or headers;
- any successful answer other than the clear views a purpose is granted (and, for
  the member, their own data; for the member and the DPO, the reasons they are shown).
"""

from __future__ import annotations

import dataclasses
import json
import re
import shutil
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import quote

import httpx
import pytest
from fastapi.testclient import TestClient
from sqlalchemy import text
from sqlalchemy.orm import Session

from api.app import create_app
from audit.entry import parse_entry
from gate.context import Services
from notify.outbox import read_outbox
from policies import load_policy
from policies.loader import default_policy_dir
from tests.api.conftest import CODE_RE, auth
from tests.conftest import Keys
from vault.fields import gb11643_check_digit

COLLECTED_AT = "2026-11-01T10:00:00+08:00"

PHONE = "13912345670"
PHONE_E164 = "+8613912345670"
PHONE_B_RAW = "139-1234-5672"
EMAIL_RAW = "Canary.Zhou@Example.ORG"
EMAIL = "canary.zhou@example.org"
EMAIL_B = "w.quackenbush@canary-mail.example"
NAME_CJK = "周金雀"
NAME_LATIN = "Wilhelmina Quackenbush"
ID_BODY = "33010619880512100"
ID_NUMBER = ID_BODY + gb11643_check_digit(ID_BODY)  # ends in X
ADDRESS = "浙江省杭州市西湖区文三路188号"
BIRTHDAY = "1988-05-12"
# What member A corrects their data to (each of a kind above).
EMAIL_NEW = "Jinque.Zhou@Canary-Mail.example"
PHONE_NEW = "13912345673"
NAME_NEW = "周金雀儿"
ADDRESS_NEW = "浙江省杭州市西湖区文三路200号"
BIRTHDAY_NEW = "1988-05-13"
# Someone a careless DPO names in a free-text reason (rejection, extension, hold): shown to
# the member and the DPO, never logged or recorded. A kind of its own, so that the answers
# that show a reason are still checked for every other kind.
REASON_NAME = "鲍雀鸣"
REASON_PHONE = "13912345677"
REASON = f"{REASON_NAME} 来电 {REASON_PHONE}, 工单见邮件"

# Every form in which a canary could leak, by kind. Matching is
# case-insensitive and also looks for the JSON-escaped and URL-encoded forms.
CANARIES: dict[str, tuple[str, ...]] = {
    "phone": (
        PHONE,
        PHONE_E164,
        "139 1234 5670",
        "139-1234-5670",
        "13912345672",
        "+8613912345672",
        PHONE_B_RAW,
        PHONE_NEW,
        "+86" + PHONE_NEW,
    ),
    "email": (EMAIL_RAW, EMAIL, "canary.zhou", EMAIL_B, "w.quackenbush", EMAIL_NEW, "jinque.zhou"),
    "name": (NAME_CJK, "金雀", "Wilhelmina", "Quackenbush"),  # (NAME_NEW holds 金雀)
    "id": (ID_NUMBER, ID_BODY),
    "address": ("文三路", "西湖区"),  # (ADDRESS_NEW too)
    "birthday": (BIRTHDAY, BIRTHDAY_NEW),  # (the resident ID embeds BIRTHDAY as 19880512)
    "reason": (REASON_NAME, REASON_PHONE, "+86" + REASON_PHONE),
}
ALL_KINDS = frozenset(CANARIES)
# What member A's own data may show (their /v1/me, their access copy).
MEMBER_KINDS = ALL_KINDS - {"reason"}

MEMBER_A = {
    "name": NAME_CJK,
    "phone": PHONE,
    "email": EMAIL_RAW,
    "birthday": BIRTHDAY,
    "gender": "女",
    "address": ADDRESS,
    "id_number": ID_NUMBER.lower(),
    "tier": "钻石",
    "points_balance": 88,
    "registered_at": "2020-01-02",
    "channel": "wechat",
    "home_store": "HZ-031",
}
MEMBER_B = {"name": NAME_LATIN, "phone": PHONE_B_RAW, "email": EMAIL_B, "tier": "普通"}


def _forms(value: str) -> set[str]:
    return {
        form.lower()
        for form in (value, json.dumps(value)[1:-1], quote(value, safe=""), quote(value))
    }


NEEDLES: dict[str, set[str]] = {
    kind: set().union(*(_forms(v) for v in values)) for kind, values in CANARIES.items()
}


def leaks(haystack: str | bytes, kinds: Iterable[str] = ALL_KINDS) -> list[str]:
    """Every canary form of the given kinds found in ``haystack``."""
    if isinstance(haystack, bytes):
        haystack = haystack.decode("utf-8", errors="replace")
    lowered = haystack.lower()
    return sorted({n for kind in kinds for n in NEEDLES[kind] if n in lowered})


# ---------------------------------------------------------------- the scenario


@dataclass(frozen=True)
class Exchange:
    label: str
    response: httpx.Response
    # The canary kinds that this answer, if successful, is meant to release in clear.
    may_show: frozenset[str]


@dataclass
class Driver:
    client: TestClient
    exchanges: list[Exchange]
    # Sign-in codes, challenges and member tokens seen on the way: never in a log line.
    secrets: list[str]

    def __call__(
        self,
        label: str,
        method: str,
        path: str,
        *,
        key: str | None = None,
        may_show: Iterable[str] = (),
        headers: dict[str, str] | None = None,
        via: TestClient | None = None,
        **kwargs: Any,
    ) -> httpx.Response:
        """``via``: another app on the same database (the EU profile, which allows extensions)."""
        response = (via or self.client).request(
            method, path, headers={**(auth(key) if key else {}), **(headers or {})}, **kwargs
        )
        self.exchanges.append(Exchange(label, response, frozenset(may_show)))
        return response


def consent(purpose: str, **overrides: Any) -> dict[str, Any]:
    return {
        "purposes": [purpose],
        "status": "granted",
        "channel": "app",
        "collected_at": COLLECTED_AT,
        **overrides,
    }


@dataclass(frozen=True)
class RightsSetup:
    dpo: str
    relay: str  # a client with rights:submit
    eu: TestClient  # the same database under the EU profile (extensions allowed)


def drive_every_endpoint(
    client: TestClient, keys: Keys, outbox: Path, rights: RightsSetup
) -> Driver:
    d = Driver(client, [], [])
    crm, sms, pos, analytics, app = keys.crm, keys.sms, keys.pos, keys.analytics, keys.app
    auditor, admin = keys.auditor, keys.admin

    d("healthz", "GET", "/healthz")
    d("readyz", "GET", "/readyz")

    # Writes.
    a = d("create-a", "POST", "/v1/members", key=crm, json=MEMBER_A).json()["id"]
    b = d("create-b", "POST", "/v1/members", key=crm, json=MEMBER_B).json()["id"]
    d(
        "patch-a",
        "PATCH",
        f"/v1/members/{a}",
        key=crm,
        json={"email": EMAIL_RAW.upper(), "address": ADDRESS, "phone": "139 1234 5670"},
    )

    # Clients: a probe client for the purposes no fixture client holds.
    probe = d(
        "client-create",
        "POST",
        "/v1/clients",
        key=admin,
        json={
            "name": "canary-probe",
            "role": "client",
            "purposes": ["birthday_benefits", "marketing_email", "personalization"],
        },
    ).json()
    d("client-list", "GET", "/v1/clients", key=admin)

    # Consents.
    for purpose in ("marketing_sms", "marketing_email", "analytics", "birthday_benefits"):
        d(f"grant-{purpose}", "POST", f"/v1/members/{a}/consents", key=app, json=consent(purpose))
    for purpose in ("partner_sharing", "identity_verification"):
        d(f"grant-{purpose}", "POST", f"/v1/members/{a}/consents", key=app, json=consent(purpose))
    d(
        "withdraw-never-granted",
        "POST",
        f"/v1/members/{b}/consents",
        key=crm,
        json=consent("marketing_sms", status="withdrawn"),
    )
    d("consents-a", "GET", f"/v1/members/{a}/consents", key=crm)
    d("consents-b", "GET", f"/v1/members/{b}/consents", key=crm)

    # Gated reads, permitted: each may show only the clear views of its purpose.
    reads = [
        (crm, "membership", {"name"}),
        (crm, "customer_service", set()),
        (crm, "delivery", {"name", "phone", "address"}),
        (sms, "marketing_sms", {"phone"}),
        (analytics, "analytics", set()),
        (pos, "partner_sharing", {"name", "phone"}),
        (pos, "identity_verification", {"name", "id"}),
        (probe["key"], "birthday_benefits", set()),
        (probe["key"], "marketing_email", {"email"}),
    ]
    for key, purpose, may_show in reads:
        response = d(
            f"read-a-{purpose}",
            "GET",
            f"/v1/members/{a}?purpose={purpose}",
            key=key,
            may_show=may_show,
        )
        assert response.status_code == 200, (purpose, response.text)
    d("read-b-customer_service", "GET", f"/v1/members/{b}?purpose=customer_service", key=crm)
    d("read-b-membership", "GET", f"/v1/members/{b}?purpose=membership", key=crm, may_show={"name"})

    # Gated reads, refused.
    d("read-not-granted", "GET", f"/v1/members/{a}?purpose=membership", key=sms)
    d("read-no-consent", "GET", f"/v1/members/{b}?purpose=marketing_sms", key=sms)
    d(
        "read-no-consent-personalization",
        "GET",
        f"/v1/members/{a}?purpose=personalization",
        key=probe["key"],
    )

    # Lookups.
    d(
        "lookup-phone",
        "POST",
        "/v1/members/lookup",
        key=crm,
        json={"phone": "139 1234 5670", "purpose": "membership"},
    )
    d(
        "lookup-email",
        "POST",
        "/v1/members/lookup",
        key=crm,
        json={"email": EMAIL_RAW, "purpose": "customer_service"},
    )
    d(
        "lookup-email-b",
        "POST",
        "/v1/members/lookup",
        key=crm,
        json={"email": EMAIL_B.upper(), "purpose": "delivery"},
    )
    d(
        "lookup-pseudonymous",
        "POST",
        "/v1/members/lookup",
        key=analytics,
        json={"phone": PHONE_E164, "purpose": "analytics"},
    )
    d(
        "lookup-not-granted",
        "POST",
        "/v1/members/lookup",
        key=sms,
        json={"phone": PHONE, "purpose": "membership"},
    )

    # Exports (NDJSON).
    exports = [
        (crm, "membership", {"name"}),
        (crm, "customer_service", set()),
        (crm, "delivery", {"name", "phone", "address"}),
        (sms, "marketing_sms", {"phone"}),
        (analytics, "analytics", set()),
        (sms, "membership", set()),  # refused
    ]
    for key, purpose, may_show in exports:
        d(f"export-{purpose}", "GET", f"/v1/members?purpose={purpose}", key=key, may_show=may_show)

    # Bad input that carries the canaries.
    members = "/v1/members"
    for label, body in {
        "phone-in-email-field": {**MEMBER_A, "email": PHONE},
        "email-in-phone-field": {**MEMBER_A, "phone": EMAIL_RAW},
        "latin-name-as-unknown-key": {**MEMBER_A, NAME_LATIN: "x"},
        "cjk-name-as-unknown-key": {**MEMBER_A, NAME_CJK: PHONE},
        "email-as-unknown-key": {**MEMBER_A, EMAIL_RAW: ID_NUMBER},
        "id-with-wrong-check-digit": {**MEMBER_A, "id_number": ID_BODY + "3"},
        "name-in-tier": {**MEMBER_A, "tier": NAME_CJK},
        "phone-in-home-store": {**MEMBER_A, "home_store": PHONE},
        "phone-as-points": {**MEMBER_A, "points_balance": PHONE},
        "name-with-nul": {**MEMBER_A, "name": NAME_CJK + "\x00"},
        "address-with-markup": {**MEMBER_A, "address": ADDRESS + "<b>"},
        "birthday-impossible": {**MEMBER_A, "birthday": "1988-02-30", "email": EMAIL + "@"},
    }.items():
        d(f"create-{label}", "POST", members, key=crm, json=body)
    d("patch-bad-phone", "PATCH", f"/v1/members/{a}", key=crm, json={"phone": PHONE + "0"})
    d("patch-bad-email", "PATCH", f"/v1/members/{a}", key=crm, json={"email": EMAIL_RAW + "@"})
    d("patch-unknown-key", "PATCH", f"/v1/members/{a}", key=crm, json={NAME_LATIN: NAME_CJK})
    for value in (PHONE, EMAIL_RAW, NAME_CJK, NAME_LATIN, ID_NUMBER):
        d("read-canary-purpose", "GET", f"/v1/members/{a}", key=crm, params={"purpose": value})
        d("export-canary-purpose", "GET", members, key=crm, params={"purpose": value})
        d(
            "read-canary-id",
            "GET",
            f"/v1/members/{quote(value, safe='')}?purpose=membership",
            key=crm,
        )
        d("consents-canary-id", "GET", f"/v1/members/{quote(value, safe='')}/consents", key=crm)
    consents = f"/v1/members/{a}/consents"
    for label, body in {
        "canary-purpose": consent(NAME_CJK),
        "canary-purposes": {**consent("marketing_sms"), "purposes": [PHONE, EMAIL_RAW]},
        "canary-channel": consent("marketing_sms", channel=PHONE),
        "canary-channel-name": consent("marketing_sms", channel=NAME_LATIN),
        "canary-notice": consent("marketing_sms", notice_version=EMAIL_RAW),
        "canary-unknown-key": {**consent("marketing_sms"), NAME_LATIN: PHONE},
        "canary-time": consent("marketing_sms", collected_at=BIRTHDAY + "T25:61:00+08:00"),
        "canary-status": consent("marketing_sms", status=NAME_CJK),
    }.items():
        d(f"consent-{label}", "POST", consents, key=app, json=body)
    lookup = "/v1/members/lookup"
    for label, body in {
        "email-as-phone": {"phone": EMAIL_RAW, "purpose": "membership"},
        "phone-as-email": {"email": PHONE, "purpose": "membership"},
        "name-as-purpose": {"phone": PHONE, "purpose": NAME_CJK},
        "name-as-unknown-key": {"phone": PHONE, "purpose": "membership", NAME_LATIN: 1},
        "id-as-phone": {"phone": ID_NUMBER, "purpose": "membership"},
    }.items():
        d(f"lookup-{label}", "POST", lookup, key=crm, json=body)
    for label, body in {
        "name": {"name": NAME_LATIN, "role": "client"},
        "purposes": {"name": "probe-two", "role": "client", "purposes": [PHONE]},
        "unknown-key": {"name": "probe-two", "role": "client", EMAIL_RAW: NAME_CJK},
        "role": {"name": "probe-two", "role": NAME_CJK},
    }.items():
        d(f"client-{label}", "POST", "/v1/clients", key=admin, json=body)
    d(
        "request-id-phone",
        "GET",
        f"/v1/members/{a}?purpose=customer_service",
        key=crm,
        headers={"X-Request-ID": PHONE_E164},
    )
    d(
        "request-id-email-refused",
        "GET",
        f"/v1/members/{a}?purpose=membership",
        key=sms,
        headers={"X-Request-ID": EMAIL_RAW},
    )
    d(
        "key-is-a-phone",
        "GET",
        f"/v1/members/{a}?purpose=membership",
        headers={"Authorization": f"Bearer {PHONE}"},
    )
    d(
        "key-holds-an-email",
        "GET",
        f"/v1/members/{a}?purpose=membership",
        headers={"Authorization": f"Bearer mg_{EMAIL_RAW}"},
    )
    d("unknown-route", "GET", f"/v1/members/{PHONE}/history", key=crm)
    d("wrong-method", "PUT", f"/v1/members/{a}", key=crm, json=MEMBER_A)
    d(
        "malformed-json",
        "POST",
        members,
        key=crm,
        content=json.dumps(MEMBER_A, ensure_ascii=False).encode()[:-2],
        headers={"Content-Type": "application/json"},
    )
    d("too-large", "POST", members, key=crm, json={**MEMBER_A, "address": ADDRESS * 600})

    # The audit trail, in every format.
    d("audit-json", "GET", "/v1/audit/entries?limit=1000", key=auditor)
    d("audit-member", "GET", f"/v1/audit/entries?member={a}", key=auditor)
    d(
        "audit-ndjson",
        "GET",
        "/v1/audit/entries",
        key=auditor,
        headers={"Accept": "application/x-ndjson"},
    )
    d("audit-csv", "GET", "/v1/audit/entries", key=auditor, headers={"Accept": "text/csv"})
    d("audit-head", "GET", "/v1/audit/head", key=auditor)
    d("audit-canary-actor", "GET", "/v1/audit/entries", key=auditor, params={"actor": EMAIL_RAW})
    d("audit-canary-member", "GET", "/v1/audit/entries", key=auditor, params={"member": PHONE})
    d("audit-canary-cursor", "GET", "/v1/audit/entries", key=auditor, params={"cursor": NAME_CJK})

    # Members: each signs in by a canary contact (the code read from the outbox), then
    # uses their own endpoints; /v1/me may show the member everything of their own.
    def signed_in(label: str, contact: dict[str, str]) -> str:
        started = d(f"login-{label}", "POST", "/v1/me/login", json=contact).json()
        code = CODE_RE.findall(list(read_outbox(outbox))[-1]["body"])[0]
        d.secrets.extend([started["challenge"], code])
        body = {"challenge": started["challenge"], "code": f"{(int(code) + 1) % 10**6:06d}"}
        d(f"verify-wrong-{label}", "POST", "/v1/me/login/verify", json=body)
        body["code"] = code
        token = d(f"verify-{label}", "POST", "/v1/me/login/verify", json=body).json()["token"]
        d.secrets.append(token)
        return token

    token_a = signed_in("phone", {"phone": "139 1234 5670"})
    token_b = signed_in("email", {"email": EMAIL_B.upper()})
    d("login-unknown-phone", "POST", "/v1/me/login", json={"phone": "13912345679"})
    d("me-a", "GET", "/v1/me", key=token_a, may_show=MEMBER_KINDS)
    d("me-b", "GET", "/v1/me", key=token_b, may_show={"name", "phone", "email"})
    d("me-consents", "GET", "/v1/me/consents", key=token_a)
    own = {"purposes": ["marketing_sms"], "status": "withdrawn"}
    d("me-withdraw", "POST", "/v1/me/consents", key=token_a, json=own)
    bundle = {"purposes": ["partner_sharing", "marketing_sms"], "status": "granted"}
    d("me-bundled", "POST", "/v1/me/consents", key=token_a, json=bundle)
    d("me-access-log", "GET", "/v1/me/access-log", key=token_a)
    d("me-as-client", "GET", f"/v1/members/{a}?purpose=membership", key=token_a)
    for label, body in {
        "email-as-phone": {"phone": EMAIL_RAW},
        "phone-as-email": {"email": PHONE},
        "name-as-phone": {"phone": NAME_CJK},
        "id-as-phone": {"phone": ID_NUMBER},
        "bad-email": {"email": EMAIL_RAW + "@"},
        "both": {"phone": PHONE, "email": EMAIL_RAW},
        "name-as-unknown-key": {"phone": PHONE, NAME_LATIN: EMAIL_RAW},
    }.items():
        d(f"login-{label}", "POST", "/v1/me/login", json=body)
    for label, body in {
        "phone-as-code": {"challenge": "A" * 43, "code": PHONE},
        "phone-as-challenge": {"challenge": PHONE_E164, "code": "123456"},
        "email-as-challenge": {"challenge": EMAIL_RAW, "code": "123456"},
    }.items():
        d(f"verify-{label}", "POST", "/v1/me/login/verify", json=body)
    drive_rights_endpoints(d, keys, rights, a=a, b=b, token_a=token_a, token_b=token_b)

    d("logout-a", "POST", "/v1/me/logout", key=token_a)
    d("logged-out-a", "GET", "/v1/me", key=token_a)

    # Revocation, and the revoked key's next request.
    d("client-revoke", "DELETE", f"/v1/clients/{probe['id']}", key=admin)
    d("revoked-key", "GET", f"/v1/members/{a}?purpose=birthday_benefits", key=probe["key"])
    return d


def drive_rights_endpoints(
    d: Driver, keys: Keys, rights: RightsSetup, *, a: str, b: str, token_a: str, token_b: str
) -> None:
    """Member A corrects, asks for copies, has a request rejected and one extended; a
    client relays A's requests; member B's deletion waits on a hold and runs at its release.
    Answers that show a request's history or a hold may show ``reason``, and nothing else."""
    crm, auditor, dpo, relay, eu = keys.crm, keys.auditor, rights.dpo, rights.relay, rights.eu
    own = "/v1/me/requests"
    shows_reason = {"reason"}

    def created(response: httpx.Response, status: str) -> str:
        assert response.status_code == 201, response.text
        assert response.json()["status"] == status, response.text
        return str(response.json()["id"])

    def correction(**changes: object) -> dict[str, Any]:
        return {"type": "correction", "changes": changes}

    # Corrections to canary values: self-service fields applied at once, the others sealed.
    changes = correction(address=ADDRESS_NEW)
    created(d("me-correct-applied", "POST", own, key=token_a, json=changes), "completed")
    changes = correction(name=NAME_NEW, phone=PHONE_NEW, email=EMAIL_NEW)
    sealed = created(d("me-correct-sealed", "POST", own, key=token_a, json=changes), "submitted")
    for label, body in {
        "phone-as-email": correction(email=PHONE),
        "email-as-phone": correction(phone=EMAIL_RAW),
        "impossible-birthday": correction(birthday="1988-02-30"),
        "wrong-check-digit": correction(id_number=ID_BODY + "3"),
        "name-with-nul": correction(name=NAME_NEW + "\x00"),
        "phone-as-points": correction(points_balance=PHONE),  # not correctable
        "name-as-unknown-key": {"type": "correction", "changes": {NAME_LATIN: PHONE}},
        "email-as-unknown-key": {"type": "access", EMAIL_RAW: NAME_CJK},
        "name-as-type": {"type": NAME_CJK},
        "changes-of-an-access": {"type": "access", "changes": {"email": EMAIL_NEW}},
        "same-field-as-open-one": correction(name=NAME_LATIN),  # 409 request-open
    }.items():
        d(f"me-correct-{label}", "POST", own, key=token_a, json=body)

    # Relayed by a client: a case reference that looks like a contact, but is valid.
    relayed = f"/v1/members/{a}/requests"
    by_phone = {"method": "phone_callback", "reference": PHONE}
    received = "2026-11-20T09:30:00+08:00"
    body = {"type": "access", "verification": by_phone, "received_at": received}
    relayed_copy = created(d("relay-access", "POST", relayed, key=relay, json=body), "completed")
    body = {
        **correction(birthday=BIRTHDAY_NEW),
        "verification": {"method": "in_person_id", "reference": "canary.zhou"},
        "received_at": received,
    }
    to_extend = created(d("relay-correct", "POST", relayed, key=relay, json=body), "submitted")
    for label, body in {
        "method-with-phone": {"type": "access", "verification": {"method": f"zhou_{PHONE}"}},
        "method-is-name": {"type": "access", "verification": {"method": NAME_LATIN}},
        "reference-is-email": {"type": "access", "verification": {**by_phone, "reference": EMAIL}},
        "reference-is-name": {
            "type": "access",
            "verification": {**by_phone, "reference": NAME_CJK},
        },
        "received-on-birthday": {
            "type": "access",
            "verification": by_phone,
            "received_at": BIRTHDAY + "T25:61:00+08:00",
        },
        "correct-phone-as-email": {**correction(email=PHONE), "verification": by_phone},
    }.items():
        d(f"relay-{label}", "POST", relayed, key=relay, json=body)
    body = {"type": "access", "verification": by_phone}
    d("relay-canary-member", "POST", f"/v1/members/{quote(PHONE)}/requests", key=relay, json=body)

    # The DPO: the queue, a rejection and an extension whose reasons name someone.
    d("queue", "GET", "/v1/requests", key=dpo)
    d("queue-canary-cursor", "GET", "/v1/requests", key=dpo, params={"cursor": EMAIL_RAW})
    d("queue-canary-status", "GET", "/v1/requests", key=dpo, params={"status": NAME_CJK})
    reject = {"reason": REASON}
    rejected = d(
        "dpo-reject",
        "POST",
        f"/v1/requests/{sealed}/reject",
        key=dpo,
        json=reject,
        may_show=shows_reason,
    )
    assert rejected.status_code == 200, rejected.text
    d("dpo-reject-again", "POST", f"/v1/requests/{sealed}/reject", key=dpo, json=reject)
    d("dpo-reject-canary-id", "POST", f"/v1/requests/{PHONE}/reject", key=dpo, json=reject)
    extend = {"reason": REASON, "until": "2027-01-15"}
    url = f"/v1/requests/{to_extend}/extend"
    d("dpo-extend-not-allowed", "POST", url, key=dpo, json=extend)  # the CN profile
    d(
        "dpo-extend-bad-until",
        "POST",
        url,
        key=dpo,
        json={**extend, "until": BIRTHDAY + "X"},
        via=eu,
    )
    extended = d("dpo-extend", "POST", url, key=dpo, json=extend, via=eu, may_show=shows_reason)
    assert extended.status_code == 200, extended.text
    d("dpo-extend-again", "POST", url, key=dpo, json=extend, via=eu)
    approve = f"/v1/requests/{to_extend}/approve"
    approved = d("dpo-approve", "POST", approve, key=dpo, may_show=shows_reason)
    assert approved.status_code == 200 and approved.json()["status"] == "completed"
    d("dpo-approve-again", "POST", approve, key=dpo)
    d("dpo-show", "GET", f"/v1/requests/{sealed}", key=dpo, may_show=shows_reason)
    d("dpo-queue-after", "GET", "/v1/requests", key=dpo, may_show=shows_reason)

    # The member: their requests (with the reasons), copies of everything of their own.
    d("me-requests", "GET", own, key=token_a, may_show=shows_reason)
    d("me-request", "GET", f"{own}/{sealed}", key=token_a, may_show=shows_reason)
    # The relayed copy is still available: asking again names it (409) rather than build one.
    again = d("me-access", "POST", own, key=token_a, json={"type": "access"})
    assert again.json()["existing_request"] == relayed_copy, again.text
    for label, request_id in (("me-copy", relayed_copy),):
        got = d(label, "GET", f"{own}/{request_id}/copy", key=token_a, may_show=MEMBER_KINDS)
        assert got.status_code == 200, got.text
    d("me-copy-of-a-correction", "GET", f"{own}/{sealed}/copy", key=token_a)
    d("me-copy-canary-id", "GET", f"{own}/{quote(EMAIL_RAW, safe='')}/copy", key=token_a)
    waiting = created(
        d("me-correct-to-cancel", "POST", own, key=token_a, json=correction(name=NAME_LATIN)),
        "submitted",
    )
    d("me-cancel", "POST", f"{own}/{waiting}/cancel", key=token_a)
    d("me-cancel-again", "POST", f"{own}/{waiting}/cancel", key=token_a)

    # Member B: a hold (its reason names someone), a deletion that waits on it and runs at
    # its release, and then B is no one.
    holds = f"/v1/members/{b}/holds"
    placed = d("hold-add", "POST", holds, key=dpo, json={"reason": REASON})
    assert placed.status_code == 201, placed.text
    hold = placed.json()["id"]
    past = {"reason": REASON, "until": "2020-01-01T00:00:00+08:00"}
    d("hold-add-past-until", "POST", holds, key=dpo, json=past)
    d("hold-add-no-zone", "POST", holds, key=dpo, json={**past, "until": BIRTHDAY + "T10:00:00"})
    d("hold-canary-member", "POST", f"/v1/members/{PHONE}/holds", key=dpo, json={"reason": REASON})
    d("hold-list", "GET", holds, key=dpo, may_show=shows_reason)
    deletion = created(
        d("me-delete-b", "POST", own, key=token_b, json={"type": "deletion"}), "on_hold"
    )
    d("me-delete-b-again", "POST", own, key=token_b, json={"type": "deletion"})
    d("me-request-b", "GET", f"{own}/{deletion}", key=token_b)
    released = d("hold-release", "DELETE", f"{holds}/{hold}", key=dpo, may_show=shows_reason)
    assert released.status_code == 200, released.text
    done = d("dpo-show-deletion", "GET", f"/v1/requests/{deletion}", key=dpo)
    assert done.json()["status"] == "completed", done.text
    d("hold-release-deleted", "DELETE", f"{holds}/{hold}", key=dpo)
    d("hold-list-deleted", "GET", holds, key=dpo)
    d("read-deleted", "GET", f"/v1/members/{b}?purpose=membership", key=crm)
    d("relay-deleted", "POST", f"/v1/members/{b}/requests", key=relay, json=body)
    lookup = {"email": EMAIL_B, "purpose": "customer_service"}
    d("lookup-deleted", "POST", "/v1/members/lookup", key=crm, json=lookup)
    d("me-deleted", "GET", "/v1/me", key=token_b)
    d("access-log-deleted", "GET", f"/v1/members/{b}/access-log", key=auditor)
    d("audit-after-rights", "GET", "/v1/audit/entries?limit=1000", key=auditor)


@dataclass(frozen=True)
class Scenario:
    exchanges: list[Exchange]
    log: str
    audit_entries: list[bytes]
    secrets: list[str]


# Client-side loggers: the test client's own request log is not the server's.
CLIENT_SIDE_LOGGERS = frozenset({"httpx", "httpcore"})


# The scenario sends some 200 requests. It runs once per backend, and each test
# below inspects one place a canary could leak to in what that run produced.
_SCENARIOS: dict[str, Scenario] = {}


@contextmanager
def eu_profile(services: Services, tmp_path: Path) -> Iterator[TestClient]:
    """The app on the same database and keys under the EU rights profile."""
    policy_dir = tmp_path / "eu-policy"
    shutil.copytree(default_policy_dir(), policy_dir)
    shutil.copyfile(
        Path(default_policy_dir()).parent / "profiles" / "eu" / "rights.toml",
        policy_dir / "rights.toml",
    )
    eu = dataclasses.replace(services, policy=load_policy(policy_dir))
    with TestClient(create_app(services=eu), raise_server_exceptions=False) as client:
        yield client


@pytest.fixture
def scenario(request: pytest.FixtureRequest, backend: str) -> Scenario:
    if backend not in _SCENARIOS:
        app_client: TestClient = request.getfixturevalue("app_client")
        keys: Keys = request.getfixturevalue("keys")
        session: Session = request.getfixturevalue("session")
        read_log: Callable[[], str] = request.getfixturevalue("json_logs")
        services: Services = request.getfixturevalue("services")
        with eu_profile(services, request.getfixturevalue("tmp_path")) as eu:
            rights = RightsSetup(
                dpo=request.getfixturevalue("dpo_key"),
                relay=request.getfixturevalue("relay_key"),
                eu=eu,
            )
            driven = drive_every_endpoint(
                app_client, keys, services.settings.resolved_outbox_dir, rights
            )
        log = read_log()
        try:
            rows = session.execute(text("SELECT entry FROM audit_entry ORDER BY seq")).scalars()
            entries = [bytes(row) for row in rows]
        finally:
            session.close()
        _SCENARIOS[backend] = Scenario(
            exchanges=driven.exchanges, log=log, audit_entries=entries, secrets=driven.secrets
        )
    return _SCENARIOS[backend]


def server_log_lines(log: str) -> list[tuple[dict[str, Any], str]]:
    """(record, raw line) of every server log line; a line that is not JSON is kept raw."""
    lines = []
    for line in log.splitlines():
        if not line.strip():
            continue
        try:
            record = json.loads(line)
        except ValueError:
            record = {"unparsed": line}
        if record.get("logger") not in CLIENT_SIDE_LOGGERS:
            lines.append((record, line))
    return lines


def test_canaries_never_reach_a_log_line(scenario: Scenario) -> None:
    lines = server_log_lines(scenario.log)
    # The capture holds the access line of every request, so it could catch a leak.
    access = [r for r, _ in lines if r.get("event") == "http.request"]
    assert len(access) >= len(scenario.exchanges)
    assert any(r.get("status", 0) >= 400 for r in access)
    for record, line in lines:
        assert leaks(line) == [], record


def test_sign_in_codes_challenges_and_member_tokens_never_reach_a_log_line(
    scenario: Scenario,
) -> None:
    # Two members signed in (a code, a challenge and a token each): the checks ran.
    assert len(scenario.secrets) == 6
    signed_in = [x for x in scenario.exchanges if x.label.startswith("verify-")]
    assert [x.response.status_code for x in signed_in[:4]] == [401, 200, 401, 200]
    lines = server_log_lines(scenario.log)
    assert any(r.get("route") == "/v1/me/login/verify" for r, _ in lines)
    codes = [s for s in scenario.secrets if s.isdigit()]
    assert len(codes) == 2
    for record, line in lines:
        for secret in set(scenario.secrets) - set(codes):
            assert secret not in line, record
        # A six-digit code is looked for as a number of its own, outside the line's
        # time (whose microseconds are six digits) and request id (hex).
        rest = json.dumps(
            {k: v for k, v in record.items() if k not in ("timestamp", "request_id")},
            ensure_ascii=False,
        )
        for code in codes:
            assert not re.search(rf"(?<!\d){code}(?!\d)", rest), record
    for entry in scenario.audit_entries:
        for secret in scenario.secrets:
            assert secret.encode() not in entry


def test_canaries_never_reach_an_audit_entry(scenario: Scenario) -> None:
    # What the answers said was recorded (their Audit-Seq) is on the record: the entries
    # checked below are the scenario's, rights requests included.
    parsed = [parse_entry(entry) for entry in scenario.audit_entries]
    told = {
        int(x.response.headers["Audit-Seq"])
        for x in scenario.exchanges
        if "Audit-Seq" in x.response.headers
    }
    assert len(told) > 50 and told <= {entry["seq"] for entry in parsed}
    actions = {entry["action"] for entry in parsed}
    assert actions >= RIGHTS_ACTIONS, RIGHTS_ACTIONS - actions
    for entry in scenario.audit_entries:
        assert leaks(entry) == [], entry.decode()


# What the rights part of the scenario records: received and moved requests (with the
# relayed ones' verification method), applied corrections, downloads of the copy, holds,
# the deletion.
RIGHTS_ACTIONS = frozenset(
    {"rights.request", "member.correct", "rights.download", "rights.hold", "member.delete"}
)

# How each rights exchange is answered: the leak checks hold only if these happened (a
# reason never accepted could never leak).
RIGHTS_ANSWERS = {
    "me-correct-applied": 201,
    "me-correct-sealed": 201,
    **{
        f"me-correct-{label}": 422
        for label in (
            "phone-as-email",
            "email-as-phone",
            "impossible-birthday",
            "wrong-check-digit",
            "name-with-nul",
            "phone-as-points",
            "name-as-unknown-key",
            "email-as-unknown-key",
            "name-as-type",
            "changes-of-an-access",
        )
    },
    "me-correct-same-field-as-open-one": 409,
    "relay-access": 201,
    "relay-correct": 201,
    **{
        f"relay-{label}": 422
        for label in (
            "method-with-phone",
            "method-is-name",
            "reference-is-email",
            "reference-is-name",
            "received-on-birthday",
            "correct-phone-as-email",
        )
    },
    "relay-canary-member": 404,
    "queue": 200,
    "queue-canary-cursor": 422,
    "queue-canary-status": 422,
    "dpo-reject": 200,
    "dpo-reject-again": 409,
    "dpo-reject-canary-id": 404,
    "dpo-extend-not-allowed": 409,
    "dpo-extend-bad-until": 422,
    "dpo-extend": 200,
    "dpo-extend-again": 409,
    "dpo-approve": 200,
    "dpo-approve-again": 409,
    "dpo-show": 200,
    "dpo-queue-after": 200,
    "me-requests": 200,
    "me-request": 200,
    "me-access": 409,
    "me-copy": 200,
    "me-copy-of-a-correction": 404,
    "me-copy-canary-id": 404,
    "me-correct-to-cancel": 201,
    "me-cancel": 200,
    "me-cancel-again": 409,
    "hold-add": 201,
    "hold-add-past-until": 422,
    "hold-add-no-zone": 422,
    "hold-canary-member": 404,
    "hold-list": 200,
    "me-delete-b": 201,
    "me-delete-b-again": 409,
    "me-request-b": 200,
    "hold-release": 200,
    "dpo-show-deletion": 200,
    "hold-release-deleted": 404,
    "hold-list-deleted": 404,
    "read-deleted": 404,
    "relay-deleted": 404,
    "lookup-deleted": 200,
    "me-deleted": 401,
    "access-log-deleted": 200,
    "audit-after-rights": 200,
}


def test_the_rights_endpoints_were_driven_as_the_scenario_says(scenario: Scenario) -> None:
    answered = {x.label: x.response.status_code for x in scenario.exchanges}
    assert {label: answered.get(label) for label in RIGHTS_ANSWERS} == RIGHTS_ANSWERS
    by_label = {x.label: x.response for x in scenario.exchanges}
    # The deletion waited on the hold and ran at its release; afterwards B is no one.
    assert by_label["me-delete-b"].json()["status"] == "on_hold"
    assert by_label["dpo-show-deletion"].json()["status"] == "completed"
    assert by_label["lookup-deleted"].json()["ids"] == []
    # The relayed requests were taken with their canary-like references.
    assert by_label["relay-access"].json()["channel"] == "relayed"


def test_canaries_never_reach_an_error_response(scenario: Scenario) -> None:
    errors = [x for x in scenario.exchanges if x.response.status_code >= 400]
    assert len(errors) > 40  # the bad requests above all failed
    for x in errors:
        assert x.response.headers["content-type"].startswith("application/problem+json"), x.label
        assert leaks(x.response.text) == [], (x.label, x.response.text)
        headers = "\n".join(f"{k}: {v}" for k, v in x.response.headers.items())
        assert leaks(headers) == [], (x.label, headers)


def test_successful_answers_show_only_the_clear_views_their_purpose_grants(
    scenario: Scenario,
) -> None:
    ok = [x for x in scenario.exchanges if x.response.status_code < 400]
    for x in ok:
        hidden = ALL_KINDS - x.may_show
        assert leaks(x.response.text, hidden) == [], (x.label, x.response.text)
        headers = "\n".join(f"{k}: {v}" for k, v in x.response.headers.items())
        assert leaks(headers) == [], (x.label, headers)
    # The detector does find clear values where a purpose releases them.
    by_label = {x.label: x.response for x in ok}
    assert PHONE_E164 in by_label["read-a-delivery"].text
    assert leaks(by_label["read-a-delivery"].text, {"name", "phone", "address"})
    assert ID_NUMBER in by_label["read-a-identity_verification"].text
    assert leaks(by_label["read-a-marketing_email"].text, {"email"})
    assert leaks(by_label["export-delivery"].text, {"name"})
    # The member's copy holds their values (the corrected ones too), and the answers that
    # show a reason show the one the DPO wrote: the reason canary is there to be found.
    # (The copy was built when the client relayed the request: after the self-service
    # address, before the DPO's decisions.)
    copy = by_label["me-copy"].json()["fields"]
    assert (copy["address"], copy["id_number"]) == (ADDRESS_NEW, ID_NUMBER)
    assert leaks(by_label["me-copy"].text, {"name", "phone", "id"})
    for label in ("dpo-reject", "dpo-extend", "me-request", "hold-list", "hold-release"):
        assert leaks(by_label[label].text, {"reason"}), label
    # And the masked views are really there, not just absent values.
    masked = by_label["read-a-customer_service"].json()["fields"]
    assert masked["phone"] == "139****5670"
    assert masked["name"] == "周**"
    assert masked["email"] == "c***@example.org"


def test_canary_given_as_a_withdrawal_notice_version_never_reaches_the_audit_log(
    app_client: TestClient, keys: Keys, session: Session
) -> None:
    # A withdrawal needs no accepted notice, but the version it names is stored
    # and audited, so free text there is a way for personal data into the log.
    member = app_client.post("/v1/members", json=MEMBER_B, headers=auth(keys.crm))
    assert member.status_code == 201, member.text
    responses = [
        app_client.post(
            f"/v1/members/{member.json()['id']}/consents",
            json=consent("marketing_sms", status="withdrawn", notice_version=value),
            headers=auth(keys.crm),
        )
        for value in (EMAIL_RAW, PHONE, NAME_LATIN)
    ]
    try:
        entries = b"\n".join(
            bytes(e) for e in session.execute(text("SELECT entry FROM audit_entry")).scalars()
        )
    finally:
        session.close()
    assert leaks(entries) == []
    for response in responses:
        assert leaks(response.text) == [], response.text
