"""Loads ``api_spec.json``: the subset of a real CloudStack 4.11 ``listApis`` output for the commands the
simulator implements (name, isasync, params with name/required/type). Source:
/work/shared/reference/cloudstack-4.11-listApis.json (xanzy/go-cloudstack generate/listApis.json @06356a3).
The server uses it to reject requests with missing required parameters (431) exactly like
ParamProcessWorker, and to validate integer and uuid typed parameters."""
from __future__ import annotations

import json
from functools import lru_cache
from pathlib import Path


@lru_cache(maxsize=1)
def load_spec() -> dict[str, dict]:
    with open(Path(__file__).parent / "api_spec.json", encoding="utf-8") as f:
        data = json.load(f)
    return {a["name"].lower(): a for a in data["api"]}
