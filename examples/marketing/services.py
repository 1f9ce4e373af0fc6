"""The outside world the jobs talk to, behind small interfaces: mail, lead sources, an AI model.

TEST_MODE (on by default) picks the offline stand-ins: e-mail is rendered and recorded but not
sent, lead sources answer from a fixed pool of companies, the AI answers from rules. With
TEST_MODE=0 the jobs send over SMTP, read JSON lead sources over HTTP and ask an
OpenAI-compatible endpoint, each only if configured. The jobs cannot tell the difference.
"""

from __future__ import annotations

import hashlib
import os
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from email.message import EmailMessage
from pathlib import Path
from typing import Any, Protocol

import httpx

from crisper.contrib.batch_email import Connection, SmtpFailure, SmtpServer

SOURCES = ("craigslist", "google_maps", "linkedin", "job_boards")


def _flag(value: str) -> bool:
    return value.strip().lower() not in ("0", "false", "no", "off", "")


@dataclass(frozen=True)
class Config:
    """Everything the deployment decides; from the environment, defaults from the write-up."""

    test_mode: bool = True
    email_rate: str = "50/m"
    retry_attempts: int = 4
    retry_backoff: str = "30s"
    retry_max_backoff: str = "30m"
    retry_jitter: bool = True
    smtp_host: str = "127.0.0.1"
    smtp_port: int = 25
    mail_from: str = "hello@fliptech.example"
    ai_url: str | None = None
    ai_key: str | None = field(default=None, repr=False)
    ai_model: str = "gpt-4o-mini"
    source_urls: dict[str, str] = field(default_factory=dict)
    seconds_per_source: float = 0.0
    files: Path = Path("marketing-files")

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> Config:
        env, base = (os.environ if environ is None else environ).get, cls()
        urls = {s: u for s in SOURCES if (u := env(f"MARKETING_SOURCE_URL_{s.upper()}"))}
        return cls(test_mode=_flag(env("TEST_MODE", "1")),
                   email_rate=env("MARKETING_EMAIL_RATE", base.email_rate),
                   retry_attempts=int(env("MARKETING_RETRY_ATTEMPTS", str(base.retry_attempts))),
                   retry_backoff=env("MARKETING_RETRY_BACKOFF", base.retry_backoff),
                   retry_max_backoff=env("MARKETING_RETRY_MAX_BACKOFF", base.retry_max_backoff),
                   retry_jitter=_flag(env("MARKETING_RETRY_JITTER", "1")),
                   smtp_host=env("SMTP_HOST", base.smtp_host),
                   smtp_port=int(env("SMTP_PORT", str(base.smtp_port))),
                   mail_from=env("MAIL_FROM", base.mail_from),
                   ai_url=env("AI_BASE_URL"), ai_key=env("AI_API_KEY"),
                   ai_model=env("AI_MODEL", base.ai_model), source_urls=urls,
                   seconds_per_source=float(env("MARKETING_SECONDS_PER_SOURCE", "0")),
                   files=Path(env("MARKETING_FILES", str(base.files))))


class TransientError(Exception):
    """Worth trying again later (a 4xx SMTP answer, a source or model that is down)."""


class PermanentError(Exception):
    """No retry will fix it (a 5xx SMTP answer, a refused request)."""


# -- e-mail -------------------------------------------------------------------------------

class Mailer(Protocol):
    def send(self, to: str, subject: str, body: str) -> str:
        """Deliver one message; answers "sent" or "rendered" (test mode, nothing left)."""
        ...


class TestModeMailer:
    """TEST_MODE: the message is rendered and recorded by the job; nothing leaves."""

    def send(self, to: str, subject: str, body: str) -> str:
        return "rendered"


class SmtpMailer:
    """Plain SMTP, one session per message (Crisper's batch e-mail job keeps sessions open)."""

    def __init__(self, host: str, port: int, sender: str) -> None:
        self.server, self.sender = SmtpServer(host, port, timeout=20), sender

    def send(self, to: str, subject: str, body: str) -> str:
        message = EmailMessage()
        message["From"], message["To"], message["Subject"] = self.sender, to, subject
        message.set_content(body)
        connection = Connection(self.server)
        try:
            connection.send(message, self.sender, to)
        except SmtpFailure as exc:
            kind = TransientError if exc.transient else PermanentError
            raise kind(f"SMTP {exc.code or 'no answer'}: {exc}") from None
        finally:
            connection.close()
        return "sent"


# -- lead sources -------------------------------------------------------------------------

class LeadSource(Protocol):
    def search(self, query: str, location: str, limit: int) -> list[dict[str, Any]]:
        """Leads as {name, email, company, city, source}, in a stable order."""
        ...


COMPANIES = ["Acme Roofing", "Bluebird Bakery", "Cedar Dental", "Delta Plumbing", "Evergreen Law",
             "Fox Fitness", "Granite Auto", "Harbor Cafe", "Iris Florist", "Juniper Realty",
             "Kestrel Print", "Lumen Electric", "Maple Vet", "Nimbus IT", "Orchid Spa",
             "Pine Landscaping", "Quartz Jewelers", "Redwood Movers", "Summit Chiro",
             "Tidal Surf Shop", "Umber Design", "Vista Optics", "Willow Daycare", "Zephyr HVAC"]


def _slug(text: str) -> str:
    return re.sub(r"[^a-z0-9]+", "", text.lower())


class OfflineSource:
    """A fixed pool of companies; each source sees a stable part of it, so sources overlap
    (a company listed on two sites is one lead after the merge)."""

    def __init__(self, name: str) -> None:
        self.name = name

    def search(self, query: str, location: str, limit: int) -> list[dict[str, Any]]:
        found = [c for c in COMPANIES
                 if hashlib.sha256(f"{self.name}:{c}".encode()).digest()[0] % 2 == 0]
        return [{"name": f"Owner of {c}", "company": c, "city": location, "source": self.name,
                 "email": f"info@{_slug(c)}.example"} for c in found[:limit]]


class HttpJsonSource:
    """A lead source answering GET url?q=&location=&limit= with a JSON list of leads."""

    def __init__(self, name: str, url: str) -> None:
        self.name, self.url = name, url

    def search(self, query: str, location: str, limit: int) -> list[dict[str, Any]]:
        try:
            answer = httpx.get(self.url, params={"q": query, "location": location,
                                                 "limit": limit}, timeout=30)
        except httpx.TransportError as exc:
            raise TransientError(f"{self.name}: {exc}") from exc
        if answer.status_code >= 500 or answer.status_code == 429:
            raise TransientError(f"{self.name} answered {answer.status_code}")
        if answer.status_code >= 400:
            raise PermanentError(f"{self.name} answered {answer.status_code}")
        return [{**lead, "source": self.name} for lead in answer.json()[:limit]]


# -- AI -----------------------------------------------------------------------------------

class Assistant(Protocol):
    def complete(self, instruction: str, text: str) -> str:
        """The model's answer to `instruction` about `text`."""
        ...


class RuleAssistant:
    """Offline: short, deterministic answers (the first sentence, a polite reply)."""

    def complete(self, instruction: str, text: str) -> str:
        first = re.split(r"(?<=[.!?])\s", text.strip(), maxsplit=1)[0][:200]
        return f"[offline] {instruction.split(':')[0]}: {first}"


class OpenAICompatible:
    """Any /chat/completions endpoint (OpenAI, a local server), used only when configured."""

    def __init__(self, url: str, key: str | None, model: str) -> None:
        self.url, self.key, self.model = url.rstrip("/"), key, model

    def complete(self, instruction: str, text: str) -> str:
        body = {"model": self.model, "messages": [{"role": "system", "content": instruction},
                                                  {"role": "user", "content": text}]}
        headers = {"Authorization": f"Bearer {self.key}"} if self.key else {}
        try:
            answer = httpx.post(f"{self.url}/chat/completions", json=body, headers=headers,
                                timeout=120)
        except httpx.TransportError as exc:
            raise TransientError(str(exc)) from exc
        if answer.status_code >= 500 or answer.status_code == 429:
            raise TransientError(f"model endpoint answered {answer.status_code}")
        if answer.status_code >= 400:
            raise PermanentError(f"model endpoint answered {answer.status_code}")
        return str(answer.json()["choices"][0]["message"]["content"])


@dataclass(frozen=True)
class Services:
    """What the jobs are given: the configuration and the three interfaces."""

    config: Config
    mailer: Mailer
    sources: dict[str, LeadSource]
    assistant: Assistant

    @classmethod
    def for_config(cls, config: Config) -> Services:
        if config.test_mode:
            return cls(config, TestModeMailer(), {s: OfflineSource(s) for s in SOURCES},
                       RuleAssistant())
        sources: dict[str, LeadSource] = {s: OfflineSource(s) for s in SOURCES}
        sources.update({s: HttpJsonSource(s, u) for s, u in config.source_urls.items()})
        assistant: Assistant = (OpenAICompatible(config.ai_url, config.ai_key, config.ai_model)
                                if config.ai_url else RuleAssistant())
        return cls(config, SmtpMailer(config.smtp_host, config.smtp_port, config.mail_from),
                   sources, assistant)

