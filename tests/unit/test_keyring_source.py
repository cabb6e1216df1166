"""``vault.keys.KeyringSource``: a running process catches up with a rotation, once."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable

import pytest

from vault.crypto import new_data_key, unwrap_data_key, wrap_data_key
from vault.keys import Keyring, KeyringError, KeyringSource

MEMBER = "a" * 24


class Provider:
    """A key provider whose keyring an operator replaces; counts the loads."""

    def __init__(self, keyring: Keyring) -> None:
        self.keyring = keyring
        self.loads = 0
        self.stamp = 0
        self.before_load: Callable[[], None] = lambda: None

    def load(self) -> Keyring:
        self.before_load()
        self.loads += 1
        return self.keyring

    def rotate(self) -> Keyring:
        self.keyring = self.keyring.with_new_kek()
        self.stamp += 1
        return self.keyring


def test_a_data_key_wrapped_under_a_newer_kek_is_unwrapped_after_one_load() -> None:
    provider = Provider(Keyring.generate())
    source = KeyringSource(provider.load)
    held = source.current  # what a use case took before the rotation
    rotated = provider.rotate()
    key = new_data_key()
    version, wrapped = wrap_data_key(rotated, MEMBER, key)  # another process re-wrapped it
    assert version == 2
    assert unwrap_data_key(held, MEMBER, version, wrapped) == key
    assert unwrap_data_key(source.current, MEMBER, version, wrapped) == key
    assert provider.loads == 2  # the first load, and one for KEK 2
    # From now on the process wraps under the newest KEK.
    assert source.current.active_version == 2
    assert wrap_data_key(source.current, MEMBER, key)[0] == 2


def test_a_version_the_provider_does_not_hold_either_fails_and_is_looked_for_once() -> None:
    provider = Provider(Keyring.generate())
    source = KeyringSource(provider.load)
    for _ in range(3):
        with pytest.raises(KeyringError, match="KEK version 7 is not in the keyring"):
            source.current.kek_cipher(7)
    assert provider.loads == 2


def test_threads_meeting_the_new_version_at_once_load_the_keyring_once() -> None:
    provider = Provider(Keyring.generate())
    source = KeyringSource(provider.load)
    held = source.current
    rotated = provider.rotate()
    key = new_data_key()
    version, wrapped = wrap_data_key(rotated, MEMBER, key)
    threads = 16
    arrived = threading.Barrier(threads, timeout=30)
    # A slow provider (a KMS round trip): the other threads pile up behind the load.
    # (A sleep, not a timed wait: under libfaketime, as CI runs the suite a
    # second time, a timed wait on a lock never returns.)
    provider.before_load = lambda: time.sleep(0.05)
    results: list[bytes | Exception] = []

    def read() -> None:
        arrived.wait()
        try:
            results.append(unwrap_data_key(held, MEMBER, version, wrapped))
        except Exception as exc:  # collected, asserted below
            results.append(exc)

    workers = [threading.Thread(target=read) for _ in range(threads)]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join(timeout=30)
    assert results == [key] * threads
    assert provider.loads == 2


def test_a_keyring_that_does_not_extend_the_held_one_is_refused() -> None:
    first = Keyring.generate()
    provider = Provider(first)
    source = KeyringSource(provider.load)
    other = Keyring.generate().with_new_kek()  # another keyring with a KEK 2
    provider.keyring = other
    version, wrapped = wrap_data_key(other, MEMBER, new_data_key())
    with pytest.raises(KeyringError):
        unwrap_data_key(source.current, MEMBER, version, wrapped)
    assert source.current == first  # blind indexes and pseudonyms stay as they were


def test_a_retirement_is_taken_and_the_process_forgets_the_retired_kek() -> None:
    provider = Provider(Keyring.generate())
    source = KeyringSource(provider.load, changed=lambda: provider.stamp)
    provider.rotate()
    assert source.refresh() is True
    provider.keyring = provider.keyring.without_kek(1)  # `keys retire 1`
    provider.stamp += 1
    assert source.refresh() is True
    assert sorted(source.current.keks) == [2]
    with pytest.raises(KeyringError, match="KEK version 1 is not in the keyring"):
        source.current.kek_cipher(1)


def test_a_changed_kek_an_older_keyring_or_a_retired_version_back_is_refused() -> None:
    first = Keyring.generate().with_new_kek().with_new_kek()  # KEK 1, 2, 3
    provider = Provider(first)
    source = KeyringSource(provider.load, changed=lambda: provider.stamp)

    def offer(keks: dict[int, bytes]) -> bool:
        provider.keyring = Keyring(
            keks=keks, index_key=first.index_key, pseudonym_key=first.pseudonym_key
        )
        provider.stamp += 1
        return source.refresh()

    assert offer({**first.keks, 2: bytes(32)}) is False  # KEK 2's key changed
    assert offer({1: first.keks[1], 2: first.keks[2]}) is False  # KEK 3 gone: older
    assert source.current == first
    assert offer({2: first.keks[2], 3: first.keks[3]}) is True  # KEK 1 retired
    # A retired version never comes back, whatever its bytes.
    assert offer(dict(first.keks)) is False
    assert sorted(source.current.keks) == [2, 3]


def test_the_active_kek_cannot_be_retired() -> None:
    keyring = Keyring.generate().with_new_kek()
    with pytest.raises(KeyringError, match="KEK version 2 is the active one"):
        keyring.without_kek(2)
    with pytest.raises(KeyringError, match="KEK version 5 is not in the keyring"):
        keyring.without_kek(5)
    assert sorted(keyring.without_kek(1).keks) == [2]


def test_refresh_loads_again_only_when_the_provider_changed() -> None:
    provider = Provider(Keyring.generate())
    source = KeyringSource(provider.load, changed=lambda: provider.stamp)
    assert source.refresh() is False and provider.loads == 1
    provider.rotate()
    assert source.refresh() is True
    assert source.current.active_version == 2
    assert source.refresh() is False and provider.loads == 2


def test_a_provider_that_cannot_change_is_never_refreshed() -> None:
    provider = Provider(Keyring.generate())
    source = KeyringSource(provider.load)
    provider.rotate()
    assert source.refresh() is False
    assert (provider.loads, source.current.active_version) == (1, 1)


def test_the_callers_keyring_is_left_as_it_was() -> None:
    keyring = Keyring.generate()
    source = KeyringSource(lambda: keyring)
    assert source.current == keyring and source.current is not keyring
    assert keyring._source is None
