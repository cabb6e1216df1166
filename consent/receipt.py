"""Consent receipts shaped after the Kantara Initiative Consent Receipt v1.1.

The receipt names the member only by id: it is evidence of what was agreed,
under which notice, with which legal basis, and it can be handed to the member
or an auditor without exposing their personal data.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from policies.model import Policy

RECEIPT_VERSION = "KI-CR-v1.1.0"


def build_receipt(
    policy: Policy,
    *,
    receipt_id: str,
    member_id: str,
    purposes: list[str],
    notice_versions: dict[str, str | None],
    channel: str,
    collected_at: datetime,
) -> dict[str, Any]:
    programme = policy.programme
    purpose_items: list[dict[str, Any]] = []
    extensions: dict[str, Any] = {}
    sensitive_categories: set[str] = set()
    for pid in purposes:
        spec = policy.purposes[pid]
        field_specs = [policy.fields[name] for name in spec.fields]
        sensitive_categories.update(f.category for f in field_specs if f.sensitive)
        purpose_items.append(
            {
                "purpose": spec.description,
                "purposeCategory": [pid],
                "consentType": "EXPLICIT",
                "piiCategory": sorted({f.category for f in field_specs}),
                "primaryPurpose": False,
                "termination": (
                    f"until withdrawn; data kept {spec.retention_days} days after"
                    if spec.retention_days
                    else "until withdrawn"
                ),
                "thirdPartyDisclosure": spec.third_party is not None,
                **({"thirdPartyName": spec.third_party} if spec.third_party else {}),
            }
        )
        version = notice_versions[pid]
        notice = policy.notices.get(version) if version else None
        extensions[pid] = {
            "noticeVersion": version,
            "noticeSha256": notice.sha256 if notice else None,
            "noticeUrl": notice.url if notice else None,
            "legalBasis": spec.legal_basis,
            "separateConsentGround": spec.separate_consent_ground,
        }
    return {
        "version": RECEIPT_VERSION,
        "jurisdiction": programme.jurisdiction,
        "consentTimestamp": int(collected_at.timestamp()),
        "collectionMethod": channel,
        "consentReceiptID": receipt_id,
        "language": "zh-CN",
        "piiPrincipalId": member_id,
        "piiControllers": [
            {
                "piiController": programme.controller,
                "contact": programme.controller_contact,
                "email": programme.controller_contact,
                "onBehalf": False,
            }
        ],
        "policyUrl": programme.policy_url,
        "services": [{"service": programme.name, "purposes": purpose_items}],
        "sensitive": bool(sensitive_categories),
        "spiCat": sorted(sensitive_categories),
        "extensions": {"memberguard": {"policyVersion": policy.version, "purposes": extensions}},
    }
