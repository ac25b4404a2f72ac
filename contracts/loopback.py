"""Whether a host is this machine's: everything the toolkit talks to on its own (a Redis example database,
the servers `contracts check` and the differential probe) must be, since nothing beyond it is ours to
touch. A name other than `localhost` is not trusted: where it resolves is not ours to know."""

from __future__ import annotations

import ipaddress


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False
