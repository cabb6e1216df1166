"""Runtime configuration: one pydantic-settings object, passed down explicitly.

Nothing reads the environment at import time; ``Settings()`` is built by the
CLI or by tests and handed to ``create_app`` and the services.
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal

import limits
from limits.errors import ConfigurationError
from limits.storage import storage_from_string
from pydantic import (
    Field,
    SecretStr,
    ValidationError,
    ValidationInfo,
    field_validator,
    model_validator,
)
from pydantic_settings import BaseSettings, SettingsConfigDict

from core.errors import SetupError

ENV_PREFIX = "MEMBERGUARD_"


class SettingsError(SetupError):
    """An environment variable holds a value the settings refuse."""


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix=ENV_PREFIX, extra="ignore")

    home: Path = Field(default=Path("./var"), description="Directory for the SQLite file and keys.")
    database_url: SecretStr | None = Field(
        default=None,
        description="SQLAlchemy URL. Default: SQLite file <home>/memberguard.db.",
    )
    key_provider: Literal["local", "env"] = "local"
    key_path: Path | None = Field(default=None, description="Default: <home>/keys/keyring.json")
    keyring_env: str = Field(
        default="MEMBERGUARD_KEYRING",
        description="Environment variable holding the base64 keyring for key_provider=env.",
    )
    policy_path: Path | None = Field(
        default=None, description="Directory or file of policy TOML. Default: built-in policy."
    )
    log_format: Literal["json", "console"] = "json"
    log_level: str = "INFO"
    audit_origin: str = Field(
        default="memberguard/audit-log",
        pattern=r"^[^\s+]+$",
        description="The log's name: the checkpoint origin line and the signing key's name.",
    )
    audit_signer_path: Path | None = Field(
        default=None,
        description="Ed25519 checkpoint signing key. Default: <home>/keys/audit-signer.key",
    )
    audit_signer_env: str = Field(
        default="MEMBERGUARD_AUDIT_SIGNER",
        description="For key_provider=env: the variable holding the signer key text.",
    )
    checkpoint_every_entries: int = Field(default=1000, ge=1)
    checkpoint_every_seconds: int = Field(default=300, ge=1)
    checkpoint_dir: Path | None = Field(
        default=None,
        description="Where signed checkpoints are published. Default: <home>/checkpoints",
    )
    keyring_heartbeat_seconds: int = Field(
        default=15,
        ge=1,
        description="How often a server reloads a changed key file and records the KEK it uses.",
    )
    keyring_live_seconds: int = Field(
        default=60,
        ge=1,
        description="A server seen within this long counts as running for `keys rewrap`.",
    )
    max_body_bytes: int = Field(default=64 * 1024, ge=1024)
    docs_public: bool = Field(
        default=False,
        description="Serve /docs and /openapi.json without a key (the demo turns this on).",
    )
    export_batch_size: int = Field(default=500, ge=1, le=5000)
    sqlite_synchronous: Literal["FULL", "NORMAL"] = Field(
        default="FULL",
        description="FULL survives power loss; NORMAL survives a process crash only.",
    )

    # Lookups (gate/lookups.py): the rate per client and purpose, the stricter
    # rate once a client's lookups mostly miss, and what "mostly" means.
    lookup_rate: str = Field(default="30/minute", description="Lookups per client and purpose.")
    lookup_suspect_rate: str = Field(
        default="5/minute", description="The rate for a client flagged for missing lookups."
    )
    lookup_miss_window_seconds: int = Field(default=3600, ge=60)
    lookup_suspect_misses: int = Field(
        default=20, ge=1, description="Misses in the window before the share of misses counts."
    )
    lookup_suspect_miss_share: float = Field(default=0.5, gt=0, lt=1)
    rate_limit_storage: str = Field(
        default="memory://",
        description="Where rate-limit counters live: a `limits` storage URI (memory: per process).",
    )

    # Members (principals.members, the sign-in use case).
    member_token_minutes: int = Field(
        default=30, ge=1, le=24 * 60, description="How long a member's sign-in lasts."
    )
    member_login_code_minutes: int = Field(
        default=10, ge=1, le=60, description="How long a one-time sign-in code can be used."
    )
    member_login_max_attempts: int = Field(
        default=5, ge=1, le=20, description="Wrong codes that burn a sign-in challenge."
    )
    # Sign-in rates (gate/signin.py), moving windows; several limits are
    # separated by ';' and all of them hold. Per contact: codes asked for one
    # phone number or address, from anywhere (this bounds how many codes an
    # attacker can try against one member). Per address: requests from one
    # client IP address (behind a proxy, see trusted_proxies).
    member_login_rate_per_contact: str = Field(
        default="5/hour;20/day", description="Sign-in codes asked for one phone or e-mail."
    )
    member_login_rate_per_address: str = Field(
        default="20/hour", description="Sign-in codes asked from one client address."
    )
    member_verify_rate_per_address: str = Field(
        default="60/hour", description="Codes tried from one client address."
    )
    # The staff console (web/console.py): a key signs in once, then a session.
    console_session_minutes: int = Field(
        default=8 * 60, ge=5, le=24 * 60, description="How long a console sign-in lasts."
    )
    console_failed_rate_per_address: str = Field(
        default="10/hour", description="Wrong console keys tried from one client address."
    )
    trusted_proxies: str | None = Field(
        default=None,
        description="Addresses of reverse proxies whose X-Forwarded-For names the client "
        "(uvicorn's forwarded_allow_ips, e.g. '10.0.0.5,10.0.0.6'); unset: the peer's address.",
    )

    # Rights requests (gate.rights_jobs): where deadline notices for the DPO go.
    dpo_contact: str | None = Field(
        default=None,
        max_length=320,
        description="Where the DPO's notices go (requests due or overdue, acknowledgements "
        "overdue): an e-mail address, or a phone number for SMS. Default: the policy's "
        "programme.controller_contact.",
    )

    # Messages to members and staff (notify/): a transport per channel.
    email_transport: Literal["outbox", "smtp"] = Field(
        default="outbox",
        description="How e-mail is sent. outbox: one private JSON file per message; "
        "smtp: to MEMBERGUARD_SMTP_URL, from MEMBERGUARD_SMTP_FROM.",
    )
    sms_transport: Literal["outbox", "http"] = Field(
        default="outbox",
        description="How SMS are sent. outbox, or http: to MEMBERGUARD_SMS_GATEWAY_URL.",
    )
    outbox_dir: Path | None = Field(default=None, description="Default: <home>/outbox")
    outbox_keep_days: int = Field(
        default=7,
        ge=1,
        description="The outbox's files (recipient and body in clear) are deleted after this "
        "many days by the notify.outbox job: deleting a member does not reach messages sent.",
    )
    smtp_url: SecretStr | None = Field(
        default=None,
        description="smtp://user:password@host:587 (STARTTLS), smtps://user:password@host:465 "
        "(TLS), or smtp://localhost:25?starttls=false (a relay on this host only).",
    )
    smtp_from: str | None = Field(
        default=None, description="The sender: noreply@example.com or 'Name <noreply@…>'."
    )
    sms_gateway_url: SecretStr | None = Field(
        default=None, description="https:// (http:// only to this host); POSTed JSON per SMS."
    )
    sms_gateway_token: SecretStr | None = Field(
        default=None, description="Sent as Authorization: Bearer <token>, when set."
    )
    notifier_timeout_seconds: float = Field(
        default=10, gt=0, le=120, description="For each connect, read and write of a transport."
    )

    # The scheduler (worker/): `memberguard worker`, and a thread of each server.
    worker_in_server: bool = Field(
        default=True,
        description="Run the scheduled jobs in a background thread of `serve` too.",
    )
    worker_tick_seconds: int = Field(
        default=5, ge=1, description="How often a worker looks for jobs that are due."
    )
    worker_max_runtime_seconds: int = Field(
        default=600,
        ge=1,
        description="A job's lease: after this long, a run that never finished (a crashed "
        "worker) is taken over by another worker.",
    )
    worker_max_backoff_seconds: int = Field(
        default=3600,
        ge=1,
        description="The longest a failing job waits before its next try.",
    )
    # Jobs' intervals, with the domain they belong to.
    checkpoint_job_seconds: int = Field(
        default=60,
        ge=1,
        description="How often the worker cuts a checkpoint that is due by time on a log "
        "that no commit has checkpointed (a quiet system).",
    )
    outbox_job_seconds: int = Field(
        default=3600, ge=1, description="How often the worker deletes outbox files past their days."
    )
    rights_job_seconds: int = Field(
        default=300,
        ge=1,
        description="How often the worker expires access copies, ends lapsed holds (running "
        "the deletions they held) and flags requests due soon or overdue to the DPO.",
    )
    breach_job_seconds: int = Field(
        default=300,
        ge=1,
        description="How often the worker sends queued breach notices to members and "
        "reminds the DPO of incidents whose authority deadline is near or past.",
    )
    # The change feed (gate.feed): acknowledgements a deletion asks of its recipients.
    feed_ack_remind_hours: int = Field(
        default=72,
        ge=1,
        le=24 * 365,
        description="Tell the DPO of each recipient that has not acknowledged an event that "
        "asks for it (a deletion) this many hours after it was written, and again every as "
        "many hours while it has not.",
    )
    feed_reminders_job_seconds: int = Field(
        default=3600,
        ge=1,
        description="How often the worker looks for overdue acknowledgements (feed.reminders).",
    )

    # The change feed's message broker (feed/broker.py, the worker's feed.broker job).
    amqp_url: SecretStr | None = Field(
        default=None,
        description="amqp://user:password@host:5672/%2F (the vhost percent-encoded) or "
        "amqps://… (TLS): every feed event is also published to the topic exchange "
        "memberguard.events. Unset: no broker, and no feed.broker job.",
    )
    broker_job_seconds: int = Field(
        default=5,
        ge=1,
        description="How often the worker publishes the feed events the broker has not "
        "confirmed yet (new ones, and those a failed run left).",
    )
    # Webhooks (feed/webhooks.py): the push side of the change feed.
    webhooks_allow_insecure: bool = Field(
        default=False,
        description="Accept http:// webhook URLs and hosts on loopback, private and link-local "
        "addresses (development and tests only).",
    )
    webhook_timeout_seconds: float = Field(
        default=10, gt=0, le=60, description="For each connect, write and read of a delivery."
    )
    webhook_secret_overlap_hours: int = Field(
        default=24,
        ge=0,
        description="After a secret rotation, deliveries are signed by the old secret too for "
        "this long, so that receivers can switch without losing a delivery.",
    )
    webhook_job_seconds: int = Field(
        default=5, ge=1, description="How often the worker delivers the webhooks that are due."
    )

    @model_validator(mode="after")
    def _heartbeat_within_live_window(self) -> Settings:
        # A server that beats less often than twice per window would drop out
        # of it between beats, and `keys rewrap` would pass it by.
        if self.keyring_live_seconds < 2 * self.keyring_heartbeat_seconds:
            raise ValueError(
                f"{ENV_PREFIX}KEYRING_LIVE_SECONDS must be at least twice "
                f"{ENV_PREFIX}KEYRING_HEARTBEAT_SECONDS"
            )
        return self

    @model_validator(mode="after")
    def _transports_configured(self) -> Settings:
        # Refused at start, not at the first message: a sign-in code that
        # cannot be sent is a member who cannot sign in.
        needs = {
            ("email", "smtp"): ("smtp_url", "smtp_from"),
            ("sms", "http"): ("sms_gateway_url",),
        }
        problems = []
        for channel, transport in (("email", self.email_transport), ("sms", self.sms_transport)):
            missing = [n for n in needs.get((channel, transport), ()) if getattr(self, n) is None]
            if missing:
                names = " and ".join(f"{ENV_PREFIX}{name.upper()}" for name in missing)
                problems.append(
                    f"{ENV_PREFIX}{channel.upper()}_TRANSPORT={transport} needs {names}"
                )
        if problems:
            raise ValueError("; ".join(problems))
        return self

    @field_validator("smtp_url", "sms_gateway_url")
    @classmethod
    def _transport_url(cls, value: SecretStr | None, info: ValidationInfo) -> SecretStr | None:
        # The rules live with the transports; their messages never hold the
        # URL (it may carry a password or the gateway's key).
        from notify.http import check_gateway_url
        from notify.smtp import parse_smtp_url

        if value is not None:
            check = parse_smtp_url if info.field_name == "smtp_url" else check_gateway_url
            check(value.get_secret_value())
        return value

    @field_validator("amqp_url")
    @classmethod
    def _amqp_url(cls, value: SecretStr | None) -> SecretStr | None:
        # The rules live with the publisher; its messages never hold the URL.
        from feed.broker import parse_amqp_url

        if value is not None:
            parse_amqp_url(value.get_secret_value())
        return value

    @field_validator("smtp_from")
    @classmethod
    def _sender(cls, value: str | None) -> str | None:
        from notify.smtp import check_sender

        return check_sender(value) if value is not None else None

    @field_validator("rate_limit_storage")
    @classmethod
    def _storage(cls, value: str) -> str:
        # Checked here so that a wrong URI or a missing client package fails at
        # start-up, not at the first lookup. Memory is not built here: it would
        # start the storage's expiry timer (``gate.context.RateLimits``).
        if value != "memory://":
            try:
                storage_from_string(value)
            except ConfigurationError as exc:
                # The URI may hold a password: the message names the scheme only.
                scheme = value.split("://", 1)[0] if "://" in value else "(none)"
                why = (
                    "not a storage scheme of the `limits` package"
                    if "unknown storage scheme" in str(exc)
                    else "its client package is not installed (see the `limits` documentation)"
                )
                raise ValueError(f"rate-limit storage {scheme!r}: {why}") from None
        return value

    @field_validator("lookup_rate", "lookup_suspect_rate")
    @classmethod
    def _rate(cls, value: str) -> str:
        try:
            limits.parse(value)
        except ValueError:
            # Not the value: ``load_settings`` names the variable and the rule only.
            raise ValueError("not a rate such as '30/minute'") from None
        return value

    @field_validator(
        "member_login_rate_per_contact",
        "member_login_rate_per_address",
        "member_verify_rate_per_address",
        "console_failed_rate_per_address",
    )
    @classmethod
    def _rates(cls, value: str) -> str:
        try:
            if not limits.parse_many(value):
                raise ValueError
        except ValueError:
            raise ValueError("not a rate such as '5/hour' or '5/hour;20/day'") from None
        return value

    @property
    def resolved_database_url(self) -> str:
        if self.database_url is not None:
            return self.database_url.get_secret_value()
        return f"sqlite:///{(self.home / 'memberguard.db').as_posix()}"

    @property
    def resolved_signer_path(self) -> Path:
        return self.audit_signer_path or self.home / "keys" / "audit-signer.key"

    @property
    def resolved_checkpoint_dir(self) -> Path:
        return self.checkpoint_dir or self.home / "checkpoints"

    @property
    def resolved_outbox_dir(self) -> Path:
        return self.outbox_dir or self.home / "outbox"

    @property
    def resolved_key_path(self) -> Path:
        return self.key_path if self.key_path is not None else self.home / "keys" / "keyring.json"


def load_settings() -> Settings:
    """``Settings()`` from the environment, for entry points.

    A refused value is a ``SettingsError`` that names the variable and the rule
    it breaks, never the value (it may be a secret, such as a URL's password).
    """
    try:
        return Settings()
    except ValidationError as exc:
        errors = exc.errors(include_input=False, include_url=False)
        problems = "; ".join(
            # A rule between settings (no loc) names its variables itself.
            (
                f"{ENV_PREFIX}{'_'.join(str(part) for part in error['loc']).upper()}: "
                if error["loc"]
                else ""
            )
            + f"{error['msg'][0].lower()}{error['msg'][1:]}"
            for error in errors
        )
        fix = "fix the variable" if len(errors) == 1 else "fix these variables"
        raise SettingsError(f"{problems}; {fix}") from None
