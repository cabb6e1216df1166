"""Request ids the server assigns: unique, UUID-shaped, different in a forked worker."""

from __future__ import annotations

import os
import re

import pytest

from api.middleware import UUID_RE, new_request_id


def test_assigned_ids_are_32_hex_digits_and_unique() -> None:
    ids = [new_request_id() for _ in range(20_000)]
    assert all(re.fullmatch(r"[0-9a-f]{32}", i) and UUID_RE.match(i) for i in ids)
    assert len(set(ids)) == len(ids)


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs os.fork")
def test_a_forked_worker_does_not_repeat_its_parents_ids() -> None:
    read_end, write_end = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: report its next ids and leave at once
        os.close(read_end)
        os.write(write_end, ",".join(new_request_id() for _ in range(3)).encode())
        os._exit(0)
    os.close(write_end)
    parent = [new_request_id() for _ in range(3)]
    with os.fdopen(read_end) as pipe:
        child = pipe.read().split(",")
    os.waitpid(pid, 0)
    assert len(child) == 3 and not set(child) & set(parent)
