"""Where a webhook may be delivered: the policy against server-side request forgery.

By default only globally routable addresses are allowed: loopback, private (RFC 1918, ULA),
link-local (cloud metadata at 169.254.169.254), shared (CGNAT), multicast, unspecified,
documentation and other reserved ranges are refused, including IPv4 written inside IPv6
(``::ffff:10.0.0.1``). A deployment may allow every address (development) or name networks
that are always allowed. The gateway applies :func:`check_url` when an endpoint is saved
(IP literals and ``localhost`` only: it does not resolve names); the relay resolves the
host at every delivery and applies :func:`check_address` to each address, then connects to
an address it checked, so a name that later resolves elsewhere (DNS rebinding) gains nothing.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Final
from urllib.parse import urlsplit

from jobline.core.errors import JoblineError

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network

SCHEMES: Final = frozenset({"http", "https"})
# Names that mean this machine whatever DNS says (RFC 6761).
LOCAL_NAMES: Final = ("localhost", ".localhost", ".localdomain")


class RefusedAddress(JoblineError):
    """The webhook URL points at an address deliveries may not go to."""


class InvalidUrl(JoblineError):
    """The webhook URL is not an absolute http(s) URL with a host."""


@dataclass(frozen=True, slots=True)
class AddressPolicy:
    """``allow_private``: every address is allowed. ``allowed_networks``: always allowed."""

    allow_private: bool = False
    allowed_networks: tuple[IPNetwork, ...] = field(default=())

    @classmethod
    def of(cls, allow_private: bool, networks: Iterable[str] = ()) -> AddressPolicy:
        return cls(allow_private, tuple(ipaddress.ip_network(n, strict=False) for n in networks))


def _unmapped(address: IPAddress) -> IPAddress:
    if isinstance(address, ipaddress.IPv6Address):
        if address.ipv4_mapped is not None:
            return address.ipv4_mapped
        if address.sixtofour is not None:
            return address.sixtofour
        if address.teredo is not None:
            return address.teredo[1]
    return address


def refusal(address: IPAddress) -> str | None:
    """Why ``address`` is not public (``None`` when it is globally routable)."""
    inner = _unmapped(address)
    for addr in (inner, address):
        if addr.is_loopback:
            return "loopback"
        if addr.is_link_local:
            return "link-local"
        if addr.is_multicast:
            return "multicast"
        if addr.is_unspecified:
            return "unspecified"
        if addr.is_private:
            return "private"
        if not addr.is_global:
            return "reserved"
    return None


def check_address(policy: AddressPolicy, address: IPAddress | str) -> None:
    """:class:`RefusedAddress` unless ``policy`` lets deliveries go to ``address``."""
    ip = ipaddress.ip_address(address) if isinstance(address, str) else address
    if policy.allow_private:
        return
    if any(_unmapped(ip) in net or ip in net for net in policy.allowed_networks):
        return
    reason = refusal(ip)
    if reason is not None:
        raise RefusedAddress(f"{ip} is a {reason} address")


@dataclass(frozen=True, slots=True)
class Target:
    """The parts of a webhook URL a delivery needs."""

    scheme: str
    host: str  # without brackets for IPv6
    port: int

    @property
    def literal(self) -> IPAddress | None:
        """The address the host spells, if it spells one: also the forms resolvers take
        for IPv4 (``127.1``, ``2130706433``, ``0x7f.1``), which ``ipaddress`` does not."""
        try:
            return ipaddress.ip_address(self.host)
        except ValueError:
            return _inet_aton(self.host)


def _inet_aton(host: str) -> ipaddress.IPv4Address | None:
    """IPv4 as ``inet_aton`` reads it: 1-4 dot-separated parts, each decimal, octal
    (leading 0) or hex (0x); the last part fills the remaining bytes."""
    parts = host.split(".")
    if not 1 <= len(parts) <= 4:
        return None
    numbers = []
    for part in parts:
        try:
            if part.lower().startswith("0x"):
                numbers.append(int(part[2:], 16))
            elif part.startswith("0") and len(part) > 1:
                numbers.append(int(part[1:], 8))
            else:
                numbers.append(int(part, 10) if part.isdigit() else -1)
        except ValueError:
            return None
    *head, last = numbers
    if any(not 0 <= n <= 255 for n in head) or not 0 <= last < 256 ** (4 - len(head)):
        return None
    value = last
    for index, number in enumerate(head):
        value += number << (8 * (3 - index))
    return ipaddress.IPv4Address(value)


def parse_url(url: str) -> Target:
    """:class:`InvalidUrl` unless ``url`` is an absolute http(s) URL with a host."""
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError as exc:
        raise InvalidUrl(f"not a valid URL: {exc}") from None
    if parts.scheme not in SCHEMES:
        raise InvalidUrl("the URL must start with http:// or https://")
    host = parts.hostname
    if not host:
        raise InvalidUrl("the URL has no host")
    if parts.username is not None or parts.password is not None:
        raise InvalidUrl("the URL may not carry credentials")
    default = 443 if parts.scheme == "https" else 80
    return Target(parts.scheme, host.rstrip(".").lower() or host, port or default)


def check_url(policy: AddressPolicy, url: str) -> Target:
    """The URL's target if it is well formed and, as far as can be told without resolving
    its host, allowed; :class:`InvalidUrl` or :class:`RefusedAddress` otherwise."""
    target = parse_url(url)
    literal = target.literal
    if literal is not None:
        check_address(policy, literal)
    elif _local_name(target.host):
        # What such a name resolves to: refused unless loopback is allowed.
        try:
            check_address(policy, "127.0.0.1")
        except RefusedAddress:
            raise RefusedAddress(f"{target.host} names this machine") from None
    return target


def _local_name(host: str) -> bool:
    return host == LOCAL_NAMES[0] or host.endswith(LOCAL_NAMES[1:])


def pick(policy: AddressPolicy, resolved: Sequence[str]) -> str:
    """The first of a name's resolved addresses, once all of them are allowed.

    All, not any: a name that resolves to one public and one private address is refused,
    or a rebinding attacker could let the connection race to the private one.
    """
    if not resolved:
        raise RefusedAddress("the host resolved to no address")
    for address in resolved:
        check_address(policy, address)
    return resolved[0]
