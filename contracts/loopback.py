"""Whether a host is this machine's: everything the toolkit talks to on its own (a Redis example database,
the servers `contracts check` and the differential probe) must be, since nothing beyond it is ours to
touch. A name other than `localhost` is not trusted, `*.localhost` included: where it resolves is not ours to
know, and asking a resolver may itself leave the machine. A host is read as URLs write it: brackets around
an IPv6 literal, any case, a trailing dot."""

from __future__ import annotations

import ipaddress


def is_loopback(host: str) -> bool:
    host = host.strip("[]").lower().rstrip(".")
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False
