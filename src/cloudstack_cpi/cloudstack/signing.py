"""Request signing, byte for byte as ``ApiServer.verifyRequest`` checks it.

The server sorts the parameter names exactly as received (case-sensitive),
encodes each *value* with Java's ``URLEncoder`` (space as ``%20``, ``*`` kept,
``~`` encoded), leaves names raw (``tags[0].key`` keeps its brackets), lowercases
the whole string, and compares the base64 HMAC-SHA1 exactly.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
from collections.abc import Mapping
from urllib.parse import quote


def java_urlencode(value: str) -> str:
    """``URLEncoder.encode(value, "UTF-8").replace("+", "%20")``.

    Python's ``quote`` keeps ``~`` while Java encodes it, and Java keeps ``*``.
    """
    return quote(value, safe="*").replace("~", "%7E")


def string_to_sign(params: Mapping[str, str]) -> str:
    pairs = (
        f"{name}={java_urlencode(str(params[name]))}"
        for name in sorted(params)
        if name.lower() != "signature"
    )
    return "&".join(pairs).lower()


def sign(params: Mapping[str, str], secret: str) -> str:
    digest = hmac.new(secret.encode(), string_to_sign(params).encode(), hashlib.sha1).digest()
    return base64.b64encode(digest).decode("ascii")
