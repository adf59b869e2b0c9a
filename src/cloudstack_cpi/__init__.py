"""BOSH external CPI for Apache CloudStack."""

from __future__ import annotations


def version() -> str:
    """The package's version: from its metadata, else (a source checkout never installed) from pyproject.toml.

    Imports happen here, not at module level: bin/cpi imports this package on every BOSH call.
    """
    from importlib import metadata

    try:
        return metadata.version("cloudstack-cpi")
    except metadata.PackageNotFoundError:
        return _checkout_version()


def _checkout_version() -> str:
    import tomllib
    from pathlib import Path

    try:
        with open(Path(__file__).resolve().parents[2] / "pyproject.toml", "rb") as handle:
            return str(tomllib.load(handle)["project"]["version"])
    except (OSError, KeyError, tomllib.TOMLDecodeError):
        return "unknown"
