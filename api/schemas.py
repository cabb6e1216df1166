"""Request and response bodies of the v1 contract (DESIGN.md, "HTTP API v1")."""

from __future__ import annotations

from datetime import date
from typing import Any, Literal

from pydantic import AwareDatetime, BaseModel, ConfigDict, Field, StrictStr, model_validator

from principals.signin import CHALLENGE_PATTERN
from rights.requests import VerificationMethod


class _In(BaseModel):
    model_config = ConfigDict(extra="forbid")


Purpose = Field(min_length=1, max_length=64)


class ConsentIn(_In):
    purposes: list[StrictStr] | None = Field(default=None, min_length=1, max_length=20)
    purpose: StrictStr | None = Field(default=None, max_length=64)
    status: Literal["granted", "withdrawn", "refused"]
    channel: StrictStr = Field(min_length=1, max_length=32)
    collected_at: AwareDatetime
    notice_version: StrictStr | None = Field(
        default=None, min_length=1, max_length=64, pattern=r"^[A-Za-z0-9._-]+$"
    )

    @model_validator(mode="after")
    def _one_form(self) -> ConsentIn:
        if (self.purposes is None) == (self.purpose is None):
            raise ValueError("give either 'purposes' (a list) or 'purpose', not both")
        return self

    @property
    def purpose_list(self) -> list[str]:
        return self.purposes if self.purposes is not None else [self.purpose or ""]


class LookupIn(_In):
    phone: StrictStr | None = Field(default=None, max_length=64)
    email: StrictStr | None = Field(default=None, max_length=320)
    purpose: StrictStr = Purpose

    @model_validator(mode="after")
    def _one_key(self) -> LookupIn:
        if (self.phone is None) == (self.email is None):
            raise ValueError("give exactly one of 'phone' or 'email'")
        return self


class LoginIn(_In):
    phone: StrictStr | None = Field(default=None, max_length=64)
    email: StrictStr | None = Field(default=None, max_length=320)

    @model_validator(mode="after")
    def _one_contact(self) -> LoginIn:
        if (self.phone is None) == (self.email is None):
            raise ValueError("give exactly one of 'phone' or 'email'")
        return self


class VerifyIn(_In):
    challenge: StrictStr = Field(pattern=CHALLENGE_PATTERN, description="From POST /v1/me/login.")
    # Six digits; full-width digits and spaces are accepted (principals.signin).
    code: StrictStr = Field(min_length=1, max_length=32)


class OwnConsentIn(_In):
    purposes: list[StrictStr] = Field(min_length=1, max_length=20)
    status: Literal["granted", "withdrawn"]


class ClientIn(_In):
    name: StrictStr = Field(min_length=1, max_length=64)
    role: Literal["client", "auditor", "dpo", "admin"]
    purposes: list[StrictStr] = Field(default_factory=list, max_length=64)
    scopes: list[StrictStr] = Field(default_factory=list, max_length=8)


# -- rights requests --------------------------------------------------------------

Reason = Field(
    min_length=1,
    max_length=500,
    description="Shown to the member; name case references, not facts about the member.",
)


class RightsRequestIn(_In):
    type: Literal["access", "correction", "deletion"]
    changes: dict[str, Any] | None = Field(
        default=None,
        max_length=64,
        description='A correction\'s new values by field id, e.g. {"email": "new@example.com"}; '
        "only for a correction.",
    )


class VerificationIn(_In):
    method: VerificationMethod = Field(
        description="How the relaying system verified the member (README, Rights requests). "
        "A closed list: it is recorded in the request's audit entry."
    )
    reference: StrictStr | None = Field(
        default=None,
        pattern=r"^[A-Za-z0-9][A-Za-z0-9._:/-]{0,63}$",
        description="The relaying system's own case or ticket id (opaque; never the evidence "
        "itself, such as a document number).",
    )


class RelayedRequestIn(RightsRequestIn):
    verification: VerificationIn
    received_at: AwareDatetime | None = Field(
        default=None, description="When the member made the request; not in the future."
    )


class RejectIn(_In):
    reason: StrictStr = Reason


class ExtendIn(_In):
    reason: StrictStr = Reason
    until: date | AwareDatetime = Field(
        description="The new last day (a date, or a time whose day in the policy's zone counts)."
    )


class HoldIn(_In):
    reason: StrictStr = Reason
    until: AwareDatetime | None = Field(
        default=None, description="When the hold ends by itself; none: until released."
    )


class RightsRequestOut(BaseModel):
    id: str
    type: str
    member_id: str
    status: str
    received_at: str
    due_at: str
    deadline: dict[str, Any]
    overdue: bool
    channel: str
    fields: list[str]
    history: list[dict[str, Any]]
    completed_at: str | None
    recipients: list[dict[str, Any]]


class RightsRequestsOut(BaseModel):
    items: list[RightsRequestOut]
    next_cursor: str | None


class HoldOut(BaseModel):
    id: str
    member_id: str
    reason: str
    until: str | None
    active: bool
    created_by: str
    created_at: str
    released_at: str | None
    released_by: str | None


class HoldsOut(BaseModel):
    items: list[HoldOut]


class CreatedOut(BaseModel):
    id: str


class MemberOut(BaseModel):
    id: str
    purpose: str
    fields: dict[str, Any]
    withheld: dict[str, str]


class LookupOut(BaseModel):
    ids: list[str]


class ConsentRecordedOut(BaseModel):
    events: list[dict[str, Any]]
    receipt: dict[str, Any] | None
    state: dict[str, dict[str, Any]] = Field(
        description="Each purpose's state after this change (an older event does not change it)."
    )


class ConsentStateOut(BaseModel):
    purposes: dict[str, dict[str, Any]]


class ClientOut(BaseModel):
    id: str
    name: str
    role: str
    purposes: list[str]
    scopes: list[str]
    created_at: str
    revoked_at: str | None


class ClientCreatedOut(ClientOut):
    key: str = Field(description="Shown once; only its hash is stored.")


class ReadinessOut(BaseModel):
    status: Literal["ready", "not-ready"]
    checks: dict[str, str] = Field(
        description='Each dependency: "ok", or why not (a type name, never a value).'
    )


class AuditHeadOut(BaseModel):
    size: int
    head_hash: str
    checkpoint: str | None


class AuditEntriesOut(BaseModel):
    entries: list[dict[str, Any]]
    next_cursor: str | None


class SignInChallengeOut(BaseModel):
    challenge: str = Field(description="Send it back with the code to POST /v1/me/login/verify.")
    expires_at: str


class SessionOut(BaseModel):
    token: str = Field(description="A member token (mgm_…), shown once; only its hash is stored.")
    expires_at: str


class OwnRecordOut(BaseModel):
    id: str
    fields: dict[str, Any]


class OwnConsentsOut(BaseModel):
    purposes: dict[str, dict[str, Any]] = Field(
        description="Every purpose that rests on consent: description, legal_basis, notice, "
        "separate_consent, and the member's status, notice_version, updated_at, in_effect."
    )


class AccessLogItemOut(BaseModel):
    seq: int
    at: str
    recipient: dict[str, Any] | None
    purpose: str | None
    action: str
    decision: str
    fields: dict[str, str]
    released: str
    prev: int | None


class AccessLogOut(BaseModel):
    items: list[AccessLogItemOut]
    next_cursor: str | None


# -- webhooks (admin) ---------------------------------------------------------------


class WebhookIn(_In):
    url: StrictStr = Field(
        min_length=1,
        max_length=2048,
        description="https:// to a public host (the rules: README, Webhooks).",
    )


class WebhookSetOut(BaseModel):
    client_id: str
    url: str
    origin: str = Field(description="Scheme, host and port: what the audit log records.")
    secret: str = Field(description="whsec_…, shown once; deliveries are signed with it.")


class WebhookSecretOut(BaseModel):
    client_id: str
    secret: str = Field(description="whsec_…, shown once.")
    previous_secret_valid_until: str = Field(
        description="Until then, deliveries are signed by the previous secret too."
    )


class WebhookOut(BaseModel):
    client_id: str
    origin: str
    created_at: str
    updated_at: str
    rotated_at: str | None
    previous_secret_valid_until: str | None
    delivered_through_seq: int = Field(
        description="Every event of the client up to this seq is delivered or failed."
    )
    pending: int
    head_attempts: int = Field(description="Tries of the next event so far.")
    next_attempt_at: str


class DeliveryAttemptOut(BaseModel):
    event_id: str = Field(description="The webhook-id of the delivery.")
    seq: int
    type: str
    attempt: int
    at: str
    status_code: int | None
    error: str | None = Field(description="Why no answer came: timeout, connect-error, ….")
    outcome: Literal["delivered", "retry", "failed"]
    next_attempt_at: str | None


class DeliveryAttemptsOut(BaseModel):
    items: list[DeliveryAttemptOut]
    next_cursor: str | None


class FeedEventOut(BaseModel):
    id: str = Field(
        description="The event's id: the same for every recipient and channel "
        "(pull, webhook-id, broker message id); dedupe by it."
    )
    seq: int = Field(description="The caller's own sequence: 1, 2, 3 … without gaps.")
    type: str
    created_at: str
    data: dict[str, Any] = Field(description="Ids, purposes and field names only, never a value.")
    ack_required: bool
    acknowledged_at: str | None


class FeedEventsOut(BaseModel):
    items: list[FeedEventOut]
    next_after: int


# -- breach incidents --------------------------------------------------------------------

IncidentText = Field(min_length=1, max_length=10_000)


class IncidentScopeIn(_In):
    kind: Literal["client", "members", "all"] = Field(
        description="client: a compromised system over a window; members: the listed "
        "members; all: the vault or its keys."
    )
    client: StrictStr | None = Field(
        default=None, min_length=1, max_length=64, description="kind client: its id or name."
    )
    from_: AwareDatetime | None = Field(
        default=None, alias="from", description="kind client: the window's start (included)."
    )
    to: AwareDatetime | None = Field(
        default=None,
        description="kind client: the window's end (excluded); none: until the incident is opened.",
    )
    member_ids: list[StrictStr] | None = Field(
        default=None, min_length=1, max_length=10_000, description="kind members: their ids."
    )

    model_config = ConfigDict(extra="forbid", populate_by_name=False)

    def as_mapping(self) -> dict[str, Any]:
        return self.model_dump(by_alias=True, exclude_none=True)


class IncidentIn(_In):
    title: StrictStr = Field(min_length=1, max_length=200)
    description: StrictStr = IncidentText
    detected_at: AwareDatetime = Field(
        description="When the organisation became aware: the authority's deadline counts "
        "from here. Not in the future."
    )
    severity: Literal["low", "medium", "high", "critical"]
    scope: IncidentScopeIn


class AssessIn(_In):
    consequences: StrictStr = Field(
        min_length=1, max_length=10_000, description="What the breach likely means for members."
    )
    measures: StrictStr = Field(
        min_length=1, max_length=10_000, description="What was done, or is proposed, about it."
    )
    member_advice: StrictStr = Field(
        min_length=1, max_length=10_000, description="What members can do to protect themselves."
    )


class AuthorityNotifiedIn(_In):
    at: AwareDatetime = Field(description="When the authority was notified; not in the future.")
    authority: StrictStr = Field(min_length=1, max_length=200)
    reference: StrictStr | None = Field(
        default=None, min_length=1, max_length=100, description="The authority's case number."
    )


class NotifyMembersIn(_In):
    channels: list[Literal["sms", "email"]] = Field(
        min_length=1,
        max_length=2,
        description="The channels that may be used, in order of preference: each member gets "
        "one notice, by the first they have a contact for.",
    )


class CloseIn(_In):
    summary: StrictStr = IncidentText


class IncidentOut(BaseModel):
    id: str
    status: str
    title: str
    description: str
    severity: str
    scope: dict[str, Any]
    detected_at: str
    opened_at: str
    authority_due_at: str
    authority_rule: str
    authority_overdue: bool
    authority_deadline_met: bool | None
    authority_seconds_left: int | None
    authority_notified: dict[str, Any] | None
    assessment: dict[str, Any] | None
    affected: dict[str, Any]
    members_notified_at: str | None
    closed_at: str | None
    summary: str | None
    timeline: list[dict[str, Any]]
    notices: dict[str, int] | None = None


class IncidentBriefOut(BaseModel):
    id: str
    status: str
    title: str
    severity: str
    detected_at: str
    authority_due_at: str
    authority_overdue: bool
    authority_seconds_left: int | None
    affected_members: int


class IncidentsOut(BaseModel):
    items: list[IncidentBriefOut]


class NoticeTotalsOut(BaseModel):
    queued: int
    sent: int
    failed: int
    unreachable: int
    not_asked: int
