"""Which checks of an async command answer the request and which fail its job, as on the real server.

ApiServer.queueCommand runs only the dispatch chain's parameter processing before it queues an async command
(ParamProcessWorker: missing or malformed parameters, uuids it cannot resolve, the command's getEntityOwnerId and
getSyncObjId) and, for a BaseAsyncCreateCmd, the command's create(); the command's execute() and the manager's
checks in it run inside the job.  ApiAsyncJobDispatcher.runJob (apache/cloudstack server/.../api/
ApiAsyncJobDispatcher.java) then records the failure:

    } catch (InvalidParameterValueException ipve) {
        throw new ServerApiException(ApiErrorCode.PARAM_ERROR, ipve.getMessage());
    ...
    } catch (Throwable e) {
        int errorCode = ApiErrorCode.INTERNAL_ERROR.getHttpCode();
        if (!(e instanceof ServerApiException)) { errorMsg = e.getMessage(); }
        else { errorMsg = sApiEx.getDescription(); errorCode = sApiEx.getErrorCode().getHttpCode(); }
        ExceptionResponse response = new ExceptionResponse();
        response.setErrorCode(errorCode); response.setErrorText(errorMsg);
        _asyncJobMgr.completeAsyncJob(job.getId(), JobInfo.Status.FAILED, errorCode, ...);

so a failed job carries errorcode 431 for an InvalidParameterValueException, 530 for anything else that is not a
ServerApiException, and no cserrorcode.  docs/simulator.md ("Checks before and inside jobs") has the table.
"""

import pytest

from .helpers import ApiError, JobFailed


def job_of(api, command, **params):
    """The request must be accepted (a jobid), the job must fail: its queryAsyncJobResult."""
    started = api.call(command, **params)
    assert "jobid" in started, started
    job = api.wait(started["jobid"])
    assert job["jobstatus"] == 2, job
    return job


def new_volume(api, offering="disk-10"):
    return api.acall("createVolume", zoneid=api.zone("zone-1")["id"],
                     diskofferingid=api.disk_offering(offering)["id"])["volume"]


def test_attaching_an_attached_volume_fails_the_job(api, sim):
    """VolumeApiServiceImpl.attachVolumeToVM (run by AttachVolumeCmd.execute, inside the job):
    ``if (volumeToAttach.getInstanceId() != null) { throw new InvalidParameterValueException("Please specify a
    volume that is not attached to any VM."); }``"""
    vm = api.deploy()
    vol = new_volume(api)
    api.acall("attachVolume", id=vol["id"], virtualmachineid=vm["id"])
    other = api.deploy()
    job = job_of(api, "attachVolume", id=vol["id"], virtualmachineid=other["id"])
    assert job["jobresultcode"] == 431
    assert job["jobresult"] == {"errorcode": 431, "errortext": "Please specify a volume that is not attached to any VM."}
    assert job["jobinstancetype"] == "Volume" and job["jobinstanceid"] == vol["id"]
    assert api.list("listVolumes", "volume", id=vol["id"])[0]["virtualmachineid"] == vm["id"]   # untouched


def test_a_uuid_that_never_existed_is_refused_before_the_job(api):
    """ParamProcessWorker.processParameters (before any job): a uuid translateUuidToInternalId cannot resolve →
    ``throw new ServerApiException(ApiErrorCode.PARAM_ERROR, "Unable to execute API command " + ... + " due to
    invalid value. " + invEx.getMessage())``."""
    vm = api.deploy()
    with pytest.raises(ApiError) as err:
        api.call("attachVolume", id="11111111-2222-3333-4444-555555555555", virtualmachineid=vm["id"])
    assert err.value.status == 431 and "Invalid parameter id value=11111111-2222-3333-4444-555555555555" in \
        err.value.errortext


def test_detach_without_ids_fails_the_job(api):
    """DetachVolumeCmd declares ``id`` without required=true; VolumeApiServiceImpl.detachVolumeFromVM checks, in the
    job: ``if ((cmmd.getId() == null && cmmd.getDeviceId() == null && cmmd.getVirtualMachineId() == null) || ...)
    throw new InvalidParameterValueException("Please provide either a volume id, or a tuple(device id, instance
    id)");`` (the failed job of ACS's marvin jsonHelper.py sample)."""
    job = job_of(api, "detachVolume")
    assert job["jobresult"]["errorcode"] == 431
    assert job["jobresult"]["errortext"] == "Please provide either a volume id, or a tuple(device id, instance id)"


def test_detaching_a_detached_volume_fails_the_job(api):
    """VolumeApiServiceImpl.detachVolumeFromVM: ``if (vmId == null) { throw new InvalidParameterValueException("The
    specified volume is not attached to a VM."); }``"""
    vol = new_volume(api)
    job = job_of(api, "detachVolume", id=vol["id"])
    assert job["jobresult"] == {"errorcode": 431, "errortext": "The specified volume is not attached to a VM."}


def test_shrinking_fails_the_job_as_unsupported_action(api):
    """VolumeApiServiceImpl.resizeVolume: ``if (currentSize > newSize && !shrinkOk) { throw new
    InvalidParameterValueException("Going from existing size of " + currentSize + " to size of " + newSize + " would
    shrink the volume." + "Need to sign off by supplying the shrinkok parameter with value of true."); }``, and
    ResizeVolumeCmd.execute: ``catch (InvalidParameterValueException ex) { throw new
    ServerApiException(ApiErrorCode.UNSUPPORTED_ACTION_ERROR, ex.getMessage()); }`` → errorcode 432."""
    vol = api.acall("createVolume", zoneid=api.zone("zone-1")["id"], size=20,
                    diskofferingid=api.disk_offering("shared.custom")["id"])["volume"]
    job = job_of(api, "resizeVolume", id=vol["id"], size=10)
    assert job["jobresultcode"] == 432 and job["jobresult"]["errorcode"] == 432
    assert job["jobresult"]["errortext"] == (f"Going from existing size of {20 * 1024 ** 3} to size of "
                                             f"{10 * 1024 ** 3} would shrink the volume.Need to sign off by "
                                             f"supplying the shrinkok parameter with value of true.")


def test_resizing_a_deleted_volume_is_refused_before_the_job(api):
    """ResizeVolumeCmd.getEntityOwnerId, which ParamProcessWorker.doAccessChecks calls before any job:
    ``Volume volume = _entityMgr.findById(Volume.class, getEntityId()); if (volume == null) { throw new
    InvalidParameterValueException("Unable to find volume by id=" + id); }``"""
    vol = new_volume(api)
    api.call("deleteVolume", id=vol["id"])
    with pytest.raises(ApiError) as err:
        api.call("resizeVolume", id=vol["id"], size=20)
    assert err.value.status == 431 and err.value.errortext.startswith("Unable to find volume by id=")


def test_device_id_refusals_are_internal_errors_of_the_job(api):
    """VolumeApiServiceImpl.getDeviceId (inside the attach job): ``throw new RuntimeException("deviceId should be
    0,1,2,4-" + maxDeviceId);`` — not an InvalidParameterValueException, so runJob records errorcode 530."""
    vm = api.deploy()
    vol = new_volume(api)
    job = job_of(api, "attachVolume", id=vol["id"], virtualmachineid=vm["id"], deviceid=3)
    assert job["jobresult"] == {"errorcode": 530, "errortext": "deviceId should be 0,1,2,4-7"}


def test_starting_a_running_vm_fails_the_job(api):
    """UserVmManagerImpl.startVirtualMachine (StartVMCmd.execute, in the job): ``if (vm.getState() ==
    State.Running) { throw new InvalidParameterValueException(String.format("The virtual machine %s (%s) is already
    running", vm.getUuid(), vm.getDisplayNameOrHostName())); }``"""
    vm = api.deploy(displayname="web")
    job = job_of(api, "startVirtualMachine", id=vm["id"])
    assert job["jobresult"] == {"errorcode": 431, "errortext": f"The virtual machine {vm['id']} (web) is already running"}


def test_rebooting_a_stopped_vm_fails_the_job(api):
    """UserVmManagerImpl.rebootVirtualMachine(RebootVMCmd), in the job: ``if (vmInstance.getState() !=
    State.Running) { throw new InvalidParameterValueException(String.format("The VM %s (%s) is not running, unable
    to reboot it", vmInstance.getUuid(), vmInstance.getDisplayNameOrHostName())); }``"""
    vm = api.deploy(startvm="false", displayname="db")
    job = job_of(api, "rebootVirtualMachine", id=vm["id"])
    assert job["jobresult"] == {"errorcode": 431, "errortext": f"The VM {vm['id']} (db) is not running, unable to reboot it"}


def test_destroying_an_expunged_vm_fails_the_job(api):
    """ParamProcessWorker resolves the uuid of an expunged VM (findByUuidIncludingRemoved) and DestroyVMCmd.
    getEntityOwnerId answers SYSTEM for it; UserVmManagerImpl.destroyVm(DestroyVMCmd), in the job: ``if (vm == null
    || vm.getRemoved() != null) { throw new InvalidParameterValueException("unable to find a virtual machine with
    id " + vmId); }``"""
    vm = api.deploy()
    api.acall("destroyVirtualMachine", id=vm["id"], expunge="true")
    job = job_of(api, "destroyVirtualMachine", id=vm["id"])
    assert job["jobresult"]["errorcode"] == 431
    assert job["jobresult"]["errortext"].startswith("unable to find a virtual machine with id")


def test_create_tags_parses_the_resource_type_in_the_job(api):
    """CreateTagsCmd.execute: ``_taggedResourceService.createTags(getResourceIds(), getResourceType(), getTags(),
    getCustomer())`` with getResourceType → TaggedResourceManagerImpl.getResourceType: ``throw new
    InvalidParameterValueException("Invalid resource type " + resourceTypeStr);`` — inside the job, since
    CreateTagsCmd.getEntityOwnerId is ``return 1;`` and looks at nothing."""
    vm = api.deploy()
    job = job_of(api, "createTags", resourcetype="Gadget", resourceids=vm["id"],
                 **{"tags[0].key": "k", "tags[0].value": "v"})
    assert job["jobresult"] == {"errorcode": 431, "errortext": "Invalid resource type Gadget"}


def test_create_snapshot_checks_the_volume_before_the_job(api):
    """CreateSnapshotCmd is a BaseAsyncCreateCmd: ApiServer.queueCommand calls dispatchCreateCmd (create() →
    SnapshotManagerImpl/VolumeApiServiceImpl.allocSnapshot) before queueing, so allocSnapshot's ``VolumeId: ... is
    not in Ready state but ... Cannot take snapshot.`` answers the request."""
    vol = new_volume(api)
    with pytest.raises(ApiError) as err:
        api.call("createSnapshot", volumeid=vol["id"])
    assert err.value.status == 431 and "is not in Ready state but Allocated" in err.value.errortext


def test_create_volume_checks_the_vm_only_for_a_volume_from_a_snapshot(api):
    """VolumeApiServiceImpl.allocVolume (create(), before the job) checks virtualmachineid only inside
    ``if (cmd.getSnapshotId() != null)``: ``if (vm.getState() != State.Running && vm.getState() != State.Stopped)
    { throw new InvalidParameterValueException("Please specify a VM that is either running or stopped."); }``;
    createVolume (execute(), the job) attaches only then.  Without a snapshot the parameter is not used."""
    vm = api.deploy()
    vol = new_volume(api)
    api.acall("attachVolume", id=vol["id"], virtualmachineid=vm["id"])
    snap = api.acall("createSnapshot", volumeid=vol["id"])["snapshot"]
    api.acall("destroyVirtualMachine", id=vm["id"])
    with pytest.raises(ApiError) as err:
        api.call("createVolume", snapshotid=snap["id"], virtualmachineid=vm["id"])
    assert err.value.status == 431 and err.value.errortext == "Please specify a VM that is either running or stopped."
    plain = api.acall("createVolume", zoneid=api.zone("zone-1")["id"], virtualmachineid=vm["id"],
                      diskofferingid=api.disk_offering("disk-10")["id"])["volume"]
    assert plain["state"] == "Allocated" and "virtualmachineid" not in plain


def test_disassociating_a_free_address_succeeds(api, sim):
    """IpAddressManagerImpl.releaseIpAddressInternal (the disassociateIpAddress job): ``if (ipVO.getAllocatedTime()
    == null) { s_logger.debug("Ip Address id= " + ipAddressId + " is not allocated, so do nothing."); return true;
    }``"""
    ip = api.acall("associateIpAddress", zoneid=api.zone("zone-1")["id"])["ipaddress"]
    api.acall("disassociateIpAddress", id=ip["id"])
    assert api.acall("disassociateIpAddress", id=ip["id"]) == {"success": True}


def test_deleting_a_deleted_snapshot_fails_the_job(api):
    """DeleteSnapshotCmd.getEntityOwnerId answers ACCOUNT_ID_SYSTEM for a snapshot it cannot find;
    SnapshotManagerImpl.deleteSnapshot, in the job: ``if (snapshotCheck == null) { throw new
    InvalidParameterValueException("unable to find a snapshot with id " + snapshotId); }``"""
    vm = api.deploy()
    vol = new_volume(api)
    api.acall("attachVolume", id=vol["id"], virtualmachineid=vm["id"])
    snap = api.acall("createSnapshot", volumeid=vol["id"])["snapshot"]
    api.acall("deleteSnapshot", id=snap["id"])
    with pytest.raises(JobFailed) as failed:
        api.acall("deleteSnapshot", id=snap["id"])
    assert failed.value.errorcode == 431 and failed.value.errortext == f"unable to find a snapshot with id {snap['id']}"


def test_deleting_a_gone_firewall_rule_is_refused_before_the_job(api):
    """DeleteFirewallRuleCmd.getEntityOwnerId, called by ParamProcessWorker before any job: ``if (rule == null) {
    throw new InvalidParameterValueException("Unable to find firewall rule by ID=" + id); }`` — an immediate 431."""
    ip = api.acall("associateIpAddress", networkid=api.network(api.zone("zone-1")["id"], "bosh-isolated")["id"])
    rule = api.acall("createFirewallRule", ipaddressid=ip["ipaddress"]["id"], protocol="tcp", startport=22)
    api.acall("deleteFirewallRule", id=rule["firewallrule"]["id"])
    with pytest.raises(ApiError) as err:
        api.call("deleteFirewallRule", id=rule["firewallrule"]["id"])
    assert err.value.status == 431


def test_job_error_codes_of_4_11_to_4_19():
    """The 4.11-era ApiAsyncJobDispatcher.runJob (server/src/com/cloud/api/) has no InvalidParameterValueException
    catch and records every failure with INTERNAL_ERROR: ``if (!(e instanceof ServerApiException)) { errorMsg =
    e.getMessage(); } ... _asyncJobMgr.completeAsyncJob(job.getId(), JobInfo.Status.FAILED,
    ApiErrorCode.INTERNAL_ERROR.getHttpCode(), ...)``: the manager's refusal is errorcode 530, jobresultcode 530.
    A ServerApiException keeps its code (ResizeVolumeCmd's UNSUPPORTED_ACTION_ERROR stays 432)."""
    from cloudstack_simulator import Simulator
    from cloudstack_simulator.state import load_scenario

    from .helpers import Api

    scenario = load_scenario("advanced")
    scenario["settings"] = {**scenario.get("settings", {}), "job_error_codes": "4.11"}
    with Simulator(scenario=scenario) as sim:
        api = Api(sim)
        job = job_of(api, "detachVolume")
        assert job["jobresultcode"] == 530
        assert job["jobresult"] == {"errorcode": 530, "errortext": "Please provide either a volume id, or a "
                                                                   "tuple(device id, instance id)"}
        vol = api.acall("createVolume", zoneid=api.zone("zone-1")["id"], size=20,
                        diskofferingid=api.disk_offering("shared.custom")["id"])["volume"]
        shrink = job_of(api, "resizeVolume", id=vol["id"], size=10)
        assert shrink["jobresultcode"] == 530 and shrink["jobresult"]["errorcode"] == 432
    with pytest.raises(ValueError):
        Simulator(scenario={**scenario, "settings": {"job_error_codes": "4.5"}})
