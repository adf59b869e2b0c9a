"""The BOSH lifecycle through bin/cpi under every kind of injected fault, driven like a director (short form).

bench/fault_soak.py runs the same harness for many iterations and prints the figures.
"""

from __future__ import annotations

import pytest

from cloudstack_simulator import FaultConfig, Simulator

from .harness import DEFAULT_FAULTS, LEAK_KINDS, leaks_of, run_lifecycles, write_config


def soak(tmp_path, iterations: int, workers: int, seed: int):
    with Simulator(scenario="advanced", seed=seed, faults=FaultConfig(**DEFAULT_FAULTS)) as sim:
        config = write_config(tmp_path / "cpi.json", sim.endpoint, sim.api_key, sim.secret_key)
        figures, lifecycles = run_lifecycles(sim, config, tmp_path, iterations, workers=workers)
        sim.set_faults(FaultConfig())
        faults = sim.fault_counts
        leaks = leaks_of(sim, lifecycles)
        mismatches = [m for lc in lifecycles for m in lc.mismatches]
    return figures, faults, leaks, mismatches


def check(figures, faults, leaks, mismatches, iterations):
    print(f"\nfigures: { {k: v for k, v in figures.items() if k != 'problems'} }\nfaults injected: {faults}")
    assert sum(faults.values()) > 0, "no fault was injected: the run proves nothing"
    assert figures["problems"] == [], "\n".join(figures["problems"])
    assert figures["gave_up"] == 0, figures
    assert figures["iterations"] == iterations
    assert mismatches == [], mismatches           # every success answer is true in the cloud
    assert leaks == {kind: [] for kind in LEAK_KINDS}


def test_lifecycle_under_faults_leaks_nothing(tmp_path):
    """One worker and per-command fault streams (cloudstack_simulator.faults): the same faults hit the same
    calls on every run, so this passes or fails the same way on every clone. bench/fault_soak.py runs the
    randomized, concurrent version."""
    # Seed 11 puts every kind of fault into one lifecycle (6 of 14 calls fail, create_vm and snapshot_disk among
    # them); the many-iteration, two-director soak is bench/fault_soak.py and the slow test below.
    figures, faults, leaks, mismatches = soak(tmp_path, iterations=1, workers=1, seed=11)
    check(figures, faults, leaks, mismatches, 1)
    assert all(faults[kind] > 0 for kind in ("error", "drop", "throttle", "drop_after_action", "job_failure"))
    assert figures["failed_calls"] > 0 and figures["director_retries"] > 0


@pytest.mark.slow
def test_longer_soak_under_faults(tmp_path):
    figures, faults, leaks, mismatches = soak(tmp_path, iterations=12, workers=2, seed=11)
    check(figures, faults, leaks, mismatches, 12)
    assert figures["failed_calls"] > 0 and figures["director_retries"] > 0
