"""The outbound address guard: HTTP requests to users' URLs, never to our own network.

A URL a user gives (a webhook, a callback) must not reach loopback, link-local, private or
cloud-metadata addresses: that would let a tenant probe or call services inside the network
the scheduler runs in. The guard resolves the host once, checks every address it gets, and
connects to the checked address (the Host header and TLS name stay the URL's), so a DNS
answer that changes between check and connect cannot slip through. Redirects are followed
by hand, each new location checked the same way. Addresses named in the allow-list
(`CRISPER_OUTBOUND_ALLOW`, networks such as `127.0.0.1/32` or `10.0.0.0/8`) are let through.
"""

from __future__ import annotations

import ipaddress
import socket
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

import httpx

from crisper.errors import InvalidRequest, OutboundRefused
from crisper.names import text_problem

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network
Resolver = Callable[[str, int], Sequence[str]]
MAX_REDIRECTS = 5
_KEEP_METHOD = {307, 308}  # other redirects turn the request into a GET without a body


def system_resolver(host: str, port: int) -> list[str]:
    """Every address the system resolver gives for host (both families).

    A failed look-up is a network error (httpx.ConnectError), worth another try later, not a
    refusal: DNS outages pass.
    """
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except socket.gaierror as exc:
        raise httpx.ConnectError(f"cannot resolve {host}: {exc}") from None
    return [str(info[4][0]) for info in infos]


def forbidden_kind(ip: IPAddress) -> str | None:
    """What kind of non-public address `ip` is ("loopback", "private"…), or None if public."""
    if isinstance(ip, ipaddress.IPv6Address):  # an IPv4 address inside: judge that one
        inner = ip.ipv4_mapped or ip.sixtofour
        if inner is not None:
            return forbidden_kind(inner)
    checks = (("loopback", ip.is_loopback), ("link-local (metadata)", ip.is_link_local),
              ("unspecified", ip.is_unspecified), ("multicast", ip.is_multicast),
              ("private", ip.is_private), ("reserved", ip.is_reserved),
              ("non-public", not ip.is_global))  # shared space (100.64/10: some metadata)
    return next((name for name, hit in checks if hit), None)


def parse_allow(entries: Sequence[str]) -> list[IPNetwork]:
    """The allow-list as networks; a bare address is a network of one."""
    return [ipaddress.ip_network(e.strip(), strict=False) for e in entries if e.strip()]


@dataclass(frozen=True)
class Target:
    """A checked URL: where to connect (the checked address) and what to say the host is."""

    url: str
    scheme: str
    host: str
    port: int
    ip: str

    def connect_url(self) -> str:
        """The URL with the checked address in place of the host name."""
        parts = urlsplit(self.url)
        ip = f"[{self.ip}]" if ":" in self.ip else self.ip
        path = parts.path or "/"
        query = f"?{parts.query}" if parts.query else ""
        return f"{self.scheme}://{ip}:{self.port}{path}{query}"

    def host_header(self) -> str:
        default = {"http": 80, "https": 443}[self.scheme]
        host = f"[{self.host}]" if ":" in self.host else self.host
        return host if self.port == default else f"{host}:{self.port}"


class Guard:
    """Checks outbound URLs against the address rules and the allow-list."""

    def __init__(self, allow: Sequence[str] = (), resolver: Resolver = system_resolver) -> None:
        self.allow = parse_allow(allow)
        self.resolver = resolver

    def allowed(self, ip: IPAddress) -> bool:
        return any(ip.version == net.version and ip in net for net in self.allow)

    def check(self, url: str) -> Target:
        """Resolve the URL's host and check every address; the first one is the one used.

        Every address must pass: a name that also resolves to a private address is refused,
        whichever address a connect would have picked.
        """
        problem = shape_problem(url)
        if problem is not None:
            raise OutboundRefused(url, problem)
        parts = urlsplit(url)
        port = parts.port or (443 if parts.scheme == "https" else 80)
        host = str(parts.hostname)
        try:
            addresses, literal = [ipaddress.ip_address(host)], True
        except ValueError:
            addresses, literal = [ipaddress.ip_address(a.split("%")[0])
                                  for a in self.resolver(host, port)], False
        if not addresses:
            raise OutboundRefused(url, "the host resolves to no address")
        for ip in addresses:
            kind = forbidden_kind(ip)
            if kind is not None and not self.allowed(ip):
                # a name's internal address is not told: the error is the tenant's to read
                raise OutboundRefused(url, f"{ip} is a {kind} address" if literal
                                      else f"{host} resolves to a {kind} address",
                                      allowable=True)
        return Target(url, parts.scheme, host, port, str(addresses[0]))


def post(client: httpx.Client, guard: Guard, url: str, *, content: bytes,
         headers: Mapping[str, str], timeout: float) -> httpx.Response:
    """POST `content` to `url` through the guard, following redirects only to allowed places."""
    return request(client, guard, "POST", url, content=content, headers=headers,
                   timeout=timeout)


def request(client: httpx.Client, guard: Guard, method: str, url: str, *,
            content: bytes | None = None, headers: Mapping[str, str] | None = None,
            timeout: float = 10.0, max_redirects: int = MAX_REDIRECTS,
            stream: bool = False) -> httpx.Response:
    """One HTTP request through the guard: each hop checked, connected to its checked address.

    Raises OutboundRefused for a refused address (first hop or any redirect) and httpx's
    errors for network failures; a redirect past `max_redirects` is refused too. With
    `stream`, the final response's body is not read: the caller reads what it will keep (a
    size cap) and closes it. `response.extensions["crisper_url"]` is the URL that answered,
    `["crisper_redirects"]` the redirects followed to it.
    """
    for hop in range(max_redirects + 1):
        response = _send_checked(client, guard.check(url), method, content, headers, timeout,
                                 stream)
        location = response.headers.get("location")
        if not (response.is_redirect and location):
            response.extensions.update(crisper_url=url, crisper_redirects=hop)
            return response
        response.close()
        url = str(httpx.URL(url).join(location))
        if response.status_code not in _KEEP_METHOD:
            method, content = "GET", None
    raise OutboundRefused(url, f"more than {max_redirects} redirects")


def _send_checked(client: httpx.Client, target: Target, method: str, content: bytes | None,
                  headers: Mapping[str, str] | None, timeout: float, stream: bool = False
                  ) -> httpx.Response:
    extensions: dict[str, Any] = {}
    if target.scheme == "https":
        extensions["sni_hostname"] = target.host  # TLS checks the certificate for the name
    sent = {**(headers or {}), "Host": target.host_header()}
    built = client.build_request(method, target.connect_url(), content=content, headers=sent,
                                 timeout=timeout, extensions=extensions)
    return client.send(built, stream=stream, follow_redirects=False)


def new_client() -> httpx.Client:
    """A client that never follows redirects or reads proxy settings by itself."""
    return httpx.Client(follow_redirects=False, trust_env=False)


def shape_problem(url: str) -> str | None:
    """Why a URL is not one to call, whatever its address: the same rules where a URL enters
    (a callback, a subscription) and where it is called (each hop, redirects included)."""
    if any(c.isspace() or ord(c) < 0x20 or ord(c) == 0x7F for c in url):
        return "the URL holds white space or control characters"
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError:
        return "the URL does not parse (its port or host)"
    if parts.scheme not in ("http", "https"):
        return "only http and https URLs are called"
    if not parts.hostname:
        return "the URL names no host"
    if parts.username is not None or parts.password is not None:
        return "credentials in the URL are not sent"
    if port == 0:
        return "port 0 is not a port"
    return None


def checked_callback_url(url: str | None, field: str = "callback_url") -> str | None:
    """A callback URL as it enters: http(s), with a host, no credentials, of a sane length.
    Its address is checked when it is called (Guard.check), since DNS answers change."""
    if url is None:
        return None
    problem = text_problem(url, 2000) or shape_problem(url)
    if problem is not None:
        raise InvalidRequest(field, problem)
    return url
