"""Webhook signatures: HMAC-SHA256 over "<timestamp>.<body>", one per active tenant secret.

The header `Crisper-Signature: t=<unix seconds>,v1=<hex>[,v1=<hex>…]` carries one signature
per secret still in force: during a rotation's overlap the old secret signs too, so a
receiver that has not switched yet keeps verifying. docs/webhooks.md has the recipes.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
import time
from collections.abc import Sequence

SIGNATURE_HEADER = "Crisper-Signature"
DELIVERY_HEADER = "Crisper-Delivery-Id"
EVENT_ID_HEADER = "Crisper-Event-Id"
EVENT_HEADER = "Crisper-Event"
TOLERANCE_SECONDS = 300.0


def new_secret() -> str:
    return "whsec_" + secrets.token_hex(24)


def signature(secret: str, timestamp: int, body: bytes) -> str:
    signed = str(timestamp).encode() + b"." + body
    return hmac.new(secret.encode(), signed, hashlib.sha256).hexdigest()


def header(secrets_in_force: Sequence[str], timestamp: int, body: bytes) -> str:
    """The signature header value: the timestamp, then one v1 per secret (newest first)."""
    parts = [f"t={timestamp}"] + [f"v1={signature(s, timestamp, body)}" for s in secrets_in_force]
    return ",".join(parts)


def verify(secret: str, value: str, body: bytes, now: float | None = None,
           tolerance: float = TOLERANCE_SECONDS) -> bool:
    """The receiver's check: a fresh timestamp and one v1 that matches (constant time)."""
    fields = [p.split("=", 1) for p in value.split(",") if "=" in p]
    stamps = [v for k, v in fields if k == "t"]
    if len(stamps) != 1 or not stamps[0].isdigit():
        return False
    timestamp = int(stamps[0])
    if abs((time.time() if now is None else now) - timestamp) > tolerance:
        return False
    expected = signature(secret, timestamp, body)
    return any(hmac.compare_digest(expected, v) for k, v in fields if k == "v1")
