"""``python -m cloudstack_simulator``: run the simulator until SIGINT/SIGTERM.

Prints exactly one JSON line on stdout once listening:
``{"endpoint": "...", "api_key": "...", "secret_key": "..."}``; request logs go to stderr."""
from __future__ import annotations

import argparse
import json
import logging
import signal
import sys
import threading

from .faults import FaultConfig
from .simulator import Simulator


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="cloudstack-simulator", description="Apache CloudStack API simulator")
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, default=0)
    p.add_argument("--scenario", default="advanced", help="advanced | basic | path to a scenario JSON file")
    p.add_argument("--job-seconds", type=float, default=0.0)
    p.add_argument("--seed", type=int, default=None)
    p.add_argument("--error-rate", type=float, default=0.0)
    p.add_argument("--drop-rate", type=float, default=0.0)
    p.add_argument("--throttle-rate", type=float, default=0.0)
    p.add_argument("--slow-rate", type=float, default=0.0)
    p.add_argument("--slow-seconds", type=float, default=1.0)
    p.add_argument("--job-failure-rate", type=float, default=0.0)
    p.add_argument("--drop-after-action-rate", type=float, default=0.0)
    p.add_argument("--device-dir", default=None)
    p.add_argument("--tls-cert", default=None)
    p.add_argument("--tls-key", default=None)
    p.add_argument("--quiet", action="store_true", help="no per-request log lines on stderr")
    return p


def main(argv=None) -> int:
    args = build_parser().parse_args(argv)
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
                        tls_key=args.tls_key)
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
