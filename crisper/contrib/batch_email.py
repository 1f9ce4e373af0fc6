"""Built-in job type: send one templated e-mail to each of a list of recipients over SMTP.

    email = crisper.rate_limit("email", "50/m", burst=5)
    welcome = batch_email(crisper, name="mail.welcome", server=SmtpServer("smtp.local"),
                          sender="hello@shop.example", subject="Welcome, $name",
                          text="Hello $name,\\n...", rate_limit=email)
    crisper.submit("mail.welcome", {"recipients": [{"to": "a@b.example",
                                                    "values": {"name": "Ada"}}]})

The server, the sender and the templates are fixed in code; a submitter only gives the
recipients and the values put into the templates ($name, with string.Template: no code, no
attribute access; values are HTML-escaped in the HTML part). Every message draws one slot
from the rate limit, which may be shared with other job types. A 4xx answer or a dropped
connection is retried with exponential back-off; a 5xx answer fails that recipient only.
See docs/contrib.md.
"""

from __future__ import annotations

import heapq
import html
import inspect
import re
import smtplib
import ssl
import time
from contextlib import suppress
from dataclasses import dataclass, field
from email.message import EmailMessage
from email.utils import formatdate, make_msgid
from string import Template
from typing import TYPE_CHECKING, Annotated, Any

import redis
from pydantic import BaseModel, ConfigDict, Field, TypeAdapter

from crisper.durations import seconds
from crisper.errors import ConfigurationError
from crisper.flow.bucket import RateBuckets
from crisper.flow.limits import RateLimit, limit_scope, parse_rate

if TYPE_CHECKING:
    from crisper.app import Crisper
    from crisper.engine.context import JobContext

__all__ = ["BatchEmail", "Recipient", "SmtpServer", "batch_email"]

# One address, no display name, nothing that could end a header or add a recipient.
ADDRESS = r"^[^@\s<>,;:\"()\[\]\\]{1,64}@[A-Za-z0-9.-]{1,190}$"
REDIS_DOWN_WAIT = 5.0
SENT_KEPT_SECONDS = 7 * 86400
PREVIEWS = 3


# Template values: at most 50, names of 64 characters, values of 10,000.
Values = Annotated[dict[Annotated[str, Field(max_length=64)],
                        Annotated[str, Field(max_length=10_000)]], Field(max_length=50)]


class Recipient(BaseModel):
    """One message: the address and the values its templates are filled with."""

    model_config = ConfigDict(extra="forbid")
    to: str = Field(max_length=254, pattern=ADDRESS)
    values: Values = Field(default_factory=dict)


@dataclass(frozen=True)
class SmtpServer:
    """Where messages go: plain SMTP, optionally upgraded with STARTTLS and logged in."""

    host: str
    port: int = 25
    starttls: bool = False
    username: str | None = None
    password: str | None = field(default=None, repr=False)
    timeout: float = 30.0


class SmtpFailure(Exception):
    """An SMTP transaction that did not go through: the server's code (None: no answer)."""

    def __init__(self, code: int | None, message: str) -> None:
        super().__init__(message)
        self.code = code

    @property
    def transient(self) -> bool:
        return self.code is None or 400 <= self.code < 500


class Connection:
    """One SMTP session, opened on first use and again after the server dropped it."""

    def __init__(self, server: SmtpServer) -> None:
        self.server = server
        self._smtp: smtplib.SMTP | None = None

    def _open(self) -> smtplib.SMTP:
        if self._smtp is None:
            smtp = smtplib.SMTP(self.server.host, self.server.port, timeout=self.server.timeout)
            if self.server.starttls:
                smtp.starttls(context=ssl.create_default_context())
            if self.server.username:
                smtp.login(self.server.username, self.server.password or "")
            self._smtp = smtp
        return self._smtp

    def send(self, message: EmailMessage, sender: str, to: str) -> None:
        try:
            self._open().send_message(message, from_addr=sender, to_addrs=[to])
        except smtplib.SMTPRecipientsRefused as exc:
            code, text = exc.recipients.get(to, (None, b"refused"))
            if code == 421:  # smtplib has closed the session: open a new one next time
                self.close()
            raise SmtpFailure(code, _text(text)) from None
        except smtplib.SMTPResponseException as exc:
            if exc.smtp_code in (421, -1):  # the server is closing the session
                self.close()
            raise SmtpFailure(exc.smtp_code, _text(exc.smtp_error)) from None
        except (smtplib.SMTPException, OSError) as exc:  # dropped, refused, timed out
            self.close()
            raise SmtpFailure(None, f"{type(exc).__name__}: {exc}") from None

    def close(self) -> None:
        smtp, self._smtp = self._smtp, None
        if smtp is not None:
            with suppress(smtplib.SMTPException, OSError):
                smtp.quit()
            smtp.close()


def _text(raw: bytes | str) -> str:
    return raw.decode(errors="replace") if isinstance(raw, bytes) else str(raw)


@dataclass
class Outcome:
    """What happened to one recipient, as the job's result reports it."""

    to: str
    status: str = "pending"  # sent | failed | rendered (test mode) | duplicate
    tries: int = 0
    code: int | None = None
    error: str | None = None

    def report(self) -> dict[str, Any]:
        return {k: v for k, v in self.__dict__.items() if v is not None}


RECIPIENTS: TypeAdapter[list[Recipient]] = TypeAdapter(list[Recipient])


@dataclass(frozen=True)
class BatchEmail:
    """One batch e-mail job type: server, sender, templates, rate and retry policy."""

    name: str
    server: SmtpServer
    sender: str
    subject: Template
    text: Template
    html: Template | None
    rate: RateLimit | None
    redis_url: str | None
    prefix: str
    attempts: int = 4
    backoff: float = 2.0
    max_backoff: float = 300.0
    test_mode: bool = False

    @property
    def rate_key(self) -> str:
        """The bucket: a shared limit's ('@email'), or this job type's own."""
        assert self.rate is not None
        return limit_scope(self.rate.name) if self.rate.name else self.name

    def render(self, person: Recipient, common: dict[str, str]) -> EmailMessage:
        """The message for one recipient; ValueError for a missing value or a broken header."""
        values = {**common, **person.values}
        try:
            subject = self.subject.substitute(values)
            message = EmailMessage()
            message.set_content(self.text.substitute(values))
            if self.html is not None:
                escaped = {k: html.escape(v) for k, v in values.items()}
                message.add_alternative(self.html.substitute(escaped), subtype="html")
        except KeyError as exc:
            raise ValueError(f"no value for ${exc.args[0]} in the template") from None
        if "\r" in subject or "\n" in subject:
            raise ValueError("the subject would contain a line break")
        message["Subject"] = subject
        message["From"] = self.sender
        message["To"] = person.to
        message["Date"] = formatdate(localtime=False)
        message["Message-ID"] = make_msgid(domain=self.sender.rpartition("@")[2] or None)
        return message

    def run(self, ctx: JobContext, recipients: list[Any], values: dict[str, str] | None,
            test_mode: bool) -> dict[str, Any]:
        """The job body: every recipient once, transient failures again after back-off."""
        people = RECIPIENTS.validate_python(recipients)
        test = self.test_mode or test_mode
        outcomes = [Outcome(p.to) for p in people]
        sent = SentLog(self.redis_url, f"{self.prefix}crisper:mail:{ctx.job_id}", not test)
        buckets = RateBuckets(self.redis_url, self.prefix)
        previews: list[dict[str, str]] = []
        seen: set[str] = set()
        due = [(0.0, i) for i in range(len(people))]
        connection = Connection(self.server)
        try:
            while due:
                at, i = heapq.heappop(due)
                _sleep(ctx, at - time.monotonic())
                ctx.check_cancelled()
                person, outcome = people[i], outcomes[i]
                if outcome.tries == 0 and person.to.lower() in seen:
                    outcome.status = "duplicate"
                    continue
                seen.add(person.to.lower())
                retry_at = self._one(ctx, person, outcome, values or {}, test, sent, buckets,
                                     connection, previews)
                if retry_at is not None:
                    heapq.heappush(due, (retry_at, i))
                self._progress(ctx, outcomes)
        finally:
            connection.close()
        counts = {s: sum(o.status == s for o in outcomes)
                  for s in ("sent", "failed", "rendered", "duplicate")}
        ctx.logger.info("%s: %d sent, %d failed%s", self.name, counts["sent"], counts["failed"],
                        " (test mode: nothing sent)" if test else "")
        return {"test_mode": test, **counts,
                "recipients": [o.report() for o in outcomes], "previews": previews}

    def _one(self, ctx: JobContext, person: Recipient, outcome: Outcome,
             common: dict[str, str], test: bool, sent: SentLog, buckets: RateBuckets,
             connection: Connection, previews: list[dict[str, str]]) -> float | None:
        """Try one recipient; answers when to try again (a transient failure), else None."""
        if sent.has(person.to):
            outcome.status, outcome.error = "sent", "sent by an earlier attempt of this job"
            return None
        try:
            message = self.render(person, common)
        except ValueError as exc:
            outcome.status, outcome.error = "failed", str(exc)
            return None
        if test:
            outcome.status = "rendered"
            if len(previews) < PREVIEWS:
                previews.append({"to": person.to, "subject": str(message["Subject"]),
                                 "text": message.get_body(("plain",)).get_content()})  # type: ignore[union-attr]
            return None
        self._take_slot(ctx, buckets)
        outcome.tries += 1
        try:
            connection.send(message, self.sender, person.to)
        except SmtpFailure as exc:
            outcome.code, outcome.error = exc.code, str(exc)
            if exc.transient and outcome.tries < self.attempts:
                ctx.logger.warning("%s: try %d answered %s; trying again", person.to,
                                   outcome.tries, exc.code or "nothing")
                delay = min(self.max_backoff, self.backoff * 2 ** (outcome.tries - 1))
                return time.monotonic() + delay
            outcome.status = "failed"
            ctx.logger.warning("%s: failed for good (%s %s)", person.to, exc.code, exc)
            return None
        outcome.status, outcome.code, outcome.error = "sent", None, None
        sent.add(person.to)
        return None

    def _take_slot(self, ctx: JobContext, buckets: RateBuckets) -> None:
        """Wait for this message's slot in the (shared) rate limit, cancellably."""
        if self.rate is None:
            return
        while True:
            try:
                wait = buckets.reserve(self.rate_key, self.rate)
            except redis.RedisError as exc:
                ctx.logger.warning("rate limit unavailable (%s); waiting", exc)
                _sleep(ctx, REDIS_DOWN_WAIT)
                continue
            _sleep(ctx, wait)
            return

    def _progress(self, ctx: JobContext, outcomes: list[Outcome]) -> None:
        done = sum(o.status != "pending" for o in outcomes)
        sent = sum(o.status == "sent" for o in outcomes)
        failed = sum(o.status == "failed" for o in outcomes)
        ctx.progress(done, len(outcomes), f"{sent} sent, {failed} failed")


def _sleep(ctx: JobContext, seconds_: float) -> None:
    """Sleep, checking for a cancel at least twice a second."""
    end = time.monotonic() + seconds_
    while (left := end - time.monotonic()) > 0:
        ctx.check_cancelled()
        time.sleep(min(left, 0.5))


class SentLog:
    """Addresses this job already sent to, kept in Redis, so a retried job does not send
    them again (at most one message twice: one accepted just before a crash)."""

    def __init__(self, url: str | None, key: str, enabled: bool) -> None:
        self.key = key
        self._client = (redis.Redis.from_url(url, socket_connect_timeout=2, socket_timeout=2)
                        if url and enabled else None)

    def has(self, to: str) -> bool:
        if self._client is None:
            return False
        with suppress(redis.RedisError):
            return bool(self._client.sismember(self.key, to.lower()))
        return False

    def add(self, to: str) -> None:
        if self._client is None:
            return
        with suppress(redis.RedisError):
            pipe = self._client.pipeline()
            pipe.sadd(self.key, to.lower())
            pipe.expire(self.key, SENT_KEPT_SECONDS)
            pipe.execute()


def batch_email(crisper: Crisper, *, name: str, server: SmtpServer, sender: str, subject: str,
                text: str, html: str | None = None, rate_limit: RateLimit | str | None = None,
                queue: str = "default", priority: int = 0, timeout: str = "1h",
                attempts: int = 4,
                backoff: str | float = "2s", max_backoff: str | float = "5m",
                test_mode: bool = False, max_recipients: int = 1000) -> BatchEmail:
    """Register the job type `name`: params `recipients` (1..max_recipients of {to, values}),
    `values` (shared by all) and `test_mode` (render and record, send nothing; forced on
    for every job when `test_mode=True` here)."""
    if not re.fullmatch(ADDRESS, sender):
        raise ConfigurationError(f"batch e-mail {name!r}: sender {sender!r} is not one address")
    if attempts < 1:
        raise ConfigurationError(f"batch e-mail {name!r}: attempts must be at least 1")
    rate = parse_rate(rate_limit) if isinstance(rate_limit, str) else rate_limit
    settings = crisper.settings
    spec = BatchEmail(name, server, sender, Template(subject), Template(text),
                      Template(html) if html is not None else None, rate,
                      settings.resolved_redis_url(), settings.broker_prefix, attempts,
                      seconds(backoff), seconds(max_backoff), test_mode)

    def send_batch(ctx: JobContext, recipients: list[Recipient],
                   values: dict[str, str] | None = None, test_mode: bool = False
                   ) -> dict[str, Any]:
        return spec.run(ctx, recipients, values, test_mode)

    bounded = Annotated[list[Recipient], Field(min_length=1, max_length=max_recipients)]
    params = [inspect.Parameter("ctx", inspect.Parameter.POSITIONAL_OR_KEYWORD),
              inspect.Parameter("recipients", inspect.Parameter.POSITIONAL_OR_KEYWORD,
                                annotation=bounded),
              inspect.Parameter("values", inspect.Parameter.POSITIONAL_OR_KEYWORD,
                                default=None, annotation=Values | None),
              inspect.Parameter("test_mode", inspect.Parameter.POSITIONAL_OR_KEYWORD,
                                default=False, annotation=bool)]
    send_batch.__signature__ = inspect.Signature(params)  # type: ignore[attr-defined]
    send_batch.__doc__ = f"Send {subject!r} to each recipient from {sender}."
    crisper.job(name=name, queue=queue, priority=priority, timeout=timeout)(send_batch)
    return spec
