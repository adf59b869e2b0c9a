"""Reliability tests: the ``slow`` marker runs only with CPI_SLOW=1 (longer soaks belong in bench/)."""

from __future__ import annotations

import os

import pytest


def pytest_collection_modifyitems(config, items):
    if os.environ.get("CPI_SLOW") == "1":
        return
    skip = pytest.mark.skip(reason="slow: set CPI_SLOW=1 to run")
    for item in items:
        if "slow" in item.keywords and item.path.is_relative_to(os.path.dirname(__file__)):
            item.add_marker(skip)
