"""Which addresses outbound federation traffic may connect to (``ip_range_blacklist`` /
``ip_range_whitelist``), checked on every resolved address before connecting."""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable

IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network

# Never a real peer, whatever the config says (as Synapse adds to every blocklist).
_ALWAYS_BLOCKED = (ipaddress.ip_network("0.0.0.0/32"), ipaddress.ip_network("::/128"))


class IPFilter:
    def __init__(self, blacklist: Iterable[IPNetwork], whitelist: Iterable[IPNetwork] = ()) -> None:
        self._blacklist = (*_ALWAYS_BLOCKED, *blacklist)
        self._whitelist = tuple(whitelist)

    def is_blocked(self, address: str) -> bool:
        """True if ``address`` (an IP literal) is in the blacklist and not in the whitelist.

        An IPv4-mapped IPv6 address is judged as the IPv4 address it carries, so
        ``::ffff:127.0.0.1`` is no way around a block on 127.0.0.0/8. Anything that is not an
        IP address is blocked.
        """
        try:
            ip = ipaddress.ip_address(address.split("%", 1)[0])
        except ValueError:
            return True
        if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
            ip = ip.ipv4_mapped
        if any(ip in network for network in self._whitelist):
            return False
        return any(ip in network for network in self._blacklist)
