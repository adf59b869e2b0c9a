"""``python -m cloudstack_simulator``: run the simulator until SIGINT/SIGTERM.

Prints exactly one JSON line on stdout once listening:
``{"endpoint": "...", "api_key": "...", "secret_key": "..."}``; request logs go to stderr."""
from __future__ import annotations

import argparse
import json
import logging
import os
import signal
import sys
import threading

from .faults import FaultConfig
from .simulator import Simulator
from .state import BUILT_IN, VARIANTS
from .timing import PROFILES


def scenario_names() -> list[str]:
    """The built-in scenarios and their variants, as --scenario takes them."""
    return [*BUILT_IN, *(f"{base}-{variant}" for base in BUILT_IN for variant in VARIANTS)]


def _scenario(value: str) -> str:
    if value in scenario_names() or os.path.isfile(value):
        return value
    raise argparse.ArgumentTypeError(
        f"unknown scenario {value!r}: use one of {', '.join(scenario_names())}, or the path of a scenario JSON "
        "file (docs/simulator.md describes the format)")


def _at_least(minimum: float, kind=float):
    def parse(value: str):
        try:
            number = kind(value)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{value!r} is not a number") from None
        if not number >= minimum:  # also refuses NaN
            raise argparse.ArgumentTypeError(f"{value!r} must be at least {minimum:g}")
        return number
    return parse


def _rate(value: str) -> float:
    rate = _at_least(0.0)(value)
    if rate > 1.0:
        raise argparse.ArgumentTypeError(f"{value!r} is a rate: between 0 and 1")
    return rate


def build_parser(prog: str = "python -m cloudstack_simulator") -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog=prog,
        description="Apache CloudStack API simulator. Prints one JSON line with the endpoint and credentials once "
                    "listening, then serves until SIGINT or SIGTERM.")
    p.add_argument("--host", default="127.0.0.1", help="address to listen on (default: %(default)s)")
    p.add_argument("--port", type=_at_least(0, int), default=0, help="port to listen on; 0 picks a free one")
    p.add_argument("--scenario", type=_scenario, default="advanced",
                   help=f"{' | '.join(scenario_names())} | path to a scenario JSON file (default: %(default)s)")
    p.add_argument("--timing", choices=sorted(PROFILES), default="instant",
                   help="how long async jobs and template processing take: 'instant' (at once) or 'realistic' "
                        "(per-command durations of a KVM cloud, docs/simulator.md) (default: %(default)s)")
    p.add_argument("--timing-scale", type=_at_least(0.0), default=1.0,
                   help="multiply every --timing duration, e.g. 0.01 to run realistic ratios 100 times faster "
                        "(default: %(default)s)")
    p.add_argument("--job-seconds", type=_at_least(0.0), default=None,
                   help="how long every async job runs, in seconds, whatever the command (replaces --timing)")
    p.add_argument("--seed", type=int, default=None, help="seed of the fault injection, for reproducible faults")
    p.add_argument("--error-rate", type=_rate, default=0.0,
                   help="share of API requests answered HTTP 500/503 before acting (0-1)")
    p.add_argument("--drop-rate", type=_rate, default=0.0,
                   help="share of API requests whose connection is closed before acting (0-1)")
    p.add_argument("--throttle-rate", type=_rate, default=0.0,
                   help="share of API requests answered 429 (API limit) before acting (0-1)")
    p.add_argument("--slow-rate", type=_rate, default=0.0, help="share of API requests delayed by --slow-seconds")
    p.add_argument("--slow-seconds", type=_at_least(0.0), default=1.0, help="delay of a slow request (default: 1)")
    p.add_argument("--job-failure-rate", type=_rate, default=0.0,
                   help="share of async jobs that fail (jobstatus 2, errorcode 530) (0-1)")
    p.add_argument("--drop-after-action-rate", type=_rate, default=0.0,
                   help="share of API requests that act, then close the connection without answering (0-1)")
    p.add_argument("--device-dir", default=None,
                   help="folder where volumes' bytes are kept as files (for tests that read disks)")
    p.add_argument("--numeric-ids", action="store_true",
                   help="show ids as JSON numbers, as CloudStack before 4.0 did")
    p.add_argument("--tls-cert", default=None, help="PEM certificate: serve HTTPS (with --tls-key)")
    p.add_argument("--tls-key", default=None, help="PEM private key of --tls-cert")
    p.add_argument("--quiet", action="store_true", help="no per-request log lines on stderr")
    return p


def main(argv=None, prog: str = "python -m cloudstack_simulator") -> int:
    args = build_parser(prog).parse_args(argv)
    if bool(args.tls_cert) != bool(args.tls_key):
        print("--tls-cert and --tls-key must be given together", file=sys.stderr)
        return 2
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(message)s"))
    logger = logging.getLogger("cloudstack_simulator")
    logger.addHandler(handler)
    logger.setLevel(logging.WARNING if args.quiet else logging.INFO)
    logger.propagate = False
    try:
        faults = FaultConfig(error_rate=args.error_rate, drop_rate=args.drop_rate, throttle_rate=args.throttle_rate,
                             slow_rate=args.slow_rate, slow_seconds=args.slow_seconds,
                             job_failure_rate=args.job_failure_rate,
                             drop_after_action_rate=args.drop_after_action_rate)
        sim = Simulator(scenario=args.scenario, host=args.host, port=args.port, job_seconds=args.job_seconds,
                        seed=args.seed, faults=faults, device_dir=args.device_dir, tls_cert=args.tls_cert,
                        tls_key=args.tls_key, numeric_ids=args.numeric_ids, timing=args.timing,
                        timing_scale=args.timing_scale)
        sim.start()
    except (OSError, ValueError) as e:
        print(f"cloudstack-simulator: {e}", file=sys.stderr)
        return 1
    done = threading.Event()

    def _stop(signum, frame):
        done.set()

    old = {s: signal.signal(s, _stop) for s in (signal.SIGINT, signal.SIGTERM)}
    try:
        sys.stdout.write(json.dumps({"endpoint": sim.endpoint, "api_key": sim.api_key,
                                     "secret_key": sim.secret_key}) + "\n")
        sys.stdout.flush()
        logger.info("CloudStack simulator (scenario %s) listening on %s", sim.scenario_name, sim.endpoint)
        while not done.wait(0.5):
            pass
    finally:
        sim.stop()
        for s, h in old.items():
            signal.signal(s, h)
        logger.removeHandler(handler)
    return 0


if __name__ == "__main__":
    sys.exit(main())
