"""Pure webhook logic: signatures, back-off, the outbound address rules, event names."""

from __future__ import annotations

import ipaddress
import time

import pytest

from crisper import webhook_events as events
from crisper.errors import OutboundRefused
from crisper.maintenance.deliverer import backoff
from crisper.outbound import Guard, forbidden_kind
from crisper.states import JobState
from crisper.webhooks import signing

BODY = b'{"event":"job.succeeded","data":{"id":"x"}}'


def test_a_signature_verifies_and_a_changed_body_or_old_stamp_does_not() -> None:
    now = int(time.time())
    header = signing.header(["whsec_a"], now, BODY)
    assert signing.verify("whsec_a", header, BODY)
    assert not signing.verify("whsec_a", header, BODY.replace(b"x", b"y"))
    assert not signing.verify("whsec_b", header, BODY)
    stale = signing.header(["whsec_a"], now - 301, BODY)
    assert not signing.verify("whsec_a", stale, BODY)


def test_during_a_rotation_both_secrets_sign() -> None:
    header = signing.header(["new", "old"], int(time.time()), BODY)
    assert header.count("v1=") == 2
    assert signing.verify("new", header, BODY) and signing.verify("old", header, BODY)


@pytest.mark.parametrize("attempts, expected", [(1, 10.0), (2, 20.0), (3, 40.0), (10, 3600.0)])
def test_backoff_doubles_up_to_its_cap(attempts: int, expected: float) -> None:
    assert backoff(attempts, 10.0, 3600.0) == expected


@pytest.mark.parametrize("address, refused", [
    ("127.0.0.1", True), ("127.8.9.10", True), ("::1", True), ("10.1.2.3", True),
    ("172.16.0.9", True), ("192.168.1.1", True), ("169.254.169.254", True),
    ("fe80::1", True), ("fd00:ec2::254", True), ("100.100.100.200", True), ("0.0.0.0", True),
    ("::ffff:10.0.0.1", True), ("224.0.0.1", True),
    ("93.184.216.34", False), ("2606:2800:220:1::1", False), ("8.8.8.8", False),
])
def test_forbidden_addresses(address: str, refused: bool) -> None:
    assert (forbidden_kind(ipaddress.ip_address(address)) is not None) is refused


def _resolving(table: dict[str, list[str]]) -> Guard:
    return Guard([], resolver=lambda host, port: table[host])


def test_the_guard_checks_every_resolved_address_and_uses_a_checked_one() -> None:
    guard = _resolving({"public.example": ["93.184.216.34"],
                        "internal.example": ["10.0.0.5"],
                        "mixed.example": ["93.184.216.34", "192.168.0.2"]})
    target = guard.check("https://public.example/hook?x=1")
    assert target.connect_url() == "https://93.184.216.34:443/hook?x=1"
    assert target.host_header() == "public.example"
    with pytest.raises(OutboundRefused, match="private"):
        guard.check("http://internal.example/")
    with pytest.raises(OutboundRefused, match="mixed.example resolves to a private") as mixed:
        guard.check("http://mixed.example/")
    assert "192.168" not in str(mixed.value)  # the internal address is not told
    assert "CRISPER_OUTBOUND_ALLOW" in str(mixed.value)  # and how to allow it is
    for url in ("ftp://public.example/", "http://user:pw@public.example/", "http:///x",
                "http://169.254.169.254/latest/meta-data"):
        with pytest.raises(OutboundRefused):
            guard.check(url)


def test_the_allow_list_admits_the_networks_it_names_only() -> None:
    guard = Guard(["127.0.0.1/32", "10.20.0.0/16"], resolver=lambda h, p: ["10.20.3.4"])
    assert guard.check("http://127.0.0.1:8080/").ip == "127.0.0.1"
    assert guard.check("http://svc.internal/").ip == "10.20.3.4"
    with pytest.raises(OutboundRefused):
        guard.check("http://127.0.0.2/")
    with pytest.raises(OutboundRefused):
        Guard(["127.0.0.1"]).check("http://10.21.0.1/")


@pytest.mark.parametrize("target, reason, name", [
    (JobState.SUCCEEDED, "succeeded", "job.succeeded"), (JobState.FAILED, "failed", "job.failed"),
    (JobState.FAILED, "poisoned", "job.poisoned"), (JobState.CANCELLED, "cancelled",
                                                    "job.cancelled"),
    (JobState.RETRYING, "retrying", "job.retrying"), (JobState.QUEUED, "started", None),
])
def test_job_event_names(target: JobState, reason: str, name: str | None) -> None:
    assert events.job_event(target, reason) == name


def test_a_name_that_does_not_resolve_is_a_network_error_not_a_refusal(
        monkeypatch: pytest.MonkeyPatch) -> None:
    import socket

    import httpx

    def no_answer(*args: object, **kwargs: object) -> None:  # no DNS traffic from a unit test
        raise socket.gaierror(socket.EAI_NONAME, "Name or service not known")

    monkeypatch.setattr(socket, "getaddrinfo", no_answer)
    with pytest.raises(httpx.ConnectError, match="cannot resolve"):
        Guard([]).check("http://no-such-host.invalid/")


@pytest.mark.parametrize("url", [
    "http://2130706433/", "http://0177.0.0.1/", "http://0x7f.0.0.1/", "http://127.1/",
    "http://0/", "http://[::1]/", "http://[::ffff:127.0.0.1]/", "http://[::ffff:7f00:1]/",
    "http://[::127.0.0.1]/", "http://[2002:7f00:1::]/", "http://[2002:a9fe:a9fe::]/",
    "http://[fe80::1%25eth0]/", "http://[::]/", "http://169.254.169.254/latest/meta-data",
    "http://localhost:8080/", "https://[fd00:ec2::254]/",
])
def test_every_spelling_of_an_internal_address_is_refused(url: str) -> None:
    # numeric forms (decimal, octal, hex, short, IPv6 literals, IPv4 inside IPv6) reach the
    # system resolver as they would in production; none needs DNS traffic
    with pytest.raises(OutboundRefused):
        Guard([]).check(url)


@pytest.mark.parametrize("answer", ["127.0.0.1", "::ffff:127.0.0.1", "169.254.169.254",
                                    "::1", "100.64.0.1", "fc00::1"])
def test_a_public_looking_name_resolving_inside_is_refused(answer: str) -> None:
    guard = Guard([], resolver=lambda host, port: ["93.184.216.34", answer])
    with pytest.raises(OutboundRefused, match="address"):
        guard.check("https://hooks.example.com/in")


@pytest.mark.parametrize("url, why", [
    ("http://user:pw@hooks.example.com/", "credentials"), ("http://u@hooks.example.com/",
                                                            "credentials"),
    ("http://hooks.example.com/a\r\nX-Evil: 1", "control"), ("http://hooks.example.com/ a",
                                                             "white space"),
    ("http://hooks.example.com\x00.evil/", "control"), ("http://hooks.example.com:99999/",
                                                        "parse"),
    ("http://hooks.example.com:x/", "parse"), ("http://hooks.example.com:0/", "port 0"),
    ("file:///etc/passwd", "http and https"), ("gopher://hooks.example.com/", "http and https"),
    ("javascript:alert(1)", "http and https"), ("http:///nohost", "no host"),
])
def test_hostile_urls_are_refused_where_they_enter_and_where_they_are_called(
        url: str, why: str) -> None:
    from crisper.errors import InvalidRequest
    from crisper.outbound import checked_callback_url

    with pytest.raises(InvalidRequest) as entered:
        checked_callback_url(url)
    with pytest.raises(OutboundRefused, match=why) as called:
        Guard([], resolver=lambda host, port: ["93.184.216.34"]).check(url)
    assert entered.value.args  # the refusal says why
    # the allow-list cannot help a URL of the wrong shape, so it is not offered
    assert "CRISPER_OUTBOUND_ALLOW" not in str(called.value)
