"""Quantities as users type them: counts ("400M", "1.2G"), accuracies ("95%", "0.95") and
latencies ("20ms", "0.02s"); parsed to plain floats with one-line errors, and formatted back
for labels."""

from __future__ import annotations

import math
import re

_UNITS = {"": 1.0, "k": 1e3, "m": 1e6, "g": 1e9, "t": 1e12}
_COUNT_RE = re.compile(r"^\s*([0-9]*\.?[0-9]+(?:e[+-]?\d+)?)\s*([kmgt]?)\s*$", re.IGNORECASE)


def parse_count(text: str | float, what: str = "value") -> float:
    """'400M' -> 4e8, '1.2G' -> 1.2e9, '250k', '4e8', '1000'; ValueError otherwise."""
    if isinstance(text, (int, float)) and not isinstance(text, bool):
        value = float(text)
    else:
        m = _COUNT_RE.match(str(text))
        if not m:
            raise ValueError(f"{what}: {text!r} is not a count; use a plain number or a "
                             "unit like 250k, 400M, 1.2G")
        value = float(m.group(1)) * _UNITS[m.group(2).lower()]
    if not math.isfinite(value) or value <= 0:
        raise ValueError(f"{what}: {text!r} must be a positive number")
    return value


def parse_accuracy(text: str | float, what: str = "--min-acc") -> float:
    """'95%' or '0.95' -> 0.95 (top-1 as a fraction); a bare number above 1 is ambiguous."""
    s = str(text).strip()
    try:
        value = float(s[:-1]) / 100 if s.endswith("%") else float(s)
    except ValueError:
        raise ValueError(f"{what}: {text!r} is not an accuracy; use a fraction like 0.95 "
                         "or a percentage like 95%") from None
    if not 0 < value <= 1:
        raise ValueError(f"{what}: {text!r} is outside (0, 1]; use a fraction like 0.95 "
                         "or a percentage like 95%")
    return value


def parse_latency(text: str | float, what: str = "--max-latency") -> float:
    """'5ms', '0.005s' or a plain number of milliseconds -> milliseconds."""
    s = str(text).strip().lower()
    scale = 1.0
    if s.endswith("ms"):
        s = s[:-2]
    elif s.endswith("s"):
        s, scale = s[:-1], 1000.0
    try:
        value = float(s) * scale
    except ValueError:
        raise ValueError(f"{what}: {text!r} is not a latency; use e.g. 5ms, 0.005s "
                         "or a plain number of milliseconds") from None
    if not math.isfinite(value) or value <= 0:
        raise ValueError(f"{what}: {text!r} must be a positive latency")
    return value


def format_count(value: float) -> str:
    """4e8 -> '400M', 1.2e9 -> '1.2G': the inverse of `parse_count` for labels."""
    for unit, scale in (("G", 1e9), ("M", 1e6), ("k", 1e3)):
        if value >= scale:
            return f"{value / scale:.4g}{unit}"
    return f"{value:.4g}"
