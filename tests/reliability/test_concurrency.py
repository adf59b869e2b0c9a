"""32 bin/cpi processes at once, as a director with many workers: VMs on manual (distinct IPs) and dynamic
networks of the same network plus disks in one zone; then all deleted at once (32 concurrent in-process calls
through ``rpc.handle``, to keep ``make test`` short: bench/parallel.py runs the deletes as processes too).
No errors, no IP handed out twice, nothing left."""

from __future__ import annotations

import collections
import io
from concurrent.futures import ThreadPoolExecutor

from cloudstack_cpi import rpc
from cloudstack_cpi.log import Logger
from cloudstack_simulator import Simulator
from tests.conftest import existing_stemcell

from .harness import finish, request, spawn, write_config

PROCESSES = 32
VMS = 20              # 10 manual, 10 dynamic; the other 12 processes create disks


def warm_lazy_modules() -> None:
    from cloudstack_cpi.actions import disks, vms

    for module in (vms.agent_settings, vms.loadbalancers, vms.models, vms.nets, vms.uuid, disks):
        _ = module.__name__  # reading any attribute loads a lazy module


def run_all(config, tmp, calls):
    processes = [spawn(config, tmp, method, *arguments) for method, *arguments in calls]
    return [finish(process) for process in processes]


def test_32_processes_create_and_delete_without_errors_duplicates_or_leaks(tmp_path):
    with Simulator(scenario="advanced", job_seconds=0) as sim:
        config = write_config(tmp_path / "cpi.json", sim.endpoint, sim.api_key, sim.secret_key)
        stemcell = existing_stemcell(sim)
        calls = []
        for i in range(VMS):
            if i % 2:
                network = {"type": "manual", "ip": f"10.1.0.{100 + i}", "netmask": "255.255.255.0",
                           "gateway": "10.1.0.1", "dns": ["10.1.0.1"], "default": ["dns", "gateway"],
                           "cloud_properties": {"name": "bosh-isolated"}}
            else:
                network = {"type": "dynamic", "default": ["dns", "gateway"], "cloud_properties": {"name": "bosh-isolated"}}
            calls.append(("create_vm", f"agent-{i}", stemcell, {"compute_offering": "small"}, {"net": network}, [], {}))
        calls += [("create_disk", 1024, {}, None)] * (PROCESSES - VMS)
        created = run_all(config, tmp_path, calls)
        errors = [response["error"] for response, _ in created if response["error"]]
        assert errors == []
        vms = [response["result"][0] for response, _ in created[:VMS]]
        disks = [response["result"] for response, _ in created[VMS:]]
        assert len(set(vms)) == len(vms) and len(set(disks)) == len(disks)

        with sim.state.lock:
            nics = [(nic["networkid"], nic["ipaddress"]) for vm in sim.state.vms.values() for nic in vm["_nics"]]
            states = {vm["state"] for vm in sim.state.vms.values()}
        duplicates = [key for key, count in collections.Counter(nics).items() if count > 1]
        assert duplicates == [] and None not in {ip for _, ip in nics} and len(nics) == len(vms)
        assert states == {"Running"}
        for i, (response, _) in enumerate(created[:VMS]):
            answered = response["result"][1]["net"]
            if i % 2:
                assert answered["ip"] == f"10.1.0.{100 + i}"

        def delete(call):
            return rpc.handle(request(*call), str(config), Logger(stream=io.StringIO()))

        # The deletes share this process: load the modules the CPI loads lazily first. importlib's LazyLoader
        # (3.11) is not thread-safe: a second thread touching a module while the first executes it sees it half
        # made ("has no attribute"). bin/cpi runs one call per process, so only in-process threads meet this.
        warm_lazy_modules()

        deletes = [("delete_vm", vm) for vm in vms] + [("delete_disk", d) for d in disks]
        with ThreadPoolExecutor(max_workers=PROCESSES) as pool:
            deleted = list(pool.map(delete, deletes))
        assert [response["error"] for response in deleted if response["error"]] == []
        inventory = sim.inventory()
        assert {k: inventory[k] for k in ("virtualmachines", "volumes", "staticnat", "publicips")} == {
            "virtualmachines": [], "volumes": [], "staticnat": [], "publicips": []}
