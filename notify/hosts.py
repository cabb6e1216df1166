"""The rule both network transports share: a message crosses no network in clear.

A message holds a phone number or an address and, often, a sign-in code. It
may go without TLS only to a server on this host (a local mail relay, a
gateway's local agent), which ``is_this_host`` recognises by name: ``localhost``
or a loopback address. Anything else must be reached over TLS.
"""

from __future__ import annotations

import ipaddress


def is_this_host(host: str) -> bool:
    if host.lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False
