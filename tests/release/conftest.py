"""Fixtures for the BOSH release: render job templates with Ruby's ERB as BOSH does."""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
RELEASE = ROOT / "release"
JOB = RELEASE / "jobs" / "cloudstack_cpi"
RENDERER = Path(__file__).with_name("render.rb")

RUBY = shutil.which("ruby")
needs_ruby = pytest.mark.skipif(
    RUBY is None, reason="ruby is not installed (apt-get install -y ruby): job templates are ERB and need it to render"
)


class RenderError(Exception):
    pass


def render_job(properties: dict, out_dir: Path) -> Path:
    """Render the cloudstack_cpi job into out_dir (bin/cpi, config/cpi.json) like the director does."""
    out_dir.mkdir(parents=True, exist_ok=True)
    props_path = out_dir.parent / f"{out_dir.name}.properties.json"
    props_path.write_text(json.dumps(properties))
    completed = subprocess.run(
        [RUBY, str(RENDERER), str(JOB), str(props_path), str(out_dir)], capture_output=True, text=True, timeout=60
    )
    if completed.returncode != 0:
        raise RenderError(completed.stderr)
    return out_dir


@pytest.fixture
def render(tmp_path):
    if RUBY is None:
        pytest.skip(needs_ruby.kwargs["reason"])
    counter = iter(range(1000))

    def _render(properties: dict) -> Path:
        return render_job(properties, tmp_path / f"job-{next(counter)}")

    return _render


def load_yaml(path: Path):
    """Parse YAML with PyYAML when importable, else with Ruby's YAML; skip when neither exists."""
    try:
        import yaml
    except ImportError:
        yaml = None
    if yaml is not None:
        with open(path, encoding="utf-8") as handle:
            return yaml.safe_load(handle)
    if RUBY is None:
        pytest.skip("neither PyYAML nor ruby is available to parse YAML")
    completed = subprocess.run(
        [RUBY, "-ryaml", "-rjson", "-e", "puts JSON.generate(YAML.safe_load(File.read(ARGV[0]), aliases: true))", str(path)],
        capture_output=True, text=True, timeout=60, check=True,
    )
    return json.loads(completed.stdout)
