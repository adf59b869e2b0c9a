"""The simulator never imports cloudstack_cpi; the CLI prints one JSON line and exits 0 on SIGTERM."""
import ast
import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import cloudstack_simulator

from .helpers import Api

PKG = Path(cloudstack_simulator.__file__).parent


def test_never_imports_cloudstack_cpi():
    files = list(PKG.rglob("*.py"))
    assert len(files) > 10
    for f in files:
        tree = ast.parse(f.read_text(), filename=str(f))
        for node in ast.walk(tree):
            names = []
            if isinstance(node, ast.Import):
                names = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom) and node.level == 0:
                names = [node.module or ""]
            elif isinstance(node, ast.Call) and getattr(node.func, "id", getattr(node.func, "attr", "")) in (
                    "import_module", "__import__"):
                names = [a.value for a in node.args if isinstance(a, ast.Constant) and isinstance(a.value, str)]
            for n in names:
                assert not n.startswith("cloudstack_cpi"), f"{f} imports {n}"


def test_running_simulator_does_not_load_cloudstack_cpi():
    code = ("import sys, cloudstack_simulator.cli, cloudstack_simulator.__main__ as _m" if False else
            "import sys\nfrom cloudstack_simulator import Simulator\nimport cloudstack_simulator.cli\n"
            "with Simulator() as s: pass\n"
            "print(sorted(m for m in sys.modules if m.startswith('cloudstack_cpi')))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"


def test_stdlib_only_at_runtime():
    allowed = set(sys.stdlib_module_names) | {"cloudstack_simulator"}
    for f in PKG.rglob("*.py"):
        for node in ast.walk(ast.parse(f.read_text())):
            if isinstance(node, ast.Import):
                mods = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom) and node.level == 0:
                mods = [node.module]
            else:
                continue
            for m in mods:
                assert m.split(".")[0] in allowed, f"{f}: {m}"


def test_cli_prints_one_json_line_and_exits_on_sigterm():
    env = dict(os.environ, PYTHONUNBUFFERED="1")
    p = subprocess.Popen([sys.executable, "-m", "cloudstack_simulator", "--scenario", "basic", "--seed", "3"],
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env)
    try:
        line = p.stdout.readline()
        info = json.loads(line)
        assert set(info) == {"endpoint", "api_key", "secret_key"}
        assert info["endpoint"].startswith("http://127.0.0.1:") and info["endpoint"].endswith("/client/api")

        class S:  # duck-typed for Api
            endpoint, api_key, secret_key = info["endpoint"], info["api_key"], info["secret_key"]
        api = Api(S)
        assert api.list("listZones", "zone")[0]["name"] == "basic-zone"
        p.send_signal(signal.SIGTERM)
        assert p.wait(timeout=10) == 0
        rest = p.stdout.read()
        assert rest == b""
        err = p.stderr.read().decode()
        assert "listZones" in err and info["secret_key"] not in err
    finally:
        if p.poll() is None:
            p.kill()
            p.wait()


def test_cli_main_in_process_rejects_half_tls():
    from cloudstack_simulator.cli import main
    assert main(["--tls-cert", "x.pem"]) == 2
