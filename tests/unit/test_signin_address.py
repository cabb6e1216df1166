"""Sign-in attempts are counted per client address: an IPv4 address, or an IPv6 /64."""

from __future__ import annotations

from gate.signin import address_bucket


def test_addresses_of_one_ipv6_64_share_a_counter() -> None:
    one = address_bucket("2001:db8:aa:bb:1111:2222:3333:4444")
    other = address_bucket("2001:db8:aa:bb:ffff:ffff:ffff:1")
    assert one == other == "2001:db8:aa:bb::/64"


def test_neighbouring_ipv6_64s_are_counted_apart() -> None:
    assert address_bucket("2001:db8:aa:bb::1") != address_bucket("2001:db8:aa:bc::1")


def test_an_ipv4_address_is_counted_alone_and_its_ipv6_mapped_form_with_it() -> None:
    assert address_bucket("203.0.113.7") == "203.0.113.7"
    assert address_bucket("::ffff:203.0.113.7") == "203.0.113.7"
    assert address_bucket("203.0.113.8") != address_bucket("203.0.113.7")


def test_an_unknown_address_shares_the_counter_of_every_unknown_one() -> None:
    assert address_bucket(None) == address_bucket("") == ""
    assert address_bucket("testclient") == "testclient"
