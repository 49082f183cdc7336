"""The network guard: address policy, pinned connections and URL checks, with no traffic at all."""

from __future__ import annotations

import re
import socket
from collections.abc import Iterable, Mapping

import anyio
import httpcore
import pytest

from skr.adapters.network_guard import (
    PRIVATE_HINT,
    AddressPolicy,
    GuardedNetworkBackend,
    SocketOption,
    SystemResolver,
    check_url,
)
from skr.domain.errors import BlockedURLError, FetchError, InvalidInputError

pytestmark = pytest.mark.anyio

PUBLIC_IP = "93.184.216.34"
HOSTS = {
    "public.test": [PUBLIC_IP],
    "private.test": ["10.1.2.3"],
    "linklocal.test": ["169.254.169.254"],
    "loop.test": ["127.0.0.1"],
    "mixed.test": [PUBLIC_IP, "10.1.2.3"],
    "dual.test": ["2606:4700:4700::1111", PUBLIC_IP],
    "empty.test": [],
    "garbage.test": ["not-an-ip"],
}


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


class FakeResolver:
    """Answers from a table and records every question; never touches DNS."""

    def __init__(self, table: Mapping[str, list[str]]) -> None:
        self.table = table
        self.calls: list[tuple[str, int]] = []

    async def resolve(self, host: str, port: int) -> list[str]:
        self.calls.append((host, port))
        if host not in self.table:
            raise FetchError(f"could not resolve host {host}")
        return list(self.table[host])


class ConnectAttemptedError(Exception):
    """Raised instead of connecting: the test sees the pinned IP without any traffic."""


class RecordingBackend(httpcore.AsyncNetworkBackend):
    """An inner backend that records what it is asked and never opens a socket."""

    def __init__(self, unreachable: Iterable[str] = ()) -> None:
        self.calls: list[tuple[str, int]] = []
        self.sleeps: list[float] = []
        self.unreachable = set(unreachable)

    async def connect_tcp(
        self,
        host: str,
        port: int,
        timeout: float | None = None,  # noqa: ASYNC109
        local_address: str | None = None,
        socket_options: Iterable[SocketOption] | None = None,
    ) -> httpcore.AsyncNetworkStream:
        self.calls.append((host, port))
        if host in self.unreachable:
            raise httpcore.ConnectError("network unreachable")
        raise ConnectAttemptedError(host)

    async def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)


def _guard(
    allow_private: bool = False, unreachable: Iterable[str] = ()
) -> tuple[GuardedNetworkBackend, FakeResolver, RecordingBackend]:
    resolver = FakeResolver(HOSTS)
    inner = RecordingBackend(unreachable)
    guard = GuardedNetworkBackend(
        resolver=resolver, policy=AddressPolicy(allow_private=allow_private), inner=inner
    )
    return guard, resolver, inner


ALWAYS_REFUSED = [
    ("169.254.169.254", "link-local"),
    ("169.254.0.1", "link-local"),
    ("fe80::1", "link-local"),
    ("fe80::1%eth0", "link-local"),
    ("::ffff:169.254.169.254", "link-local"),
    ("64:ff9b::a9fe:a9fe", "link-local"),  # NAT64 of the metadata address
    ("2002:a9fe:a9fe::", "link-local"),  # 6to4 of the metadata address
    ("0.0.0.0", "unspecified"),
    ("0.1.2.3", "unspecified"),
    ("::", "unspecified"),
    ("224.0.0.1", "multicast"),
    ("239.255.255.250", "multicast"),
    ("ff02::1", "multicast"),
    ("255.255.255.255", "reserved"),
    ("240.0.0.1", "reserved"),
    ("192.0.2.1", "reserved"),
    ("198.18.0.1", "reserved"),
    ("2001:db8::1", "reserved"),
    ("fec0::1", "reserved"),
    ("::127.0.0.1", "reserved"),
    ("2001::1", "reserved"),  # Teredo
]
PRIVATE_OR_LOOPBACK = [
    ("127.0.0.1", "loopback"),
    ("127.255.255.254", "loopback"),
    ("::1", "loopback"),
    ("::ffff:127.0.0.1", "loopback"),
    ("2002:7f00:1::", "loopback"),  # 6to4 of 127.0.0.1
    ("10.0.0.5", "private"),
    ("172.16.0.1", "private"),
    ("172.31.255.255", "private"),
    ("192.168.1.1", "private"),
    ("100.64.0.1", "private"),  # carrier-grade NAT
    ("100.127.255.255", "private"),
    ("fc00::1", "private"),
    ("fd12:3456::1", "private"),
    ("::ffff:10.0.0.1", "private"),
    ("64:ff9b::a00:1", "private"),  # NAT64 of 10.0.0.1
]
PUBLIC = [
    "93.184.216.34",
    "8.8.8.8",
    "1.1.1.1",
    "172.32.0.1",
    "100.128.0.1",
    "2606:4700:4700::1111",
    "2001:4860:4860::8888",
    "::ffff:93.184.216.34",
    "64:ff9b::5db8:d822",
]


@pytest.mark.parametrize("allow_private", [False, True])
@pytest.mark.parametrize(("ip", "kind"), ALWAYS_REFUSED)
def test_always_refused_addresses(ip: str, kind: str, allow_private: bool) -> None:
    with pytest.raises(BlockedURLError, match=f"a {kind} address|an {kind} address"):
        AddressPolicy(allow_private=allow_private).check(ip)


@pytest.mark.parametrize(("ip", "kind"), PRIVATE_OR_LOOPBACK)
def test_private_and_loopback_refused_by_default(ip: str, kind: str) -> None:
    with pytest.raises(BlockedURLError, match=f"a {kind} address") as caught:
        AddressPolicy().check(ip)
    assert PRIVATE_HINT in caught.value.detail


@pytest.mark.parametrize(("ip", "kind"), PRIVATE_OR_LOOPBACK)
def test_private_and_loopback_allowed_when_enabled(ip: str, kind: str) -> None:
    AddressPolicy(allow_private=True).check(ip)


@pytest.mark.parametrize("allow_private", [False, True])
@pytest.mark.parametrize("ip", PUBLIC)
def test_public_addresses_allowed(ip: str, allow_private: bool) -> None:
    AddressPolicy(allow_private=allow_private).check(ip)


def test_refusal_says_what_and_how() -> None:
    with pytest.raises(BlockedURLError) as caught:
        AddressPolicy().check("10.0.0.5", host="www.x.test")
    assert caught.value.detail == (
        "refused: www.x.test resolves to 10.0.0.5, a private address "
        "(set SKR_ALLOW_PRIVATE_NETWORKS=true to allow private and loopback addresses)"
    )
    with pytest.raises(BlockedURLError) as caught:
        AddressPolicy(allow_private=True).check("::ffff:169.254.169.254")
    assert "which embeds 169.254.169.254" in caught.value.detail
    assert "cloud metadata" in caught.value.detail
    assert "SKR_ALLOW_PRIVATE_NETWORKS" not in caught.value.detail


def test_blocked_url_error_is_both_invalid_input_and_fetch_error() -> None:
    with pytest.raises(BlockedURLError) as caught:
        AddressPolicy().check("127.0.0.1")
    assert isinstance(caught.value, InvalidInputError)
    assert isinstance(caught.value, FetchError)


async def test_public_host_is_pinned_to_its_checked_ip() -> None:
    guard, resolver, inner = _guard()
    with pytest.raises(ConnectAttemptedError):
        await guard.connect_tcp("public.test", 443, timeout=1.0)
    assert resolver.calls == [("public.test", 443)]
    assert inner.calls == [(PUBLIC_IP, 443)]


@pytest.mark.parametrize(
    ("host", "allow_private", "needle"),
    [
        ("private.test", False, "private.test resolves to 10.1.2.3, a private address"),
        ("loop.test", False, "loop.test resolves to 127.0.0.1, a loopback address"),
        ("linklocal.test", False, "a link-local address"),
        ("linklocal.test", True, "a link-local address"),
        ("mixed.test", False, "mixed.test resolves to 10.1.2.3"),
        ("10.9.9.9", False, "refused: 10.9.9.9 is a private address"),
        ("169.254.169.254", True, "refused: 169.254.169.254 is a link-local address"),
        ("garbage.test", True, "not-an-ip is not an IP address"),
    ],
)
async def test_refused_hosts_never_reach_the_inner_backend(
    host: str, allow_private: bool, needle: str
) -> None:
    guard, _, inner = _guard(allow_private=allow_private)
    with pytest.raises(BlockedURLError, match=needle):
        await guard.connect_tcp(host, 80)
    assert inner.calls == []


@pytest.mark.parametrize(
    ("host", "pinned"),
    [("private.test", "10.1.2.3"), ("loop.test", "127.0.0.1"), ("mixed.test", PUBLIC_IP)],
)
async def test_allow_private_pins_private_hosts(host: str, pinned: str) -> None:
    guard, _, inner = _guard(allow_private=True)
    with pytest.raises(ConnectAttemptedError):
        await guard.connect_tcp(host, 8080)
    assert inner.calls == [(pinned, 8080)]


async def test_ip_literals_are_not_resolved() -> None:
    guard, resolver, inner = _guard()
    for host in (PUBLIC_IP, "2606:4700:4700::1111", "[2606:4700:4700::1111]"):
        with pytest.raises(ConnectAttemptedError):
            await guard.connect_tcp(host, 80)
    assert resolver.calls == []
    v6 = ("2606:4700:4700::1111", 80)
    assert inner.calls == [(PUBLIC_IP, 80), v6, v6]


async def test_unreachable_address_falls_through_to_the_next() -> None:
    guard, _, inner = _guard(unreachable=["2606:4700:4700::1111"])
    with pytest.raises(ConnectAttemptedError):
        await guard.connect_tcp("dual.test", 443)
    assert inner.calls == [("2606:4700:4700::1111", 443), (PUBLIC_IP, 443)]


async def test_unresolvable_hosts_are_fetch_errors() -> None:
    guard, _, inner = _guard()
    with pytest.raises(FetchError, match=r"could not resolve host nowhere\.test"):
        await guard.connect_tcp("nowhere.test", 80)
    with pytest.raises(FetchError, match=r"could not resolve host empty\.test"):
        await guard.connect_tcp("empty.test", 80)
    assert inner.calls == []


async def test_unix_sockets_are_refused_and_sleep_delegates() -> None:
    guard, _, inner = _guard(allow_private=True)
    with pytest.raises(BlockedURLError, match="unix sockets"):
        await guard.connect_unix_socket("/var/run/docker.sock")
    await guard.sleep(0.25)
    assert inner.sleeps == [0.25]
    assert inner.calls == []


@pytest.mark.parametrize(
    ("url", "error", "needle"),
    [
        ("ftp://public.test/file", InvalidInputError, "only http and https URLs can be ingested"),
        ("file:///etc/passwd", InvalidInputError, "not file"),
        ("public.test/page", InvalidInputError, "no scheme"),
        ("http:///path", InvalidInputError, "no host"),
        ("http://public.test:99999/", InvalidInputError, "port 99999 is out of range"),
        ("http://[::1/", InvalidInputError, "not a valid URL"),
        ("http://private.test/", BlockedURLError, "private.test resolves to 10.1.2.3"),
        ("https://127.0.0.1:8443/", BlockedURLError, "a loopback address"),
        ("http://[::ffff:7f00:1]/", BlockedURLError, "a loopback address"),
        ("http://linklocal.test/latest/meta-data", BlockedURLError, "link-local"),
        ("http://nowhere.test/", FetchError, "could not resolve host nowhere.test"),
    ],
)
async def test_check_url_refuses(url: str, error: type[Exception], needle: str) -> None:
    resolver = FakeResolver(HOSTS)
    with pytest.raises(error, match=re.escape(needle)):
        await check_url(url, resolver, AddressPolicy())


async def test_check_url_uses_the_default_port_and_the_idna_host() -> None:
    resolver = FakeResolver({"public.test": [PUBLIC_IP], "xn--bcher-kva.test": [PUBLIC_IP]})
    parsed = await check_url("https://public.test/a?b=c", resolver, AddressPolicy())
    assert parsed.host == "public.test"
    await check_url("http://bücher.test:8080/", resolver, AddressPolicy())
    assert resolver.calls == [("public.test", 443), ("xn--bcher-kva.test", 8080)]


async def test_system_resolver_answers_ip_literals_without_dns() -> None:
    # A numeric host never leaves the machine: getaddrinfo parses it locally.
    assert await SystemResolver().resolve("127.0.0.1", 80) == ["127.0.0.1"]


async def test_system_resolver_maps_failures(monkeypatch: pytest.MonkeyPatch) -> None:
    async def failing(*args: object, **kwargs: object) -> list[object]:
        raise socket.gaierror(socket.EAI_NONAME, "Name or service not known")

    async def hanging(*args: object, **kwargs: object) -> list[object]:
        await anyio.sleep(10)
        return []

    monkeypatch.setattr(anyio, "getaddrinfo", failing)
    with pytest.raises(FetchError, match=r"^could not resolve host example\.com$"):
        await SystemResolver().resolve("example.com", 80)
    monkeypatch.setattr(anyio, "getaddrinfo", hanging)
    with pytest.raises(FetchError, match=r"timed out after 0\.05 s"):
        await SystemResolver(timeout=0.05).resolve("example.com", 80)
