"""Parse human durations ("90s", "5m", "1h30m", 2.5, timedelta) into seconds."""

from __future__ import annotations

import re
from datetime import timedelta

from crisper.errors import ConfigurationError, InvalidRequest

_UNITS = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0}
_PART = re.compile(r"(\d+(?:\.\d+)?)(ms|s|m|h|d)")

Duration = float | int | str | timedelta


def seconds(value: Duration) -> float:
    """Seconds in `value`; a bare number is already seconds. InvalidRequest says what is wrong."""
    if isinstance(value, timedelta):
        return value.total_seconds()
    if isinstance(value, int | float):
        if value < 0:
            raise InvalidRequest("duration", f"cannot be negative: {value}")
        return float(value)
    text = value.strip().lower().replace(" ", "")
    if re.fullmatch(r"\d+(\.\d+)?", text):
        return float(text)
    parts = _PART.findall(text)
    if not parts or "".join(n + u for n, u in parts) != text:
        raise InvalidRequest("duration", f"not a duration: {value!r} (try '30s', '5m', '1h30m')")
    return sum(float(n) * _UNITS[u] for n, u in parts)


def option_seconds(label: str, value: Duration | None, *, zero_ok: bool = False
                   ) -> float | None:
    """A job type's duration option in seconds (None stays None): ConfigurationError naming
    `label` when it is not a duration, or not more than 0 unless `zero_ok`."""
    if value is None:
        return None
    try:
        found = seconds(value)
    except InvalidRequest as exc:
        raise ConfigurationError(f"{label}: {exc}") from None
    if found <= 0 and not zero_ok:
        raise ConfigurationError(f"{label} must be more than 0 seconds")
    return found
