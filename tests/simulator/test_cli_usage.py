"""The simulator's command line as an operator meets it: through the real console script and ``python -m``."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

CONSOLE = Path(sys.executable).parent / "cloudstack-cpi"


def run(*args: str, module: bool = False) -> subprocess.CompletedProcess:
    command = [sys.executable, "-m", "cloudstack_simulator"] if module else [str(CONSOLE), "simulator"]
    return subprocess.run([*command, *args], capture_output=True, text=True, timeout=60)


def test_usage_names_the_program_that_was_run():
    assert run("--help").stdout.startswith("usage: cloudstack-cpi simulator ")
    assert run("--help", module=True).stdout.startswith("usage: python -m cloudstack_simulator ")


def test_every_option_has_help_text():
    from cloudstack_simulator.cli import build_parser

    missing = [action.dest for action in build_parser()._actions if not action.help]
    assert missing == []


def test_an_unknown_scenario_lists_the_scenarios():
    completed = run("--scenario", "advnced")
    assert completed.returncode == 2
    assert "unknown scenario 'advnced'" in completed.stderr
    for name in ("advanced", "basic", "advanced-user", "basic-user"):
        assert name in completed.stderr
    assert "Traceback" not in completed.stderr


@pytest.mark.parametrize("option, value", [
    ("--job-seconds", "-1"), ("--job-seconds", "nan"), ("--slow-seconds", "-0.5"), ("--error-rate", "1.5"),
    ("--drop-rate", "-0.1"), ("--port", "-3"),
])
def test_out_of_range_numbers_are_refused(option, value):
    completed = run(option, value)
    assert completed.returncode == 2 and option in completed.stderr and "Traceback" not in completed.stderr
