"""Built-in job type: call a URL and record its answer, under the webhooks' address rules.

    ping = http_call(crisper, name="ops.http_call", queue="http", attempts=4, backoff="2s")
    crisper.submit("ops.http_call", {"url": "https://partner.example/hooks/order",
                                     "method": "POST", "body": "{\\"id\\": 7}",
                                     "headers": {"Content-Type": "application/json"}})

The URL, method, headers and body come from whoever holds a write key, so they are checked
twice: their shape at submit (http/https only, sizes capped, no header that would change
how the request is framed), and the address when it is called, by crisper/outbound.py as for
webhooks (loopback, private, link-local/metadata addresses refused unless named in
CRISPER_OUTBOUND_ALLOW; checked on the resolved address and on every redirect). A 5xx or 429
answer, a refused connection or a timeout fails the attempt, so the job type's retry policy
backs off and tries again; any other answer is the job's result. See docs/contrib.md.
"""

from __future__ import annotations

import base64
import inspect
import time
from dataclasses import dataclass, field
from email.utils import parsedate_to_datetime
from typing import TYPE_CHECKING, Annotated, Any, Literal
from urllib.parse import urlsplit

import httpx
from pydantic import AfterValidator, Field

from crisper import outbound
from crisper.durations import option_seconds
from crisper.errors import ConfigurationError, OutboundRefused
from crisper.retry import Retry

if TYPE_CHECKING:
    from crisper.app import Crisper
    from crisper.engine.context import JobContext

__all__ = ["HttpCall", "HttpStatusError", "http_call"]

Method = Literal["GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"]
# Headers that decide how the request is framed or routed belong to the client, not to params.
FORBIDDEN_HEADERS = frozenset({
    "host", "content-length", "transfer-encoding", "connection", "keep-alive", "upgrade",
    "te", "trailer", "expect", "proxy-authorization", "proxy-connection"})
KEPT_HEADERS = ("content-type", "content-length", "content-encoding", "location", "etag",
                "last-modified", "retry-after", "date", "cache-control")
USER_AGENT = "Crisper-HttpCall/1"


def _check_url(url: str) -> str:
    """The URL's shape (its address is checked when it is called: DNS answers change)."""
    if any(c.isspace() or ord(c) < 32 or ord(c) == 127 for c in url):
        raise ValueError("the URL may not contain spaces or control characters")
    try:
        parts = urlsplit(url)
        host, _port = parts.hostname, parts.port
    except ValueError as exc:
        raise ValueError(f"not a URL: {exc}") from None
    if parts.scheme not in ("http", "https"):
        raise ValueError("only http and https URLs are called")
    if not host:
        raise ValueError("the URL names no host")
    if parts.username or parts.password:
        raise ValueError("credentials in the URL are not sent; use an Authorization header")
    return url


def _check_headers(headers: dict[str, str]) -> dict[str, str]:
    lowered = [name.lower() for name in headers]
    refused = sorted(n for n in lowered if n in FORBIDDEN_HEADERS or n.startswith("proxy-"))
    if refused:
        raise ValueError(f"headers {refused} are set by the client, not by params")
    if len(set(lowered)) != len(lowered):
        raise ValueError("a header is named twice (names are case-insensitive)")
    return headers


Url = Annotated[str, Field(min_length=1, max_length=2048), AfterValidator(_check_url)]
HeaderName = Annotated[str, Field(pattern=r"^[!#$%&'*+.^_`|~0-9A-Za-z-]{1,64}$")]
HeaderValue = Annotated[str, Field(max_length=4096, pattern=r"^[\x20-\x7e\t]*$")]
Headers = Annotated[dict[HeaderName, HeaderValue], Field(max_length=50),
                    AfterValidator(_check_headers)]


class HttpStatusError(Exception):
    """An answer worth another try (5xx, 429); `retry_delay` is the server's Retry-After,
    which the runner uses in place of the back-off (capped by the policy's max_backoff)."""

    def __init__(self, status: int, url: str, excerpt: str, retry_delay: float | None) -> None:
        super().__init__(f"HTTP {status} from {url}" + (f": {excerpt}" if excerpt else ""))
        self.status = status
        self.retry_delay = retry_delay


@dataclass
class HttpCall:
    """One HTTP call job type: its limits, the headers it keeps, and its guard and client."""

    name: str
    guard: outbound.Guard
    request_timeout: float = 10.0
    max_timeout: float = 60.0
    max_response_bytes: int = 65_536
    max_redirects: int = outbound.MAX_REDIRECTS
    max_retry_after: float = 300.0
    keep_headers: tuple[str, ...] = KEPT_HEADERS
    retry_statuses: frozenset[int] = field(default_factory=lambda: frozenset({429}))
    _client: httpx.Client | None = field(default=None, repr=False)

    @property
    def client(self) -> httpx.Client:
        """One client per process (made on first use: a worker forks after import)."""
        if self._client is None:
            self._client = outbound.new_client()
        return self._client

    def run(self, ctx: JobContext, url: str, method: str, headers: dict[str, str] | None,
            body: str | None, timeout: float | None) -> dict[str, Any]:
        """The job body: one call (its redirects followed through the guard), recorded."""
        sent = {"User-Agent": USER_AGENT, **(headers or {})}
        began = time.monotonic()
        limit = min(timeout or self.request_timeout, self.max_timeout)
        ctx.progress(0, 1, f"{method} {url}")
        try:
            response = outbound.request(
                self.client, self.guard, method, url, headers=sent,
                content=body.encode() if body is not None else None, timeout=limit,
                max_redirects=self.max_redirects, stream=True)
        except OutboundRefused:
            ctx.logger.warning("%s %s: refused by the outbound address rules", method, url)
            raise
        except httpx.TransportError as exc:
            ctx.logger.warning("%s %s: %s: %s (attempt %d of %d)", method, url,
                               type(exc).__name__, exc, ctx.attempt, ctx.max_attempts)
            raise
        try:
            raw, truncated = self._read(response, began + limit)
        finally:
            response.close()
        return self._record(ctx, response, method, raw, truncated, time.monotonic() - began)

    def _read(self, response: httpx.Response, deadline: float) -> tuple[bytes, bool]:
        """At most max_response_bytes of the body (the rest is never read), by the deadline:
        httpx's timeout bounds each read, so a server trickling bytes is stopped here."""
        kept = bytearray()
        for chunk in response.iter_bytes():  # as they arrive (a chunk size would buffer)
            if time.monotonic() > deadline:
                raise httpx.ReadTimeout("the answer took longer than the call's timeout")
            kept += chunk
            if len(kept) > self.max_response_bytes:
                return bytes(kept[:self.max_response_bytes]), True
        return bytes(kept), False

    def _record(self, ctx: JobContext, response: httpx.Response, method: str, raw: bytes,
                truncated: bool, elapsed: float) -> dict[str, Any]:
        url = str(response.extensions.get("crisper_url", ""))
        status = response.status_code
        if status >= 500 or status in self.retry_statuses:
            excerpt = raw[:200].decode(errors="replace").strip()
            wait = self._retry_after(response.headers.get("retry-after"))
            ctx.logger.warning("%s %s answered %d (attempt %d of %d)", method, url, status,
                               ctx.attempt, ctx.max_attempts)
            raise HttpStatusError(status, url, excerpt, wait)
        ctx.progress(1, 1, f"HTTP {status}")
        result: dict[str, Any] = {
            "url": url, "method": method, "status": status, "reason": response.reason_phrase,
            "ok": response.is_success, "headers": {k: v for k in self.keep_headers
                                                   if (v := response.headers.get(k))},
            "body_bytes": len(raw), "body_truncated": truncated,
            "elapsed": round(elapsed, 4),
            "redirects": int(response.extensions.get("crisper_redirects", 0)),
            "attempt": ctx.attempt}
        result.update(_body(raw))
        return result

    def _retry_after(self, value: str | None) -> float | None:
        """Retry-After in seconds (a number or an HTTP date), capped; None: the back-off."""
        if not value:
            return None
        try:
            wait = float(value) if value.strip().isdigit() else (
                parsedate_to_datetime(value).timestamp() - time.time())
        except (TypeError, ValueError, OverflowError):
            return None
        return max(0.0, min(wait, self.max_retry_after))


def _body(raw: bytes) -> dict[str, str]:
    """Text when the bytes are UTF-8 without NUL (storable as JSON text), else base64."""
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError:
        return {"body_base64": base64.b64encode(raw).decode()}
    if "\x00" in text:
        return {"body_base64": base64.b64encode(raw).decode()}
    return {"body": text}


def http_call(crisper: Crisper, *, name: str, queue: str = "default", timeout: str = "5m",
              attempts: int = 4, backoff: str | float = "2s", max_backoff: str | float = "5m",
              request_timeout: str | float = "10s", max_timeout: str | float = "60s",
              max_request_bytes: int = 1 << 20, max_response_bytes: int = 65_536,
              max_redirects: int = outbound.MAX_REDIRECTS,
              keep_headers: tuple[str, ...] = KEPT_HEADERS) -> HttpCall:
    """Register the job type `name`: params `url`, `method` (GET), `headers`, `body` (text,
    at most `max_request_bytes` bytes as UTF-8) and `timeout` (seconds, at most `max_timeout`).

    `attempts` tries in all, `backoff` doubling up to `max_backoff` (or the server's
    Retry-After), on a 5xx/429 answer, a network error or a timeout; a refused address fails
    the job at once. The allow-list is the app's `outbound_allow` (CRISPER_OUTBOUND_ALLOW).
    """
    if attempts < 1 or max_response_bytes < 0 or max_request_bytes < 0 or max_redirects < 0:
        raise ConfigurationError(f"HTTP call {name!r}: attempts must be at least 1 and the "
                                 "sizes and redirects not negative")
    limit = option_seconds("max_timeout", max_timeout)
    default = option_seconds("request_timeout", request_timeout)
    assert limit is not None and default is not None
    spec = HttpCall(name, outbound.Guard(crisper.settings.outbound_allow), min(default, limit),
                    limit, max_response_bytes, max_redirects,
                    max_retry_after=option_seconds("max_backoff", max_backoff) or 300.0,
                    keep_headers=tuple(h.lower() for h in keep_headers))

    def call_url(ctx: JobContext, url: str, method: str = "GET",
                 headers: dict[str, str] | None = None, body: str | None = None,
                 timeout: float | None = None) -> dict[str, Any]:
        return spec.run(ctx, url, method, headers, body, timeout)

    call_url.__signature__ = _signature(max_request_bytes, limit)  # type: ignore[attr-defined]
    call_url.__doc__ = "Call a URL (outbound address rules apply) and record its answer."
    retry = Retry(attempts=attempts, backoff=backoff, max_backoff=max_backoff,
                  retry_on=(HttpStatusError, httpx.TransportError),
                  dont_retry_on=(OutboundRefused,))
    crisper.job(name=name, queue=queue, timeout=timeout, retry=retry)(call_url)
    return spec


def _signature(max_request_bytes: int, max_timeout: float) -> inspect.Signature:
    """The params schema: what a submitter may say, each part bounded."""
    p = inspect.Parameter
    kind = p.POSITIONAL_OR_KEYWORD
    def fits(text: str) -> str:
        if len(text.encode()) > max_request_bytes:
            raise ValueError(f"the body is over {max_request_bytes} bytes (UTF-8)")
        return text

    body = Annotated[str, Field(max_length=max_request_bytes), AfterValidator(fits)]
    timeout = Annotated[float, Field(gt=0, le=max_timeout)]
    return inspect.Signature([
        p("ctx", kind), p("url", kind, annotation=Url),
        p("method", kind, default="GET", annotation=Method),
        p("headers", kind, default=None, annotation=Headers | None),
        p("body", kind, default=None, annotation=body | None),
        p("timeout", kind, default=None, annotation=timeout | None)])
