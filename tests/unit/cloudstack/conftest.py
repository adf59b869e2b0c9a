"""The real gateway against the simulator over HTTP on 127.0.0.1: one simulator per test module, a new gateway
(client, log) per test.  Tests arrange with the client directly where the gateway has no method for it."""

from __future__ import annotations

import io

import pytest

from cloudstack_cpi import config
from cloudstack_cpi.cloudstack.client import Client, PollPolicy
from cloudstack_cpi.cloudstack.gateway import Gateway
from cloudstack_cpi.log import Logger


@pytest.fixture(scope="module")
def sim():
    simulator = pytest.importorskip("cloudstack_simulator")
    with simulator.Simulator(scenario="advanced") as running:
        yield running


class Arranged:
    """Ids of the scenario's catalogue, and a way to make a VM to attach to."""

    def __init__(self, sim, client: Client) -> None:
        self.client = client
        with sim.state.lock:
            self.zone = next(z["id"] for z in sim.state.zones.values() if z["name"] == "zone-1")
            self.custom_offering = next(o["id"] for o in sim.state.disk_offerings.values()
                                        if o["name"] == "shared.custom")
            self.template = next(t["id"] for t in sim.state.templates.values()
                                 if t["name"] == "bosh-stemcell-existing")
            self.service_offering = next(o["id"] for o in sim.state.service_offerings.values() if o["name"] == "small")
            self.network = next(n["id"] for n in sim.state.networks.values()
                                if n["name"] == "bosh-isolated" and n["zoneid"] == self.zone)

    def vm(self) -> str:
        result = self.client.run_job("deployVirtualMachine", timeout=30, what="deploying a test VM", zoneid=self.zone,
                                     templateid=self.template, serviceofferingid=self.service_offering,
                                     networkids=self.network)
        return result["virtualmachine"]["id"]


@pytest.fixture
def log_stream() -> io.StringIO:
    return io.StringIO()


@pytest.fixture
def gateway(sim, log_stream) -> Gateway:
    cfg = config.parse({"cloudstack": {"endpoint": sim.endpoint, "api_key": sim.api_key,
                                       "secret_access_key": sim.secret_key}})
    client = Client(sim.endpoint, sim.api_key, sim.secret_key, log=Logger(stream=log_stream),
                    poll=PollPolicy(first=0.005), sleep=lambda seconds: None)
    yield Gateway(client, cfg.cloudstack.timeout)
    client.close()


@pytest.fixture
def arranged(sim, gateway) -> Arranged:
    return Arranged(sim, gateway.client)
