"""The `cloudstack-cpi` console script itself: --version, `call` showing the CPI's log live, the README's examples."""

from __future__ import annotations

import json
import re
import subprocess
import sys
import tomllib
from importlib import metadata
from pathlib import Path

from cloudstack_cpi import version
from cloudstack_cpi.operator.demo import DEMO_STEMCELL_PROPERTIES, simulator_config, write_demo_image
from cloudstack_simulator import Simulator

ROOT = Path(__file__).resolve().parents[2]
CLI = Path(sys.executable).with_name("cloudstack-cpi")  # the console script of this venv


def _cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([str(CLI), *args], capture_output=True, text=True, timeout=60)


def test_version_prints_the_package_version():
    completed = _cli("--version")
    assert completed.returncode == 0, completed.stderr
    assert completed.stdout == f"cloudstack-cpi {metadata.version('cloudstack-cpi')}\n"


def test_version_of_a_checkout_without_package_metadata_comes_from_pyproject(monkeypatch):
    def not_installed(name: str) -> str:
        raise metadata.PackageNotFoundError(name)

    monkeypatch.setattr(metadata, "version", not_installed)
    with open(ROOT / "pyproject.toml", "rb") as handle:
        assert version() == tomllib.load(handle)["project"]["version"]


def test_call_shows_the_cpi_log_while_the_call_runs(tmp_path):
    with Simulator(scenario="advanced", job_seconds=2.0) as sim:  # the template takes ~2 s to be ready
        config = simulator_config(sim, tmp_path)
        image = write_demo_image(tmp_path / "image")
        process = subprocess.Popen(
            [str(CLI), "call", "--config", str(config), "create_stemcell", str(image),
             json.dumps(DEMO_STEMCELL_PROPERTIES)], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        try:
            assert process.stderr.readline().startswith("… create_stemcell")  # the step in progress
            running_when_logged = None
            for line in process.stderr:
                if "INFO create_stemcell: " in line:
                    running_when_logged = process.poll() is None
                    break
            rest_of_log = process.stderr.read()
            stdout = process.stdout.read()
            assert process.wait(timeout=60) == 0, rest_of_log
        finally:
            if process.poll() is None:
                process.kill()
        assert running_when_logged is True, "the CPI's log came only after the call ended"
        assert "is ready" in rest_of_log  # the rest of the log followed
        assert json.loads(stdout) in sim.inventory()["templates"]


def _readme_commands() -> list[str]:
    """Every `cloudstack-cpi ...` command line of the README, from code blocks and inline code."""
    text = (ROOT / "README.md").read_text()
    blocks = re.findall(r"```(?:sh|bash|console)?\n(.*?)```", text, flags=re.S)
    lines = [line for block in blocks for line in block.splitlines()]
    lines += re.findall(r"`(cloudstack-cpi [^`]+)`", text)
    return [line.split("#")[0].strip() for line in lines if line.strip().startswith("cloudstack-cpi ")]


def test_the_readme_examples_use_options_that_exist():
    commands = _readme_commands()
    assert any(command.startswith("cloudstack-cpi call --config ") for command in commands), commands
    for command in commands:
        words = command.split()[1:]
        subcommand = [words[0]] if not words[0].startswith("-") else []
        helped = _cli(*subcommand, "--help")
        assert helped.returncode == 0, f"{command}: {helped.stderr}"
        offered = set(re.findall(r"(?<![\w-])(--[a-z][a-z-]*)", helped.stdout))
        used = {word.split("=")[0] for word in words if word.startswith("--")}
        assert used <= offered, f"{command}: no such option {sorted(used - offered)}"
