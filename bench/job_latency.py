"""Job-completion latency: how late the CPI notices that a CloudStack async job finished.

For simulated jobs of 0.2 s, 2 s and 20 s, the CPI's client starts a job
(createVolume) and waits for it exactly as every action does; the latency is
the time from the job's completion (the simulator's own clock, same process)
to the wait returning.  Target: at most 10% of the job's duration + 100 ms
(earlier CloudStack CPIs poll every 3 to 15 s).  Also reports the polls made.
"""

from __future__ import annotations

import argparse
import json
import sys
import time

from _common import machine

DURATIONS = (0.2, 2.0, 20.0)


def target(duration: float) -> float:
    return 0.1 * duration + 0.1


def measure(durations, repeats: int) -> list[dict]:
    from cloudstack_cpi.cloudstack.client import Client
    from cloudstack_cpi.log import Logger
    from cloudstack_simulator import Simulator

    rows = []
    with Simulator(scenario="advanced") as sim:
        client = Client(sim.endpoint, sim.api_key, sim.secret_key, log=Logger(level="warning"))
        zone = client.list("listZones", name="zone-1")[0]["id"]
        offering = next(o["id"] for o in client.list("listDiskOfferings") if o["name"] == "disk-10")
        jobs = sim._state.jobs.jobs  # the simulator's job table: its `due` is when the job completes
        for duration in durations:
            sim.set_job_seconds(duration)
            for _ in range(repeats if duration < 10 else 1):
                started = client.call("createVolume", zoneid=zone, diskofferingid=offering, name="latency")
                polls_before = client.calls
                client.wait_for_job(started["jobid"], command="createVolume", timeout=duration * 3 + 30,
                                    what="bench volume")
                returned = time.monotonic()
                latency = returned - jobs[started["jobid"]].due
                rows.append({"job_seconds": duration, "latency_ms": round(latency * 1000, 1),
                             "target_ms": round(target(duration) * 1000, 1), "polls": client.calls - polls_before,
                             "ok": latency <= target(duration)})
                sim.set_job_seconds(0)
                client.call("deleteVolume", id=started["id"])
                sim.set_job_seconds(duration)
        client.close()
    return rows


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--quick", action="store_true", help="skip the 20 s job")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    rows = measure(DURATIONS[:2] if args.quick else DURATIONS, args.repeats)
    if args.json:
        print(json.dumps({"rows": rows, "machine": machine()}, indent=2))
    else:
        print(f"{'job':>6} {'latency':>10} {'target':>9} {'polls':>6}")
        for row in rows:
            print(f"{row['job_seconds']:>5.1f}s {row['latency_ms']:>8.1f}ms {row['target_ms']:>7.1f}ms "
                  f"{row['polls']:>6}{'' if row['ok'] else '  MISSED'}")
        print(f"machine: {machine()}")
    return 0 if all(row["ok"] for row in rows) else 1


if __name__ == "__main__":
    sys.exit(main())
