"""The network guard: refuse non-public addresses and pin every connection to a checked IP."""

from __future__ import annotations

import ipaddress
import socket
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Protocol

import anyio
import httpcore
import httpx

from skr.domain.errors import BlockedURLError, FetchError, InvalidInputError

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address

# The same shape as httpcore's SOCKET_OPTION, which httpcore does not export in __all__.
SocketOption = (
    tuple[int, int, int] | tuple[int, int, bytes | bytearray] | tuple[int, int, None, int]
)

ALLOWED_SCHEMES = ("http", "https")
PRIVATE_HINT = "set SKR_ALLOW_PRIVATE_NETWORKS=true to allow private and loopback addresses"

# Kinds that SKR_ALLOW_PRIVATE_NETWORKS=true lets through; every other non-public kind
# (link-local above all: cloud metadata services live there) is refused always.
_ALLOWED_WHEN_PRIVATE = frozenset({"loopback", "private"})
_THIS_NETWORK = ipaddress.IPv4Network("0.0.0.0/8")
_PRIVATE_NETWORKS = (
    ipaddress.IPv4Network("10.0.0.0/8"),
    ipaddress.IPv4Network("172.16.0.0/12"),
    ipaddress.IPv4Network("192.168.0.0/16"),
    ipaddress.IPv4Network("100.64.0.0/10"),  # carrier-grade NAT
    ipaddress.IPv6Network("fc00::/7"),  # unique local addresses
)
_NAT64 = ipaddress.IPv6Network("64:ff9b::/96")


class Resolver(Protocol):
    async def resolve(self, host: str, port: int) -> list[str]:
        """The IP addresses ``host`` resolves to; ``FetchError`` when it does not resolve."""
        ...


class SystemResolver:
    """Resolves names with the operating system's resolver, bounded by a timeout."""

    def __init__(self, *, timeout: float = 5.0) -> None:
        self._timeout = timeout

    async def resolve(self, host: str, port: int) -> list[str]:
        try:
            with anyio.fail_after(self._timeout):
                infos = await anyio.getaddrinfo(host, port, type=socket.SOCK_STREAM)
        except TimeoutError as exc:
            detail = f"could not resolve host {host} (timed out after {self._timeout:g} s)"
            raise FetchError(detail) from exc
        except (OSError, UnicodeError) as exc:
            raise FetchError(f"could not resolve host {host}") from exc
        return list(dict.fromkeys(str(info[4][0]) for info in infos))


def embedded_ipv4(addr: ipaddress.IPv6Address) -> ipaddress.IPv4Address | None:
    """The IPv4 address an IPv6 address stands for (mapped, NAT64 or 6to4), if any."""
    if addr.ipv4_mapped is not None:
        return addr.ipv4_mapped
    if addr in _NAT64:
        return ipaddress.IPv4Address(int(addr) & 0xFFFFFFFF)
    return addr.sixtofour


def address_kind(addr: IPAddress) -> str | None:
    """What kind of non-public address ``addr`` is, or None when it is public."""
    if isinstance(addr, ipaddress.IPv6Address):
        embedded = embedded_ipv4(addr)
        if embedded is not None:
            return address_kind(embedded)
    if addr.is_unspecified or addr in _THIS_NETWORK:
        return "unspecified"
    if addr.is_multicast:
        return "multicast"
    if addr.is_link_local:
        return "link-local"
    if addr.is_loopback:
        return "loopback"
    if any(addr in network for network in _PRIVATE_NETWORKS):
        return "private"
    # is_global alone is not enough on Python 3.11 (it calls fec0::/10 and ::/96 global).
    site_local = isinstance(addr, ipaddress.IPv6Address) and addr.is_site_local
    if addr.is_global and not addr.is_reserved and not site_local:
        return None
    return "reserved"


def _parse_ip(ip: str) -> IPAddress:
    try:
        return ipaddress.ip_address(ip.strip("[]"))
    except ValueError as exc:
        raise BlockedURLError(f"refused: {ip} is not an IP address") from exc


def _refusal(ip: str, addr: IPAddress, kind: str, host: str | None) -> str:
    embedded = embedded_ipv4(addr) if isinstance(addr, ipaddress.IPv6Address) else None
    shown = f"{ip} (which embeds {embedded})" if embedded is not None else ip
    article = "an" if kind[0] in "aeiou" else "a"
    if kind in _ALLOWED_WHEN_PRIVATE:
        why = PRIVATE_HINT
    elif kind == "link-local":
        why = "always refused: cloud metadata services live there"
    else:
        why = "always refused"
    if host is not None and host != ip:
        return f"refused: {host} resolves to {shown}, {article} {kind} address ({why})"
    return f"refused: {shown} is {article} {kind} address ({why})"


@dataclass(frozen=True, slots=True)
class AddressPolicy:
    """Which addresses SKR may connect to: public ones, plus loopback and private if allowed."""

    allow_private: bool = False

    def check(self, ip: str, host: str | None = None) -> None:
        """``BlockedURLError`` unless SKR may connect to ``ip`` (which ``host`` resolved to)."""
        addr = _parse_ip(ip)
        kind = address_kind(addr)
        if kind is None or (self.allow_private and kind in _ALLOWED_WHEN_PRIVATE):
            return
        raise BlockedURLError(_refusal(ip, addr, kind, host))


def is_ip_literal(host: str) -> bool:
    try:
        ipaddress.ip_address(host.strip("[]"))
    except ValueError:
        return False
    return True


async def resolve_checked(
    host: str, port: int, resolver: Resolver, policy: AddressPolicy
) -> list[str]:
    """The addresses ``host`` resolves to, once the policy has accepted every one of them."""
    addresses = [host.strip("[]")] if is_ip_literal(host) else await resolver.resolve(host, port)
    if not addresses:
        raise FetchError(f"could not resolve host {host}")
    for ip in addresses:
        policy.check(ip, host=host)
    return addresses


def parse_http_url(url: str) -> httpx.URL:
    """``url`` parsed as httpx will fetch it; ``InvalidInputError`` unless http(s) with a host."""
    try:
        parsed = httpx.URL(url)
    except httpx.InvalidURL as exc:
        raise InvalidInputError(f"not a valid URL ({exc})") from exc
    if not parsed.scheme:
        raise InvalidInputError("the URL has no scheme; start it with http:// or https://")
    if parsed.scheme not in ALLOWED_SCHEMES:
        raise InvalidInputError(f"only http and https URLs can be ingested, not {parsed.scheme}")
    if not parsed.raw_host:
        raise InvalidInputError("the URL has no host")
    if parsed.port is not None and not 1 <= parsed.port <= 65535:
        raise InvalidInputError(f"port {parsed.port} is out of range")
    return parsed


def url_host(url: httpx.URL) -> str:
    """The host as it goes on the wire (IDNA-encoded, IPv6 without brackets)."""
    return url.raw_host.decode("ascii")


def url_port(url: httpx.URL) -> int:
    if url.port is not None:
        return url.port
    return 443 if url.scheme == "https" else 80


async def check_url(url: str, resolver: Resolver, policy: AddressPolicy) -> httpx.URL:
    """``url`` parsed, once its scheme, host and every resolved address pass the guard."""
    parsed = parse_http_url(url)
    await resolve_checked(url_host(parsed), url_port(parsed), resolver, policy)
    return parsed


class GuardedNetworkBackend(httpcore.AsyncNetworkBackend):
    """An httpcore backend that checks every address a host resolves to and connects by IP.

    Connecting to the checked IP rather than the name leaves no window for DNS
    rebinding between the check and the connect; TLS still verifies the host name.
    """

    def __init__(
        self,
        *,
        resolver: Resolver,
        policy: AddressPolicy,
        inner: httpcore.AsyncNetworkBackend | None = None,
    ) -> None:
        self._resolver = resolver
        self._policy = policy
        self._inner = inner if inner is not None else httpcore.AnyIOBackend()

    async def connect_tcp(
        self,
        host: str,
        port: int,
        timeout: float | None = None,  # noqa: ASYNC109 (httpcore's interface)
        local_address: str | None = None,
        socket_options: Iterable[SocketOption] | None = None,
    ) -> httpcore.AsyncNetworkStream:
        addresses = await resolve_checked(host, port, self._resolver, self._policy)
        options = list(socket_options) if socket_options is not None else None
        for ip in addresses[:-1]:
            try:
                return await self._inner.connect_tcp(ip, port, timeout, local_address, options)
            except httpcore.ConnectError:
                # An unreachable address (often IPv6 on an IPv4-only host) should not
                # hide a reachable one; the last address's error is the one reported.
                continue
        return await self._inner.connect_tcp(addresses[-1], port, timeout, local_address, options)

    async def connect_unix_socket(
        self,
        path: str,
        timeout: float | None = None,  # noqa: ASYNC109 (httpcore's interface)
        socket_options: Iterable[SocketOption] | None = None,
    ) -> httpcore.AsyncNetworkStream:
        raise BlockedURLError("refused: SKR never connects to unix sockets")

    async def sleep(self, seconds: float) -> None:
        await self._inner.sleep(seconds)
