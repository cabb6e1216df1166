"""Webhooks without I/O: the URL rules, the secret and its storage, signatures, backoff."""

from __future__ import annotations

import base64
import json
from datetime import UTC, datetime, timedelta

import httpx
import pytest
from hypothesis import given
from hypothesis import strategies as st
from standardwebhooks.webhooks import Webhook

from feed import webhooks
from feed.broker import broker_message
from feed.models import FeedDelivery, FeedEvent
from feed.pull import Delivered, item_view
from feed.webhooks import (
    WebhookUrlRefused,
    check_webhook_url,
    is_public_address,
    new_secret,
    retry_ceiling,
    retry_delay,
    seal,
    signature_header,
    unseal,
)
from tests.integration.webhook_receiver import verifies
from vault.crypto import DecryptionFailed
from vault.keys import Keyring

PUBLIC = "93.184.215.14"
AT = datetime(2026, 11, 22, 8, 0, tzinfo=UTC)
KEYRING = Keyring.generate()


def resolving(*addresses: str) -> webhooks.Resolve:
    def resolve(host: str, port: int) -> list[str]:
        return list(addresses)

    return resolve


def unresolvable(host: str, port: int) -> list[str]:
    raise OSError("no such host")


# -- URL rules ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    "address",
    [
        "127.0.0.1",
        "127.8.9.10",
        "10.1.2.3",
        "172.16.0.1",
        "192.168.1.1",
        "169.254.169.254",  # the cloud metadata service
        "100.64.0.1",  # shared address space (carrier NAT)
        "0.0.0.0",  # noqa: S104
        "224.0.0.1",
        "::1",
        "fe80::1",
        "fd00::1",
        "::ffff:127.0.0.1",
        "::ffff:10.0.0.1",
        "::",
        "not an address",
    ],
)
def test_loopback_private_link_local_and_other_non_public_addresses_are_not_public(
    address: str,
) -> None:
    assert not is_public_address(address)


@pytest.mark.parametrize(
    "address",
    [
        "64:ff9b::a00:1",  # NAT64 (well-known prefix) of 10.0.0.1
        "64:ff9b::7f00:1",  # ... of 127.0.0.1
        "64:ff9b::a9fe:a9fe",  # ... of 169.254.169.254
        "64:ff9b:1::a00:1",  # NAT64 (local-use prefix) of 10.0.0.1
        "2002:a00:1::1",  # 6to4 of 10.0.0.1
        "2002:7f00:1::1",  # 6to4 of 127.0.0.1
        # Teredo: 2001::/32 is not global on its own either; these hold if that changed.
        "2001:0:a00:1::f7f7:f7f7",  # server 10.0.0.1, client 8.8.8.8
        "2001:0:808:808::f5ff:fffe",  # server 8.8.8.8, client 10.0.0.1
        "::127.0.0.1",  # IPv4-compatible (deprecated): refused whatever it carries
        "::10.0.0.1",
        "::8.8.8.8",
    ],
)
def test_an_ipv6_address_carrying_a_non_public_ipv4_one_or_ipv4_compatible_is_not_public(
    address: str,
) -> None:
    assert not is_public_address(address)


@pytest.mark.parametrize(
    "address",
    [
        PUBLIC,
        "8.8.8.8",
        "2606:4700:4700::1111",
        "::ffff:8.8.8.8",  # IPv4-mapped: judged as the IPv4 address
        "64:ff9b::808:808",  # NAT64 of 8.8.8.8: an IPv6-only network reaching a public host
    ],
)
def test_global_unicast_addresses_are_public(address: str) -> None:
    assert is_public_address(address)


def test_an_https_url_to_a_host_resolving_to_public_addresses_is_accepted() -> None:
    target = check_webhook_url(
        "https://Hooks.Example.com:8443/in/tok?x=1",
        allow_insecure=False,
        resolve=resolving(PUBLIC, "2606:4700:4700::1111"),
    )
    assert target.url == "https://Hooks.Example.com:8443/in/tok?x=1"
    assert target.origin == "https://hooks.example.com:8443"


@pytest.mark.parametrize(
    ("url", "addresses", "rule"),
    [
        ("http://hooks.example.com/in", [PUBLIC], "must be https://"),
        ("ftp://hooks.example.com/in", [PUBLIC], "https:// URL with a host"),
        ("https:///in", [PUBLIC], "https:// URL with a host"),
        ("https://hooks.example.com/in", ["127.0.0.1"], "loopback, private or link-local"),
        ("https://hooks.example.com/in", [PUBLIC, "10.0.0.7"], "loopback, private or link-local"),
        ("https://hooks.example.com/in", ["169.254.169.254"], "loopback, private or link-local"),
        ("https://hooks.example.com/in", ["::ffff:192.168.0.1"], "loopback, private"),
        ("https://hooks.example.com/in", ["64:ff9b::c0a8:1"], "loopback, private"),
        ("https://hooks.example.com/in", [PUBLIC, "2002:c0a8:1::1"], "loopback, private"),
        ("https://hooks.example.com/in", [], "does not resolve"),
        ("https://" + "a" * 2048 + ".example.com/", [PUBLIC], "longer than 2048"),
    ],
)
def test_urls_breaking_a_rule_are_refused_naming_the_rule_not_the_url(
    url: str, addresses: list[str], rule: str
) -> None:
    with pytest.raises(WebhookUrlRefused) as refused:
        check_webhook_url(url, allow_insecure=False, resolve=resolving(*addresses))
    assert rule in refused.value.detail
    assert "hooks.example.com" not in refused.value.detail
    assert refused.value.slug == "webhook-url-refused"


def test_a_host_that_does_not_resolve_is_refused() -> None:
    with pytest.raises(WebhookUrlRefused, match="does not resolve"):
        check_webhook_url("https://nowhere.example/", allow_insecure=False, resolve=unresolvable)


def test_the_insecure_setting_accepts_http_and_loopback_without_resolving() -> None:
    target = check_webhook_url(
        "http://127.0.0.1:8080/hook?token=t", allow_insecure=True, resolve=unresolvable
    )
    assert target.origin == "http://127.0.0.1:8080"
    with pytest.raises(WebhookUrlRefused):  # still a URL with a host, though
        check_webhook_url("mailto:x@example.com", allow_insecure=True, resolve=unresolvable)


def test_the_origin_keeps_no_user_path_or_query() -> None:
    assert webhooks.origin_of(httpx.URL("https://u:p@[2001:db8::1]:9443/a?b=c#d")) == (
        "https://[2001:db8::1]:9443"
    )


# -- the secret and its storage -------------------------------------------------------------


def test_a_secret_is_whsec_and_the_base64_of_32_random_bytes_that_standard_webhooks_accepts() -> (
    None
):
    secret = new_secret()
    assert secret.startswith("whsec_")
    assert len(base64.b64decode(secret.removeprefix("whsec_"), validate=True)) == 32
    assert new_secret() != secret
    Webhook(secret)  # accepted as it is


@given(st.text(max_size=300))
def test_sealed_values_open_to_what_was_sealed(value: str) -> None:
    assert unseal(KEYRING, "c1", "url", seal(KEYRING, "c1", "url", value)) == value


def test_a_sealed_value_opens_for_its_client_and_column_only_and_detects_tampering() -> None:
    blob = seal(KEYRING, "c1", "secret", "whsec_abc")
    with pytest.raises(DecryptionFailed):
        unseal(KEYRING, "c2", "secret", blob)
    with pytest.raises(DecryptionFailed):
        unseal(KEYRING, "c1", "url", blob)
    tampered = blob[:-1] + bytes([blob[-1] ^ 1])
    with pytest.raises(DecryptionFailed):
        unseal(KEYRING, "c1", "secret", tampered)
    with pytest.raises(DecryptionFailed):
        unseal(Keyring.generate(), "c1", "secret", blob)
    with pytest.raises(DecryptionFailed):
        unseal(KEYRING, "c1", "secret", b"\x02" + blob[1:])


# Sealed by the webhook code as it was before it used vault.crypto and Keyring.webhook_key:
# index key 00 01 … 1f, nonce 64 65 … 6f, client "c" * 24, column "secret".
KNOWN_INDEX_KEY = bytes(range(32))
KNOWN_WEBHOOK_KEY = "83800c9569e4737cc906c09f19e8298f289a648a4d5389abe792bbe892be66c3"
KNOWN_SEALED = (
    "016465666768696a6b6c6d6e6fa61e24939f80f7c9c3b7a757e1d867e69cf86f0937b3b605aa74bd0261e9c666d5f0"
)


def known_keyring() -> Keyring:
    return Keyring(keks={1: bytes(32)}, index_key=KNOWN_INDEX_KEY, pseudonym_key=bytes(32))


def test_the_webhook_key_is_hkdf_sha256_of_the_index_key_under_its_label_derived_once() -> None:
    keyring = known_keyring()
    assert keyring.webhook_key().hex() == KNOWN_WEBHOOK_KEY
    assert keyring.webhook_key() is keyring.webhook_key()  # cached, not derived per call
    assert keyring.with_new_kek().webhook_key().hex() == KNOWN_WEBHOOK_KEY


def test_a_value_sealed_before_the_shared_cipher_still_opens() -> None:
    blob = bytes.fromhex(KNOWN_SEALED)
    assert unseal(known_keyring(), "c" * 24, "secret", blob) == "whsec_known-answer"
    with pytest.raises(DecryptionFailed):
        unseal(known_keyring(), "c" * 24, "url", blob)


def test_secrets_stay_readable_across_kek_rotation_and_retirement() -> None:
    """The webhook key comes from the index key, which no KEK rotation changes."""
    blob = seal(KEYRING, "c1", "secret", "whsec_abc")
    rotated = KEYRING.with_new_kek().with_new_kek()
    retired = rotated.without_kek(1)
    assert unseal(retired, "c1", "secret", blob) == "whsec_abc"


# -- signatures -----------------------------------------------------------------------------


def test_a_delivery_signed_by_two_secrets_verifies_with_either_and_not_a_third() -> None:
    new, old, other = new_secret(), new_secret(), new_secret()
    body = b'{"id":"e1","seq":1}'
    header = signature_header([new, old], msg_id="e1", at=AT, body=body)
    assert header.count("v1,") == 2 and " " in header
    headers = {
        "webhook-id": "e1",
        "webhook-timestamp": str(int(AT.timestamp())),
        "webhook-signature": header,
    }
    assert verifies(new, body, headers, AT)
    assert verifies(old, body, headers, AT)
    assert not verifies(other, body, headers, AT)
    assert not verifies(new, body + b" ", headers, AT)
    assert not verifies(new, body, {**headers, "webhook-id": "e2"}, AT)
    # Replayed later than the verifier's tolerance (five minutes), it is refused.
    assert not verifies(new, body, headers, AT + timedelta(minutes=6))


def test_the_body_is_the_pull_feed_item() -> None:
    event = FeedEvent(
        id="e1",
        type="member.deleted",
        created_at=AT,
        data='{"member_id":"m1","request_id":"r1"}',
        ack_required=True,
    )
    body = webhooks.event_body(event, 7)
    assert body == (
        b'{"id":"e1","seq":7,"type":"member.deleted","created_at":"2026-11-22T08:00:00+00:00",'
        b'"data":{"member_id":"m1","request_id":"r1"},"ack_required":true}'
    )


def test_the_pull_item_the_webhook_body_and_the_broker_message_carry_the_same_event() -> None:
    event = FeedEvent(
        id="e1",
        type="member.corrected",
        created_at=AT,
        data='{"fields":["name"],"member_id":"m1"}',
        ack_required=False,
    )
    pulled = item_view(Delivered(FeedDelivery(event_id="e1", client_id="c1", seq=7), event))
    pushed = json.loads(webhooks.event_body(event, 7))
    published = json.loads(broker_message(event, ["c1"]).body)
    assert pulled == {**pushed, "acknowledged_at": None}
    assert published == {**{k: v for k, v in pushed.items() if k != "seq"}, "recipients": ["c1"]}


# -- backoff ---------------------------------------------------------------------------------


def test_the_ceilings_double_from_30_seconds_up_to_an_hour() -> None:
    assert [retry_ceiling(n).total_seconds() for n in range(1, 10)] == [
        30,
        60,
        120,
        240,
        480,
        960,
        1920,
        3600,
        3600,
    ]
    assert retry_ceiling(10_000) == timedelta(hours=1)


@given(st.integers(min_value=1, max_value=500), st.floats(min_value=0, max_value=1))
def test_a_jittered_delay_is_between_a_second_and_its_ceiling(failures: int, share: float) -> None:
    delay = retry_delay(failures, lambda top: top * share)
    assert timedelta(seconds=1) <= delay <= retry_ceiling(failures)


@given(st.integers(min_value=1, max_value=50))
def test_full_jitter_draws_within_the_ceiling(failures: int) -> None:
    delay = retry_delay(failures, webhooks.full_jitter)
    assert timedelta(seconds=1) <= delay <= retry_ceiling(failures)


def test_a_lease_outlasts_the_longest_send() -> None:
    assert webhooks.claim_lease(10) == timedelta(minutes=2)
    assert webhooks.claim_lease(60) == timedelta(minutes=6)


@pytest.mark.parametrize(
    ("error", "name"),
    [
        (httpx.ConnectError("to https://x/?token=t"), "connect-error"),
        (httpx.RemoteProtocolError("x"), "remote-protocol-error"),
    ],
)
def test_a_transport_failure_is_named_by_its_class_never_its_message(
    error: Exception, name: str
) -> None:
    assert webhooks._error_name(error) == name
