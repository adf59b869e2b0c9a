"""Numeric ids on the wire, as CloudStack answered before it exposed UUIDs (2.x and 3.0.x).

Older servers, and recordings of them (apache-libcloud's CloudStack fixtures),
answer ``"id": 1`` and ``"zoneid": 1``: JSON numbers, not strings.  With this
option the simulator keeps its UUIDs inside and shows each one to clients as a
number, the first one it shows as 1, and takes the number back in parameters.
Only id fields are translated: ``id``, and names ending in ``id`` or ``ids``,
except ``deviceid``/``rootdeviceid``, which are device numbers, not ids.
"""

from __future__ import annotations

import re
import threading
from typing import Any

_UUID = re.compile(r"^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$")
_NOT_IDS = frozenset({"deviceid", "rootdeviceid"})


def is_id_field(name: str) -> bool:
    field = name.rsplit(".", 1)[-1].lower()
    return field not in _NOT_IDS and (field == "id" or field.endswith(("id", "ids")))


class NumericIds:
    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._numbers: dict[str, int] = {}
        self._uuids: dict[int, str] = {}

    def number(self, uuid: str) -> int:
        with self._lock:
            if uuid not in self._numbers:
                number = len(self._numbers) + 1
                self._numbers[uuid] = number
                self._uuids[number] = uuid
            return self._numbers[uuid]

    def params_in(self, params: dict[str, str]) -> dict[str, str]:
        """Client parameters with known numbers of id fields turned back into UUIDs."""
        return {key: self._value_in(value) if is_id_field(key) else value for key, value in params.items()}

    def _value_in(self, value: str) -> str:
        with self._lock:
            tokens = [self._uuids.get(int(token), token) if token.strip().isdigit() else token
                      for token in value.split(",")]
        return ",".join(tokens)

    def body_out(self, value: Any, key: str = "") -> Any:
        """A response body with every UUID in an id field shown as its number."""
        if isinstance(value, dict):
            return {k: self.body_out(v, k) for k, v in value.items()}
        if isinstance(value, list):
            return [self.body_out(item, key) for item in value]
        if isinstance(value, str) and key and is_id_field(key) and _UUID.match(value):
            return self.number(value)
        return value
