"""Fixtures for the simulator tests (helpers live in helpers.py)."""
from __future__ import annotations

import pytest

from cloudstack_simulator import Simulator

from .helpers import Api


@pytest.fixture
def sim():
    with Simulator(scenario="advanced", seed=1) as s:
        yield s


@pytest.fixture
def api(sim):
    return Api(sim)


@pytest.fixture
def basic_sim():
    with Simulator(scenario="basic", seed=1) as s:
        yield s


@pytest.fixture
def basic_api(basic_sim):
    return Api(basic_sim)
