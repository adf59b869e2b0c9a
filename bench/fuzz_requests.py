"""Request fuzzing soak: many random requests at the CPI, each answer checked against the contract.

The randomized, long counterpart of ``test_random_requests_never_crash`` in
tests/contract/test_bad_input.py (which runs a fixed, bounded set of examples
on every ``make test``).  Requests come from the same strategies
(tests/contract/request_strategies.py): typed and untyped, with NUL, lone
surrogates, NaN/Infinity, huge integers and malformed addresses.  They go to
``rpc.handle`` in-process against a live simulator (``--bin-cpi``: through
bin/cpi, about 0.3 s each).  Every answer must be one of the ten BOSH errors or
a result, never "Unexpected error", one line, and strict JSON.

The run does not stop at the first failure: failures are grouped by the first
words of their message, and one (shrunk when hypothesis can) example of each is
printed.  Add each new one as an ``@example`` of the property test when fixed.

    .venv/bin/python bench/fuzz_requests.py --examples 2000 --seed 1 [--bin-cpi] [--json]
"""

from __future__ import annotations

import argparse
import json
import re
import sys
import tempfile
import time
from pathlib import Path

from _common import ROOT, machine

sys.path.insert(0, str(ROOT))


def signature(exc: Exception) -> str:
    """Failures of one cause share a signature: the contract check's kind, else the exception's type and place."""
    kind = getattr(exc, "kind", None)
    if kind:
        return kind
    frame = exc.__traceback__
    while frame is not None and frame.tb_next is not None:
        frame = frame.tb_next
    where = f"{Path(frame.tb_frame.f_code.co_filename).name}:{frame.tb_lineno}" if frame else "?"
    return f"{type(exc).__name__} at {where}"


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--examples", type=int, default=2000)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--bin-cpi", action="store_true", help="send each request through bin/cpi (slow)")
    parser.add_argument("--json", action="store_true", help="one JSON document instead of text")
    parser.add_argument("--top", type=int, default=0, help="also list the N commonest error messages (coverage)")
    args = parser.parse_args(argv)

    from hypothesis import HealthCheck, Phase, given, seed, settings

    from cloudstack_simulator import Simulator
    from tests.conftest import run_cpi, write_config
    from tests.contract.request_strategies import answer, check_answer, encode_request, existing_stemcell, requests_st

    failures: dict[str, dict] = {}
    counts = {"examples": 0, "results": 0, "errors": 0}
    by_type: dict[str, int] = {}
    by_gist: dict[str, int] = {}  # how far requests got: the commonest refusals

    with tempfile.TemporaryDirectory() as tmp, Simulator(scenario="advanced") as sim:
        config = write_config(Path(tmp) / "cpi.json", sim.endpoint, sim.api_key, sim.secret_key, api_retries=1,
                              timeout={"global": 5, "create_vm": 5, "create_volume": 5, "attach_volume": 5})
        stemcell = existing_stemcell(sim)

        def one(body) -> None:
            if args.bin_cpi:
                response = run_cpi(encode_request(body, stemcell), config, tmp=tmp).response
            else:
                response = answer(body, str(config), stemcell)
            counts["examples"] += 1
            check_answer(response)
            if response["error"] is None:
                counts["results"] += 1
            else:
                counts["errors"] += 1
                by_type[response["error"]["type"]] = by_type.get(response["error"]["type"], 0) + 1
                gist = _gist(response["error"]["message"])
                by_gist[gist] = by_gist.get(gist, 0) + 1

        # Generate only (no shrinking, no database): the soak records every failure and keeps going.
        @seed(args.seed)
        @settings(max_examples=args.examples, deadline=None, database=None, derandomize=False,
                  phases=[Phase.generate], suppress_health_check=list(HealthCheck), report_multiple_bugs=False)
        @given(requests_st)
        def soak(body):
            try:
                one(body)
            except Exception as exc:  # noqa: BLE001 - recorded, not raised: the soak goes on
                problem = f"{type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}"
                entry = failures.setdefault(signature(exc), {"count": 0, "problem": problem[:300],
                                                             "example": _preview(body)})
                entry["count"] += 1
                if len(_preview(body)) < len(entry["example"]):
                    entry["example"] = _preview(body)  # keep the shortest example of each kind

        started = time.monotonic()
        soak()
        seconds = round(time.monotonic() - started, 1)

    report = {"machine": machine(), "seed": args.seed, "examples": args.examples, "checked": counts["examples"],
              "results": counts["results"], "errors": counts["errors"], "error_types": by_type,
              "seconds": seconds, "via": "bin/cpi" if args.bin_cpi else "rpc.handle",
              "commonest_errors": dict(sorted(by_gist.items(), key=lambda kv: -kv[1])[:args.top]),
              "failures": sum(f["count"] for f in failures.values()), "kinds": list(failures.values())}
    if args.json:
        print(json.dumps(report, indent=2))
    else:
        print(f"fuzz: seed {args.seed}, {args.examples} examples via {report['via']} in {seconds} s: "
              f"{counts['results']} results, {counts['errors']} BOSH errors, {report['failures']} failures")
        if args.top:
            print(f"  commonest errors (of {len(by_gist)} kinds):")
            for gist, count in report["commonest_errors"].items():
                print(f"  {count:5d} x {gist}")
        for kind in failures.values():
            print(f"  {kind['count']:5d} x {kind['problem']}\n          e.g. {kind['example']}")
    return 1 if failures else 0


def _gist(message: str) -> str:
    """A message without its values: quoted text, numbers and argument paths blanked."""
    text = re.sub(r"'[^']*'(?:\u2026 \[\d+ characters\])?", "'…'", message)
    text = re.sub(r"\((?:at character|line) [^()]*\)", "(…)", text)
    return re.sub(r"\d+", "N", text)[:100]


def _preview(body) -> str:
    text = body.decode("utf-8", "backslashreplace") if isinstance(body, bytes) else json.dumps(body)
    return text if len(text) <= 400 else text[:400] + "…"


if __name__ == "__main__":
    sys.exit(main())
