"""Server-side request signature verification, re-implemented from Apache CloudStack's
``ApiServer.verifyRequest()`` (see docs/simulator.md and cloudstack-api.md §1.1).

Independent of any client code on purpose: the simulator must catch client signing bugs.
"""
from __future__ import annotations

import base64
import hashlib
import hmac
import re
from datetime import UTC, datetime, timedelta, timezone

# java.net.URLEncoder keeps A-Z a-z 0-9 . - * _ ; space -> '+' (the server then turns '+' into '%20');
# everything else is %XX of the UTF-8 bytes (uppercase hex).
_JAVA_SAFE = frozenset(b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789.-*_")


def java_urlencode(value: str) -> str:
    """``URLEncoder.encode(value, "UTF-8").replaceAll("\\+", "%20")``."""
    out = []
    for b in value.encode("utf-8"):
        if b in _JAVA_SAFE:
            out.append(chr(b))
        else:
            out.append(f"%{b:02X}")
    return "".join(out)


def java_sort_key(name: str):
    """Java ``String.compareTo`` orders by UTF-16 code units."""
    return name.encode("utf-16-be")


def string_to_sign(params: dict[str, str]) -> str:
    """Sorted raw names (case-sensitive), ``name=encoded(value)`` joined by '&', lower-cased.
    ``signature`` (any case) is excluded."""
    names = sorted((n for n in params if n.lower() != "signature"), key=java_sort_key)
    return "&".join(n + "=" + java_urlencode(params[n]) for n in names).lower()


def compute_signature(params: dict[str, str], secret: str) -> str:
    mac = hmac.new(secret.encode("utf-8"), string_to_sign(params).encode("utf-8"), hashlib.sha1)
    return base64.b64encode(mac.digest()).decode("ascii")


_TZ_RE = re.compile(r"^(\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2})(\.\d{1,9})?(Z|[+-]\d{2}:?\d{2})?(Z|[+-]\d{2}:?\d{2})?$")


def parse_expires(text: str) -> datetime | None:
    """Accept the formats of ACS ``DateUtil.parseTZDateString``: ``2025-01-01T12:00:00+0000``,
    ``...Z``, ``...+00:00``, fractional seconds variants and the legacy ``...'Z'+0000``.
    Returns an aware datetime or None when unparseable."""
    m = _TZ_RE.match(text.strip())
    if not m:
        return None
    base, frac, tz1, tz2 = m.groups()
    if tz1 is None:
        return None  # a zone is mandatory
    tz = tz2 if (tz1 == "Z" and tz2) else tz1
    if tz2 and tz1 != "Z":
        return None
    try:
        dt = datetime.strptime(base, "%Y-%m-%dT%H:%M:%S")
    except ValueError:
        return None
    if frac:
        dt = dt.replace(microsecond=int((frac[1:] + "000000")[:6]))
    if tz == "Z":
        off = timedelta(0)
    else:
        sign = 1 if tz[0] == "+" else -1
        digits = tz[1:].replace(":", "")
        off = sign * timedelta(hours=int(digits[:2]), minutes=int(digits[2:]))
    return dt.replace(tzinfo=timezone(off))


def verify(params: dict[str, str], secrets_by_key: dict[str, str], now: datetime | None = None) -> tuple[bool, str]:
    """Return (ok, reason). ``params`` = final request parameter map (raw names)."""
    signature = api_key = version = expires = None
    for name, value in params.items():
        low = name.lower()
        if low == "signature":
            signature = value
        elif low == "apikey":
            api_key = value
        elif low == "signatureversion":
            version = value
        elif low == "expires":
            expires = value
    if signature is None or api_key is None:
        return False, "missing signature, or missing apiKey"
    if version == "3":
        if not expires:
            return False, "missing expires parameter"
        ts = parse_expires(expires)
        if ts is None:
            return False, "incorrect date format for expires parameter"
        if ts < (now or datetime.now(UTC)):
            return False, "request expired"
    secret = secrets_by_key.get(api_key)
    if secret is None:
        return False, "unable to find user with given api key"
    expected = compute_signature(params, secret)
    if not hmac.compare_digest(signature.encode("utf-8", "replace"), expected.encode("ascii")):
        return False, "signature mismatch"
    return True, ""
