"""No CPI call may make more CloudStack requests than the committed baseline, nor the same request twice."""

import json
import sys
from pathlib import Path

BENCH = Path(__file__).resolve().parents[2] / "bench"


def test_api_calls_per_operation_do_not_grow():
    sys.path.insert(0, str(BENCH))
    try:
        import api_calls
    finally:
        sys.path.remove(str(BENCH))
    rows = api_calls.measure()
    baseline = json.loads(api_calls.BASELINE.read_text())
    assert set(rows) == set(baseline), "scenario and baseline name different steps: run bench/api_calls.py --update"
    assert api_calls.regressions(rows, baseline) == []
