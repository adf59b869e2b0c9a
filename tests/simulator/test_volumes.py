"""Volumes (device ids, device_dir files), snapshots."""
import os

import pytest

from cloudstack_simulator import Simulator

from .helpers import Api, ApiError, JobFailed

GiB = 1024 ** 3


def new_volume(api, offering="disk-10", zone="zone-1", **kw):
    z = api.zone(zone)
    return api.acall("createVolume", zoneid=z["id"], diskofferingid=api.disk_offering(offering)["id"], **kw)["volume"]


def test_create_attach_detach_delete(api, sim):
    vm = api.deploy()
    v = new_volume(api, name="data")
    assert v["state"] == "Allocated" and v["size"] == 10 * GiB and v["type"] == "DATADISK"
    a = api.acall("attachVolume", id=v["id"], virtualmachineid=vm["id"])["volume"]
    assert a["deviceid"] == 1 and a["virtualmachineid"] == vm["id"] and a["state"] == "Ready"
    with pytest.raises(ApiError) as e:
        api.call("deleteVolume", id=v["id"])
    assert e.value.errortext == "Please specify a volume that is not attached to any VM."
    with pytest.raises(JobFailed) as e:     # attachVolumeToVM's checks run in the job
        api.acall("attachVolume", id=v["id"], virtualmachineid=vm["id"])
    assert e.value.errorcode == 431
    d = api.acall("detachVolume", id=v["id"])["volume"]
    assert "virtualmachineid" not in d
    assert sim.inventory()["volumes"] == [v["id"]]
    assert api.call("deleteVolume", id=v["id"]) == {"success": True}
    assert sim.inventory()["volumes"] == []


def test_device_ids_skip_cdrom_and_max(api):
    vm = api.deploy()
    ids = []
    for _ in range(6):
        v = new_volume(api)
        ids.append(api.acall("attachVolume", id=v["id"], virtualmachineid=vm["id"])["volume"]["deviceid"])
    assert ids == [1, 2, 4, 5, 6, 7]
    extra = new_volume(api)
    with pytest.raises(JobFailed) as e:
        api.acall("attachVolume", id=extra["id"], virtualmachineid=vm["id"])
    assert "maximum number of data disks" in e.value.errortext


def test_explicit_device_id(api):
    vm = api.deploy()
    v = new_volume(api)
    with pytest.raises(JobFailed) as e:     # getDeviceId's RuntimeException: errorcode 530
        api.acall("attachVolume", id=v["id"], virtualmachineid=vm["id"], deviceid=3)
    assert e.value.errortext == "deviceId should be 0,1,2,4-7" and e.value.errorcode == 530
    assert api.acall("attachVolume", id=v["id"], virtualmachineid=vm["id"], deviceid=5)["volume"]["deviceid"] == 5


def test_root_detach_refused_and_destroyed_vm(api):
    vm = api.deploy()
    root = api.list("listVolumes", "volume", virtualmachineid=vm["id"], type="ROOT")[0]
    with pytest.raises(JobFailed):
        api.acall("detachVolume", id=root["id"])
    v = new_volume(api)
    api.acall("attachVolume", id=v["id"], virtualmachineid=vm["id"])
    api.acall("destroyVirtualMachine", id=vm["id"])
    vols = api.list("listVolumes", "volume")
    assert [x["id"] for x in vols] == [v["id"]] and "virtualmachineid" not in vols[0]   # ROOT gone, data detached
    with pytest.raises(JobFailed):
        api.acall("attachVolume", id=v["id"], virtualmachineid=vm["id"])


def test_custom_size_and_resize(api):
    with pytest.raises(ApiError):
        new_volume(api, offering="shared.custom")
    v = new_volume(api, offering="shared.custom", size=20)
    assert v["size"] == 20 * GiB
    assert api.acall("resizeVolume", id=v["id"], size=30)["volume"]["size"] == 30 * GiB
    with pytest.raises(JobFailed) as e:     # ResizeVolumeCmd: the manager's refusal as errorcode 432, in the job
        api.acall("resizeVolume", id=v["id"], size=5)
    assert "shrinkok" in e.value.errortext and e.value.errorcode == 432
    assert api.acall("resizeVolume", id=v["id"], size=5, shrinkok="true")["volume"]["size"] == 5 * GiB
    r = api.acall("resizeVolume", id=v["id"], diskofferingid=api.disk_offering("disk-50")["id"])["volume"]
    assert r["size"] == 50 * GiB and r["diskofferingname"] == "disk-50"


def test_deploy_with_data_disk_and_rootdisksize(api):
    vm = api.deploy(diskofferingid=api.disk_offering("custom")["id"], size=3, rootdisksize=20)
    vols = {v["type"]: v for v in api.list("listVolumes", "volume", virtualmachineid=vm["id"])}
    assert vols["ROOT"]["size"] == 20 * GiB and vols["DATADISK"]["size"] == 3 * GiB and vols["DATADISK"]["deviceid"] == 1
    with pytest.raises(ApiError):
        api.deploy(rootdisksize=1)    # smaller than the 5 GB template


def test_snapshots(api, sim):
    vm = api.deploy()
    v = new_volume(api)
    with pytest.raises(ApiError) as e:
        api.call("createSnapshot", volumeid=v["id"])        # Allocated volume
    assert "not in Ready state" in e.value.errortext
    api.acall("attachVolume", id=v["id"], virtualmachineid=vm["id"])
    s = api.acall("createSnapshot", volumeid=v["id"])["snapshot"]
    assert s["state"] == "BackedUp" and s["volumeid"] == v["id"]
    assert [x["id"] for x in api.list("listSnapshots", "snapshot", volumeid=v["id"])] == [s["id"]]
    assert sim.inventory()["snapshots"] == [s["id"]]
    api.acall("deleteSnapshot", id=s["id"])
    assert sim.inventory()["snapshots"] == []


def test_device_dir_volume_copy(tmp_path):
    dev = tmp_path / "dev"
    with Simulator(device_dir=dev) as sim:
        api = Api(sim)
        vm = api.deploy()
        v = new_volume(api, offering="shared.custom", size=1)
        api.acall("attachVolume", id=v["id"], virtualmachineid=vm["id"])
        path = dev / vm["id"] / "vdb"
        assert path.stat().st_size == GiB
        assert path.stat().st_blocks == 0     # sparse
        payload = b"QFI\xfb" + os.urandom(100_000)
        with open(path, "r+b") as f:
            f.write(payload)
        api.acall("detachVolume", id=v["id"])
        assert not path.exists()
        # reattach elsewhere: content follows the volume
        vm2 = api.deploy()
        api.acall("attachVolume", id=v["id"], virtualmachineid=vm2["id"])
        with open(dev / vm2["id"] / "vdb", "rb") as f:
            assert f.read(len(payload)) == payload
        snap = api.acall("createSnapshot", volumeid=v["id"])["snapshot"]
        api.acall("detachVolume", id=v["id"])
        os_id = api.ostype("Ubuntu 22.04 LTS")["id"]
        t = api.acall("createTemplate", snapshotid=snap["id"], name="from-snap", displaytext="x", ostypeid=os_id)["template"]
        assert t["isready"] and t["status"] == "Download Complete"
        with open(sim.template_bytes(t["id"]), "rb") as f:
            assert f.read(len(payload)) == payload
        ex = api.acall("extractTemplate", id=t["id"], mode="HTTP_DOWNLOAD", zoneid=t["zoneid"])["template"]
        import requests
        with requests.get(ex["url"], stream=True) as r:
            assert int(r.headers["Content-Length"]) == GiB
            assert r.raw.read(len(payload)) == payload
        t2 = api.acall("createTemplate", volumeid=v["id"], name="from-vol", displaytext="x", ostypeid=os_id)["template"]
        with open(sim.template_bytes(t2["id"]), "rb") as f:
            assert f.read(len(payload)) == payload
