"""Timing profiles: how long each async job runs (cloudstack_simulator/timing.py, docs/simulator.md "Timing
profiles").  Realistic durations run at a small scale; the checks are on orderings and on generous bounds."""

import time

import pytest

from cloudstack_simulator import Simulator
from cloudstack_simulator.cli import build_parser
from cloudstack_simulator.timing import REALISTIC, Timing

from .helpers import Api

SCALE = 0.01   # realistic ratios, a hundred times faster


def finish_order(api, jobs: dict[str, str], timeout: float = 10) -> list[str]:
    """Poll queryAsyncJobResult until every job ended; the labels in the order the jobs were seen finished."""
    order, deadline = [], time.monotonic() + timeout
    while len(order) < len(jobs):
        assert time.monotonic() < deadline, f"jobs still running: {set(jobs) - set(order)}"
        for label, jobid in jobs.items():
            if label not in order and api.job(jobid)["jobstatus"] != 0:
                order.append(label)
        time.sleep(0.005)
    return order


def test_profiles_scale_and_the_single_override():
    """Figures per command and variant; a variant without a figure takes the command's; ``job_seconds`` wins."""
    realistic = Timing("realistic", 1.0)
    assert realistic.seconds("deployVirtualMachine") == REALISTIC["deployVirtualMachine"]
    assert realistic.seconds("deployVirtualMachine", "stopped") < realistic.seconds("deployVirtualMachine")
    assert realistic.seconds("destroyVirtualMachine", "unknown-variant") == REALISTIC["destroyVirtualMachine"]
    assert Timing("realistic", 0.5).seconds("createSnapshot") == REALISTIC["createSnapshot"] * 0.5
    assert Timing("instant").seconds("createSnapshot") == 0.0
    assert Timing("realistic", 1.0, override=0.25).seconds("createSnapshot") == 0.25
    for bad in (dict(profile="slow"), dict(scale=-1.0), dict(scale=float("nan")), dict(override=-2.0)):
        with pytest.raises(ValueError):
            Timing(**{"profile": "realistic", **bad})


def test_realistic_relative_durations():
    """The orderings the profile encodes: createVolume (allocation only) and createTags are quick; attaching to a
    running VM costs more than to a stopped one; a VM deployed Stopped is ready long before a started one; an
    expunging destroy takes longer than a plain one."""
    t = Timing("realistic")
    assert t.seconds("createTags") < t.seconds("createVolume") <= t.seconds("attachVolume", "stopped")
    assert t.seconds("attachVolume", "stopped") < t.seconds("attachVolume", "running")
    assert t.seconds("deployVirtualMachine", "stopped") < t.seconds("stopVirtualMachine") \
        < t.seconds("startVirtualMachine") < t.seconds("deployVirtualMachine")
    assert t.seconds("destroyVirtualMachine") < t.seconds("destroyVirtualMachine", "expunge")
    assert t.seconds("rejected") < t.seconds("createVolume") < t.seconds("createSnapshot") < t.seconds("copyTemplate")


def test_jobs_finish_in_the_order_of_their_realistic_durations():
    """Submitted together through the API, they finish as their figures say: createTags (0.5 s), a deploy with
    startvm=false (1 s), a stop (10 s), a started deploy (30 s), each at 1/100 of those figures.  (Jobs seen ending
    in one poll round are listed in submission order.)"""
    with Simulator(timing="realistic", timing_scale=SCALE) as sim:
        api = Api(sim)
        running = api.deploy(startvm="true")            # waits its 0.3 s
        z = api.zone("zone-1")
        base = dict(zoneid=z["id"], serviceofferingid=api.offering("small")["id"],
                    templateid=api.template("bosh-stemcell-existing")["id"],
                    networkids=api.network(z["id"], "bosh-isolated")["id"])
        jobs = {
            "tags": api.call("createTags", resourcetype="UserVm", resourceids=running["id"],
                             **{"tags[0].key": "k", "tags[0].value": "v"})["jobid"],
            "stopped deploy": api.call("deployVirtualMachine", startvm="false", **base)["jobid"],
            "started deploy": api.call("deployVirtualMachine", **base)["jobid"],
            "stop": api.call("stopVirtualMachine", id=running["id"])["jobid"],   # submitted later, ends sooner
        }
        assert finish_order(api, jobs) == ["tags", "stopped deploy", "stop", "started deploy"]


def test_the_first_start_of_a_vm_deployed_stopped_does_the_deploys_work():
    """A stopped deploy leaves the VM's volumes Allocated (DeployVMCmd.execute starts nothing with startvm=false);
    its first start creates them on primary storage (VolumeOrchestrator.prepare), so deploying stopped and starting
    takes as long as deploying started (1 + 29 = 30 s), and a later start is a restart (20 s).  Before, the first
    start took 20 s and made the stopped path look 9 s faster than one started deploy."""
    t = Timing("realistic")
    assert t.seconds("deployVirtualMachine", "stopped") + t.seconds("startVirtualMachine", "first") \
        == t.seconds("deployVirtualMachine")
    with Simulator() as sim:
        api = Api(sim)
        vm = api.deploy(startvm="false")
        volumes = api.call("listVolumes", virtualmachineid=vm["id"])["volume"]
        assert {v["state"] for v in volumes} == {"Allocated"}
        sim.set_timing("realistic", SCALE)
        first = api.call("startVirtualMachine", id=vm["id"])["jobid"]
        started = time.monotonic()
        finish_order(api, {"first start": first})
        assert time.monotonic() - started > 0.8 * t.seconds("startVirtualMachine", "first") * SCALE
        assert {v["state"] for v in api.call("listVolumes", virtualmachineid=vm["id"])["volume"]} == {"Ready"}


def test_attach_to_a_running_vm_takes_longer_and_refusals_end_at_once():
    """attachVolume on a running VM (8 s) outlasts one on a stopped VM (2 s); an attach the job's own checks refuse
    ends after the ``rejected`` figure (0.5 s), whatever the command's figure.  Submitted in the opposite order, at
    3/20 of the figures (margins of 225 ms and more against the time between two submissions: 1/20 left 75 ms,
    which a loaded 2-core machine overran)."""
    with Simulator() as sim:
        api = Api(sim)
        running, stopped = api.deploy(), api.deploy(startvm="false")
        zone, offering = api.zone("zone-1")["id"], api.disk_offering("disk-10")["id"]
        v1, v2, v3 = (api.acall("createVolume", zoneid=zone, diskofferingid=offering)["volume"] for _ in range(3))
        api.acall("attachVolume", id=v3["id"], virtualmachineid=stopped["id"])
        sim.set_timing("realistic", 0.15)
        jobs = {
            "running": api.call("attachVolume", id=v1["id"], virtualmachineid=running["id"])["jobid"],
            "stopped": api.call("attachVolume", id=v2["id"], virtualmachineid=stopped["id"])["jobid"],
            "refused": api.call("attachVolume", id=v3["id"], virtualmachineid=running["id"])["jobid"],
        }
        assert finish_order(api, jobs) == ["refused", "stopped", "running"]
        assert api.job(jobs["refused"])["jobstatus"] == 2 and api.job(jobs["running"])["jobstatus"] == 1


def test_job_seconds_overrides_the_profile_and_none_gives_it_back():
    """``Simulator(job_seconds=...)`` is the one duration of every job; ``set_job_seconds(None)`` restores the
    profile; the default profile is instant."""
    with Simulator(timing="realistic", job_seconds=0) as sim:
        api = Api(sim)
        started = time.monotonic()
        api.deploy()                                     # 30 s in the realistic profile
        assert time.monotonic() - started < 5
        sim.set_job_seconds(None)
        assert sim.timing.seconds("deployVirtualMachine") == REALISTIC["deployVirtualMachine"]
        sim.set_timing("instant")
        assert sim.timing.seconds("deployVirtualMachine") == 0.0
    with Simulator() as sim:
        assert sim.timing.profile == "instant" and sim.timing.seconds("createSnapshot") == 0.0


def test_cli_options():
    """``--timing`` names a profile, ``--timing-scale`` multiplies it, ``--job-seconds`` (no default any more) still
    sets the single duration; wrong values are usage errors (exit 2)."""
    args = build_parser().parse_args(["--timing", "realistic", "--timing-scale", "0.01"])
    assert (args.timing, args.timing_scale, args.job_seconds) == ("realistic", 0.01, None)
    assert build_parser().parse_args([]).timing == "instant"
    assert build_parser().parse_args(["--job-seconds", "2"]).job_seconds == 2.0
    for bad in (["--timing", "slow"], ["--timing-scale", "-1"], ["--timing-scale", "nan"]):
        with pytest.raises(SystemExit) as exit_:
            build_parser().parse_args(bad)
        assert exit_.value.code == 2


def test_uploaded_template_is_installed_after_the_profile_figure():
    """After the POSTed bytes arrive the template shows "Installing Template" for the ``upload:install`` figure
    (20 s, here 1/100 of it), then "Download Complete" (uploads.py _finish_later)."""
    from .test_templates import QCOW2, post, upload_params, wait_template

    with Simulator(timing="realistic", timing_scale=SCALE) as sim:
        api = Api(sim)
        params = upload_params(api)
        sent = time.monotonic()
        assert post(params, QCOW2).status_code == 200
        statuses = {api.list("listTemplates", "template", templatefilter="self", id=params["id"])[0]["status"]}
        row = wait_template(api, params["id"])
        waited = time.monotonic() - sent
        assert row["status"] == "Download Complete" and row["isready"]
        assert "Installing Template" in statuses and 0.2 <= waited < 5
