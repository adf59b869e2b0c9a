"""A small stateful CloudStack stand-in behind `responses` for the disk and snapshot handlers.

It follows the facts in shared/reference/cloudstack-api.md §5: sizes in bytes on volumes and GB on offerings,
device ids chosen lowest-free from 1 with 3 kept for the CD-ROM, ``maximum number of data disks`` refusals,
resizeVolume's offering rules, createTags refusing a key that is already set, async jobs.  Jobs finish at once.
The tests at the bottom pin those behaviours so that the handler tests rest on them knowingly.
"""

from __future__ import annotations

import io
import itertools
import json
from urllib.parse import parse_qs, urlsplit

import pytest
import requests
import responses

from cloudstack_cpi.cloudstack.client import Client
from cloudstack_cpi.context import CallContext
from cloudstack_cpi.log import Logger
from tests.conftest import write_config

URL = "http://cs.test/client/api"
GIB = 1024 ** 3
CDROM = 3

OFFERINGS = [
    {"id": "off-10", "name": "disk-10", "disksize": 10, "iscustomized": False, "storagetype": "shared"},
    {"id": "off-50", "name": "disk-50", "disksize": 50, "iscustomized": False, "storagetype": "shared"},
    {"id": "off-custom", "name": "shared.custom", "disksize": 0, "iscustomized": True, "storagetype": "shared"},
    {"id": "off-custom2", "name": "custom", "disksize": 0, "iscustomized": True, "storagetype": "shared"},
    {"id": "off-local", "name": "local-100", "disksize": 100, "iscustomized": False, "storagetype": "local"},
    {"id": "off-ssd", "name": "ssd.custom", "disksize": 0, "iscustomized": True, "storagetype": "shared",
     "tags": "ssd"},
]


class ApiFailure(Exception):
    def __init__(self, code: int, text: str) -> None:
        super().__init__(text)
        self.code, self.text = code, text


class FakeCloud:
    def __init__(self, max_data_volumes: int = 6) -> None:
        self.zones = [{"id": "z1", "name": "zone-1"}, {"id": "z2", "name": "zone-2"}]
        self.offerings = [dict(o) for o in OFFERINGS]
        self.vms: dict[str, dict] = {}
        self.volumes: dict[str, dict] = {}
        self.snapshots: dict[str, dict] = {}
        self.tags: list[dict] = []
        self.jobs: dict[str, dict] = {}
        self.calls: list[tuple[str, dict]] = []
        self.failures: dict[str, list] = {}
        self.max_data_volumes = max_data_volumes
        self._seq = itertools.count(1)

    # -- arranging ----------------------------------------------------------------------------

    def new_id(self, kind: str) -> str:
        return f"{kind}-{next(self._seq):04d}-aaaa-bbbb-cccc-dddddddddddd"

    def add_vm(self, zone: str = "z1", hypervisor: str = "KVM", state: str = "Running") -> str:
        vm_id = self.new_id("vm")
        self.vms[vm_id] = {"id": vm_id, "name": f"vm-{len(self.vms)}", "zoneid": zone, "hypervisor": hypervisor,
                           "state": state}
        self.add_volume(zone=zone, vm=vm_id, deviceid=0, volume_type="ROOT", offering=None, gib=5)
        return vm_id

    def add_volume(self, *, zone: str = "z1", offering: str | None = "off-custom", gib: int = 10,
                   vm: str | None = None, deviceid: int | None = None, role: str | None = None,
                   state: str = "Ready", volume_type: str = "DATADISK") -> str:
        volume_id = self.new_id("vol")
        volume = {"id": volume_id, "name": f"volume-{volume_id[:8]}", "type": volume_type, "zoneid": zone,
                  "zonename": self._zone(zone)["name"], "size": gib * GIB, "state": state}
        if offering:
            volume["diskofferingid"] = offering
            volume["diskofferingname"] = self.offering(offering)["name"]
        self.volumes[volume_id] = volume
        if vm:
            self._attach(volume, self.vms[vm], deviceid)
        if role:
            self.tags.append({"resourcetype": "Volume", "resourceid": volume_id, "key": "cpi_role", "value": role})
        return volume_id

    def fail(self, command: str, code: int, text: str, *, job: bool = True, times: int | None = None) -> None:
        """Make ``command`` fail (``times`` times, or from now on): as a failed async job or as an API error."""
        self.failures[command.lower()] = [code, text, job, times]

    def _failure(self, command: str, *, job: bool) -> tuple[int, str] | None:
        failure = self.failures.get(command.lower())
        if failure is None or failure[2] != job:
            return None
        if failure[3] is not None:
            failure[3] -= 1
            if failure[3] <= 0:
                del self.failures[command.lower()]
        return failure[0], failure[1]

    # -- reading --------------------------------------------------------------------------------

    def offering(self, offering_id: str) -> dict:
        return next(o for o in self.offerings if o["id"] == offering_id)

    def tags_of(self, resource_type: str, resource_id: str) -> dict[str, str]:
        return {t["key"]: t["value"] for t in self.tags
                if t["resourcetype"] == resource_type and t["resourceid"] == resource_id}

    def commands(self) -> list[str]:
        return [command for command, _ in self.calls if command != "queryAsyncJobResult"]

    def params_of(self, command: str) -> list[dict]:
        return [params for name, params in self.calls if name == command]

    def data_volumes(self) -> list[str]:
        return sorted(v["id"] for v in self.volumes.values() if v["type"] == "DATADISK")

    # -- HTTP --------------------------------------------------------------------------------------

    def install(self, rsps: responses.RequestsMock) -> None:
        rsps.add_callback(responses.GET, URL, callback=self._handle)
        rsps.add_callback(responses.POST, URL, callback=self._handle)

    def _handle(self, request: requests.PreparedRequest):
        query = urlsplit(request.url).query if request.method == "GET" else request.body
        if isinstance(query, bytes):
            query = query.decode()
        params = {k: v[-1] for k, v in parse_qs(query or "", keep_blank_values=True).items()}
        command = params.pop("command")
        for key in ("apiKey", "signature", "signatureVersion", "expires", "response"):
            params.pop(key, None)
        self.calls.append((command, params))
        handler = getattr(self, f"_cmd_{command}")
        try:
            failure = self._failure(command, job=False)
            if failure:
                raise ApiFailure(*failure)
            body = handler(params)
        except ApiFailure as err:
            return err.code, {}, json.dumps({f"{command.lower()}response": {"errorcode": err.code,
                                                                            "errortext": err.text}})
        return 200, {}, json.dumps({f"{command.lower()}response": body})

    def _job(self, command: str, instance_id: str | None, work, *, create: bool = False) -> dict:
        job_id = self.new_id("job")
        failure = self._failure(command, job=True)
        if failure:
            self.jobs[job_id] = {"jobstatus": 2, "jobresultcode": failure[0], "jobinstanceid": instance_id,
                                 "jobresult": {"errorcode": failure[0], "errortext": failure[1]}}
        else:
            try:
                self.jobs[job_id] = {"jobstatus": 1, "jobresultcode": 0, "jobinstanceid": instance_id,
                                     "jobresult": work()}
            except ApiFailure as err:
                self.jobs[job_id] = {"jobstatus": 2, "jobresultcode": err.code, "jobinstanceid": instance_id,
                                     "jobresult": {"errorcode": err.code, "errortext": err.text}}
        return {"id": instance_id, "jobid": job_id} if create else {"jobid": job_id}

    @staticmethod
    def _listing(key: str, items: list[dict]) -> dict:
        return {"count": len(items), key: items} if items else {}

    def _zone(self, zone_id: str) -> dict:
        return next(z for z in self.zones if z["id"] == zone_id)

    def _volume_out(self, volume: dict) -> dict:
        tags = [{"key": k, "value": v, "resourcetype": "Volume", "resourceid": volume["id"]}
                for k, v in self.tags_of("Volume", volume["id"]).items()]
        return {**volume, "tags": tags}

    def _known(self, table: dict, params: dict, name: str, command: str) -> dict:
        value = params.get(name)
        if value not in table:
            raise ApiFailure(431, f"Unable to execute API command {command.lower()} due to invalid value. "
                                  f"Object (uuid: {value}) does not exist.")
        return table[value]

    # -- commands ------------------------------------------------------------------------------

    def _cmd_queryAsyncJobResult(self, params):
        return {"jobid": params["jobid"], **self.jobs[params["jobid"]]}

    def _cmd_listZones(self, params):
        return self._listing("zone", self.zones)

    def _cmd_listDiskOfferings(self, params):
        return self._listing("diskoffering", self.offerings)

    def _cmd_listVirtualMachines(self, params):
        vms = list(self.vms.values())
        if "id" in params:
            vms = [self._known(self.vms, params, "id", "listVirtualMachines")]
        return self._listing("virtualmachine", vms)

    def _cmd_listVolumes(self, params):
        volumes = list(self.volumes.values())
        if "id" in params:
            volumes = [self._known(self.volumes, params, "id", "listVolumes")]
        for field in ("virtualmachineid", "type", "name"):
            if field in params:
                volumes = [v for v in volumes if v.get(field) == params[field]]
        return self._listing("volume", [self._volume_out(v) for v in volumes])

    def _cmd_listTags(self, params):
        found = [t for t in self.tags if t["resourceid"] == params.get("resourceid")
                 and t["resourcetype"].lower() == params.get("resourcetype", "").lower()]
        return self._listing("tag", found)

    def _cmd_listSnapshots(self, params):
        snapshots = list(self.snapshots.values())
        if "id" in params:
            snapshots = [self._known(self.snapshots, params, "id", "listSnapshots")]
        for field in ("volumeid", "name"):
            if field in params:
                snapshots = [s for s in snapshots if s.get(field) == params[field]]
        return self._listing("snapshot", snapshots)

    def _cmd_createVolume(self, params):
        offering = self.offering(params["diskofferingid"])
        volume_id = self.new_id("vol")

        def work():
            if offering["iscustomized"] and "size" not in params:
                raise ApiFailure(431, "This disk offering requires a custom size specified")
            if not offering["iscustomized"] and "size" in params:
                raise ApiFailure(431, "This disk offering does not allow custom size")
            gib = int(params["size"]) if offering["iscustomized"] else offering["disksize"]
            volume = {"id": volume_id, "name": params.get("name"), "type": "DATADISK", "zoneid": params["zoneid"],
                      "zonename": self._zone(params["zoneid"])["name"], "size": gib * GIB, "state": "Allocated",
                      "diskofferingid": offering["id"], "diskofferingname": offering["name"]}
            self.volumes[volume_id] = volume
            return {"volume": self._volume_out(volume)}

        return self._job("createVolume", volume_id, work, create=True)

    def _cmd_deleteVolume(self, params):
        volume = self._known(self.volumes, params, "id", "deleteVolume")
        if volume.get("virtualmachineid"):
            raise ApiFailure(431, "Please specify a volume that is not attached to any VM.")
        del self.volumes[volume["id"]]
        self.tags = [t for t in self.tags if t["resourceid"] != volume["id"]]
        return {"success": True}

    def _attach(self, volume: dict, vm: dict, deviceid: int | None) -> None:
        used = {v.get("deviceid") for v in self.volumes.values() if v.get("virtualmachineid") == vm["id"]}
        if deviceid is None:
            free = [d for d in range(1, self.max_data_volumes + 2) if d != CDROM and d not in used]
            if not free:
                raise ApiFailure(431, f"The specified VM already has the maximum number of data disks "
                                      f"({self.max_data_volumes}). Please specify another VM.")
            deviceid = free[0]
        volume.update(virtualmachineid=vm["id"], deviceid=deviceid, vmname=vm["name"], vmstate=vm["state"],
                      state="Ready")

    def _cmd_attachVolume(self, params):
        volume = self._known(self.volumes, params, "id", "attachVolume")
        vm = self._known(self.vms, params, "virtualmachineid", "attachVolume")

        def work():
            if volume.get("virtualmachineid"):
                raise ApiFailure(431, "Please specify a volume that is not attached to any VM.")
            self._attach(volume, vm, None)
            return {"volume": self._volume_out(volume)}

        return self._job("attachVolume", volume["id"], work)

    def _cmd_detachVolume(self, params):
        volume = self._known(self.volumes, params, "id", "detachVolume")

        def work():
            if not volume.get("virtualmachineid"):
                raise ApiFailure(431, "Please specify a VM that is either running or stopped.")
            for key in ("virtualmachineid", "deviceid", "vmname", "vmstate"):
                volume.pop(key, None)
            return {"volume": self._volume_out(volume)}

        return self._job("detachVolume", volume["id"], work)

    def _cmd_resizeVolume(self, params):
        volume = self._known(self.volumes, params, "id", "resizeVolume")

        def work():
            current = self.offering(volume["diskofferingid"])
            new = self.offering(params["diskofferingid"]) if "diskofferingid" in params else current
            if new is not current:
                if (current.get("tags") or None) != (new.get("tags") or None):
                    raise ApiFailure(431, "The tags on the new and old disk offerings must match.")
                if current["storagetype"] != new["storagetype"]:
                    raise ApiFailure(431, "Unable to resize a volume between local and shared storage")
            if new["iscustomized"]:
                if "size" not in params:
                    raise ApiFailure(431, "New size must be specified for a custom disk offering")
                size = int(params["size"]) * GIB
            else:
                if "size" in params:
                    raise ApiFailure(431, "You cannot pass in a custom disk size to a non-custom disk offering.")
                if new is current:
                    raise ApiFailure(431, "Only volumes on customized offerings can be resized without a new one")
                size = new["disksize"] * GIB
            if size < volume["size"] and params.get("shrinkok") != "true":
                raise ApiFailure(431, "Going from existing size to a smaller size would shrink the volume.")
            volume.update(size=size, diskofferingid=new["id"], diskofferingname=new["name"])
            return {"volume": self._volume_out(volume)}

        return self._job("resizeVolume", volume["id"], work)

    def _cmd_createTags(self, params):
        rtype, rids = params["resourcetype"], params["resourceids"].split(",")
        pairs, i = {}, 0
        while f"tags[{i}].key" in params:
            pairs[params[f"tags[{i}].key"]] = params[f"tags[{i}].value"]
            i += 1

        def work():
            for rid in rids:
                existing = {k.lower() for k in self.tags_of(rtype, rid)}
                for key, value in pairs.items():
                    if key.lower() in existing:
                        raise ApiFailure(530, f"tag {key} already on {rtype} with id {rid}")
                    if not value:
                        raise ApiFailure(431, f"Value for the key {key} is either null or empty")
                    self.tags.append({"resourcetype": rtype, "resourceid": rid, "key": key, "value": value})
            return {"success": True}

        return self._job("createTags", None, work)

    def _cmd_deleteTags(self, params):
        rtype, rids = params["resourcetype"], params["resourceids"].split(",")
        keys, i = set(), 0
        while f"tags[{i}].key" in params:
            keys.add(params[f"tags[{i}].key"].lower())
            i += 1

        def work():
            self.tags = [t for t in self.tags if not (t["resourcetype"] == rtype and t["resourceid"] in rids
                                                      and t["key"].lower() in keys)]
            return {"success": True}

        return self._job("deleteTags", None, work)

    def _cmd_createSnapshot(self, params):
        volume = self._known(self.volumes, params, "volumeid", "createSnapshot")
        snapshot_id = self.new_id("snap")

        def work():
            if volume["state"] != "Ready":
                raise ApiFailure(431, f"VolumeId: {volume['id']} is not in Ready state but {volume['state']}. "
                                      f"Cannot take snapshot.")
            snapshot = {"id": snapshot_id, "name": params.get("name"), "volumeid": volume["id"],
                        "state": "BackedUp", "snapshottype": "MANUAL"}
            self.snapshots[snapshot_id] = snapshot
            return {"snapshot": snapshot}

        return self._job("createSnapshot", snapshot_id, work, create=True)

    def _cmd_deleteSnapshot(self, params):
        snapshot = self._known(self.snapshots, params, "id", "deleteSnapshot")

        def work():
            self.snapshots.pop(snapshot["id"], None)
            self.tags = [t for t in self.tags if t["resourceid"] != snapshot["id"]]
            return {"success": True}

        return self._job("deleteSnapshot", snapshot["id"], work)


# -- fixtures (imported by test_disks*.py and test_snapshots*.py) ---------------------------------


@pytest.fixture
def cloud():
    fake = FakeCloud()
    with responses.RequestsMock(assert_all_requests_are_fired=False) as rsps:
        fake.install(rsps)
        yield fake


@pytest.fixture
def make_ctx(tmp_path):
    """A CallContext on the fake endpoint: ``make_ctx(api_version=2, director_uuid=..., **cloudstack_config)``."""
    made = []

    def make(api_version: int = 2, director_uuid: str | None = "director-uuid-1", **cloudstack) -> CallContext:
        config = write_config(tmp_path / f"cpi-{len(made)}.json", URL, "the-key", "the-secret-value", **cloudstack)
        stream = io.StringIO()
        log = Logger(stream=stream, request_id="cpi-123456")
        context = {"director_uuid": director_uuid} if director_uuid else {}
        ctx = CallContext(method="test", api_version=api_version, context=context, config_path=str(config), log=log)
        ctx.client = Client(URL, "the-key", "the-secret-value", log=log, sleep=lambda seconds: None)
        ctx.stderr = stream
        made.append(ctx)
        return ctx

    yield make
    for ctx in made:
        ctx.close()


@pytest.fixture
def ctx(cloud, make_ctx):
    return make_ctx()


# -- the fake's CloudStack behaviour, pinned --------------------------------------------------------


def test_device_ids_skip_the_cdrom_and_stop_at_the_limit(cloud):
    vm = cloud.add_vm()
    ids = [cloud.volumes[cloud.add_volume(vm=vm)]["deviceid"] for _ in range(cloud.max_data_volumes)]
    assert ids == [1, 2, 4, 5, 6, 7]
    with pytest.raises(ApiFailure, match="maximum number of data disks"):
        cloud.add_volume(vm=vm)


def test_unknown_ids_are_431_and_lists_can_be_empty(cloud, ctx):
    assert ctx.client.find("listVolumes", id="nope") is None
    assert ctx.client.list("listVolumes", virtualmachineid="nope") == []
    assert cloud.calls[0] == ("listVolumes", {"id": "nope"})


def test_jobs_carry_their_results_and_failures(cloud, ctx):
    from cloudstack_cpi.cloudstack.errors import CloudStackError

    vm = cloud.add_vm()
    volume = cloud.add_volume()
    result = ctx.client.run_job("attachVolume", timeout=5, what="t", id=volume, virtualmachineid=vm)
    assert result["volume"]["deviceid"] == 1
    cloud.fail("detachVolume", 530, "boom")
    with pytest.raises(CloudStackError) as caught:
        ctx.client.run_job("detachVolume", timeout=5, what="t", id=volume)
    assert caught.value.kind == "job" and caught.value.errorcode == 530
