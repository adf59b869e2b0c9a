"""apache-libcloud's CloudStack compute driver, used unchanged, through a whole lifecycle against the simulator.

The driver is ``libcloud.compute.drivers.cloudstack.CloudStackNodeDriver`` (libcloud/compute/drivers/cloudstack.py,
with its connection and request signing in libcloud/common/cloudstack.py), pointed at the simulator over real HTTP on
127.0.0.1. Only configuration is touched: the connection's ``poll_interval`` (libcloud's PollingConnection sleeps
that long between two queryAsyncJobResult polls; 1 s by default) and ``timeout``.

Where libcloud would fail against a real 4.11 server too, the test says so and goes around libcloud; the simulator
keeps answering as the server does:

* ``list_sizes`` reads ``cpunumber`` of every compute offering; 4.11 leaves it out for a customized offering
  (ServiceOfferingResponse.cpuNumber is null, Gson drops nulls), so libcloud raises KeyError on any cloud that has
  one (test_list_sizes_fails_on_a_customized_offering). The lifecycle runs on the advanced scenario without it.
* ``list_snapshots`` reads ``snapshots["snapshot"]``; a list command with nothing to list answers ``{}``
  (ApiResponseSerializer.toJSONSerializedString writes an empty ListResponse as ``{}``), so libcloud raises
  KeyError when there is no snapshot. The driver has no ``list_volume_snapshots`` (NodeDriver's raises
  NotImplementedError): the snapshots of a volume are ``list_snapshots`` filtered on ``extra["volume_id"]``.
* ``create_node`` sends ``startvm=False`` unless told otherwise (its ``ex_start_vm`` defaults to False), so the VM
  is deployed Stopped, where CloudStack's own default is to start it: the test passes ``ex_start_vm=True``.
* ``delete_key_pair`` returns ``res["success"] == "true"``, the string of its fixture deleteSSHKeyPair_default.json;
  SuccessResponse.success is a Boolean that Gson writes as the JSON boolean (ApiResponseSerializer
  .toJSONSerializedString), as the simulator does, so libcloud can say False although the key pair is gone. The test
  checks that the key pair is gone, not the return value.
* The driver has no call for enableStaticNat, which createIpForwardingRule needs first
  (RulesManagerImpl.createStaticNatRule: "Can't do static nat on ip address"). The test sends it through the
  driver's own generic request method (``_sync_request``, the one all its calls use).

IP forwarding rules: createIpForwardingRule and listIpForwardingRules answer an IpForwardingRuleResponse
(ApiResponseHelper.createIpForwardingRuleResponse, called from CreateIpForwardingRuleCmd.execute and
ListIpForwardingRulesCmd.execute) with ``startport``/``endport``, which libcloud reads, not the FirewallRuleResponse
fields listApis documents for them; the simulator answers the same (commands/forwarding.py).
"""
from __future__ import annotations

import base64
import copy
import hashlib
import ipaddress
import struct

import pytest

from cloudstack_simulator import Simulator
from cloudstack_simulator.state import load_scenario

libcloud_cloudstack = pytest.importorskip("libcloud.compute.drivers.cloudstack")
from libcloud.compute.types import KeyPairDoesNotExistError, NodeState, StorageVolumeState  # noqa: E402

CloudStackNodeDriver = libcloud_cloudstack.CloudStackNodeDriver


def make_driver(sim: Simulator):
    driver = CloudStackNodeDriver(sim.api_key, sim.secret_key, url=sim.endpoint, secure=False)
    assert (driver.connection.host, driver.connection.port, driver.path) == ("127.0.0.1", sim.port, "/client/api")
    driver.connection.poll_interval = 0.01   # jobs finish at once (job_seconds=0): no 1 s sleeps between polls
    driver.connection.timeout = 30
    return driver


def without_customized_offerings() -> dict:
    """The advanced scenario without its customized compute offering, which libcloud's list_sizes cannot read."""
    scenario = copy.deepcopy(load_scenario("advanced"))
    scenario["service_offerings"] = [o for o in scenario["service_offerings"] if not o.get("customized")]
    return scenario


@pytest.fixture(scope="module")
def sim():
    with Simulator(scenario=without_customized_offerings(), seed=1) as s:
        yield s


@pytest.fixture(scope="module")
def driver(sim):
    return make_driver(sim)


def ssh_rsa_public_key(comment: str) -> tuple[str, bytes]:
    """A well-formed OpenSSH RSA public key (RFC 4253 wire format), deterministic, and its decoded blob."""
    def string(b: bytes) -> bytes:
        return struct.pack(">I", len(b)) + b
    n = int.from_bytes(hashlib.sha256(comment.encode()).digest() * 8, "big") | (1 << 2047) | 1
    blob = string(b"ssh-rsa") + string((65537).to_bytes(3, "big")) + string(b"\x00" + n.to_bytes(256, "big"))
    return f"ssh-rsa {base64.b64encode(blob).decode()} {comment}", blob


def md5_fingerprint(blob: bytes) -> str:
    """SSHKeysHelper.getPublicKeyFingerprint: MD5 of the decoded key, colon-separated hex."""
    return ":".join(f"{b:02x}" for b in hashlib.md5(blob).digest())


def snapshots_of(driver, volume) -> list:
    """libcloud's list_snapshots, filtered on the volume; an empty listing is ``{}`` and libcloud raises KeyError on
    it (see the module docstring): then the raw answer is checked to be that empty listing."""
    try:
        snaps = driver.list_snapshots()
    except KeyError as e:
        assert e.args == ("snapshot",)
        assert driver._sync_request("listSnapshots") == {}
        return []
    return [s for s in snaps if s.extra["volume_id"] == volume.id]


def test_list_sizes_fails_on_a_customized_offering():
    """4.11 answers a customized compute offering without cpunumber; libcloud's list_sizes indexes it."""
    with Simulator(scenario="advanced", seed=1) as sim:
        driver = make_driver(sim)
        raw = driver._sync_request("listServiceOfferings")["serviceoffering"]
        custom = next(o for o in raw if o["name"] == "custom")
        assert custom["iscustomized"] is True and "cpunumber" not in custom and "memory" not in custom
        try:
            sizes = driver.list_sizes()
        except KeyError as e:   # libcloud 3.x
            assert e.args == ("cpunumber",)
        else:                   # a libcloud that reads it with .get() lists every offering
            assert {s.name for s in sizes} == {o["name"] for o in raw}


def test_catalog(driver):
    zones = {loc.name: loc for loc in driver.list_locations()}
    assert set(zones) == {"zone-1", "zone-2"}
    sizes = {s.name: s for s in driver.list_sizes()}
    assert {n: (s.ram, s.extra["cpu"]) for n, s in sizes.items()} == {"small": (1024, 1), "medium": (4096, 2),
                                                                        "large": (8192, 4)}
    images = driver.list_images(location=zones["zone-1"])
    stemcell = next(i for i in images if i.name == "bosh-stemcell-existing")
    assert stemcell.extra["hypervisor"] == "KVM" and stemcell.extra["os"]
    networks = [n for n in driver.ex_list_networks() if n.zoneid == zones["zone-1"].id]
    by_name = {n.name: n for n in networks}
    assert {"bosh-isolated", "bosh-shared"} <= set(by_name)
    assert by_name["bosh-isolated"].extra["type"] == "Isolated"
    assert by_name["bosh-isolated"].extra["gateway"] == "10.1.0.1"
    assert [g["name"] for g in driver.ex_list_security_groups()] == ["default"]
    assert {t.type for t in driver.ex_list_affinity_group_types()} == {"host anti-affinity", "host affinity"}
    disk_offerings = {d.name: d for d in driver.ex_list_disk_offerings()}
    assert disk_offerings["disk-10"].size == 10 and not disk_offerings["disk-10"].customizable
    assert disk_offerings["custom"].customizable
    assert [v.name for v in driver.ex_list_vpcs()] == ["bosh-vpc"]


def test_lifecycle(sim, driver):
    zone = next(loc for loc in driver.list_locations() if loc.name == "zone-1")
    size = next(s for s in driver.list_sizes() if s.name == "small")
    image = next(i for i in driver.list_images(location=zone) if i.name == "bosh-stemcell-existing")
    network = next(n for n in driver.ex_list_networks() if n.name == "bosh-isolated" and n.zoneid == zone.id)
    assert driver.list_nodes() == []

    # ---- key pairs
    created = driver.create_key_pair("libcloud-created")
    assert created.private_key.startswith("-----BEGIN RSA PRIVATE KEY-----") and created.fingerprint
    material, blob = ssh_rsa_public_key("libcloud@test")
    imported = driver.import_key_pair_from_string("libcloud-imported", material)
    assert imported.fingerprint == md5_fingerprint(blob)
    listed = {k.name: k.fingerprint for k in driver.list_key_pairs()}
    assert listed["libcloud-created"] == created.fingerprint and listed["libcloud-imported"] == imported.fingerprint
    assert driver.get_key_pair("libcloud-imported").fingerprint == imported.fingerprint

    # ---- an affinity group for the node
    anti = next(t for t in driver.ex_list_affinity_group_types() if t.type == "host anti-affinity")
    group = driver.ex_create_affinity_group("libcloud-spread", anti)
    assert [(g.id, g.name, g.type.type) for g in driver.ex_list_affinity_groups()] == \
        [(group.id, "libcloud-spread", "host anti-affinity")]

    # ---- node
    node = driver.create_node(name="libcloud-node", size=size, image=image, location=zone, networks=[network],
                              ex_keyname="libcloud-imported", ex_userdata="#cloud-config\n",
                              ex_affinity_groups=[group], ex_start_vm=True)
    assert node.state == NodeState.RUNNING and node.name == "libcloud-node"
    (private_ip,) = node.private_ips
    assert ipaddress.IPv4Address(private_ip) in ipaddress.IPv4Network("10.1.0.0/24") and node.public_ips == []
    assert (node.extra["key_name"], node.extra["size_id"], node.extra["image_id"], node.extra["zone_id"]) == \
        ("libcloud-imported", size.id, image.id, zone.id)
    assert node.extra["affinity_group"] == [group.id]
    (listed_node,) = driver.list_nodes()
    assert (listed_node.id, listed_node.state, listed_node.private_ips) == (node.id, NodeState.RUNNING, [private_ip])
    assert [g.id for g in driver.ex_list_affinity_groups()] == [group.id]

    # ---- data volume: create, attach, snapshot, detach, destroy
    volume = driver.create_volume(10, "libcloud-data", location=zone)
    assert volume.state == StorageVolumeState.AVAILABLE
    assert driver.attach_volume(node, volume) is True
    on_node = {v.id: v for v in driver.list_volumes(node=node)}
    assert set(on_node) == {volume.id} | {v.id for v in on_node.values() if v.extra["volume_type"] == "ROOT"}
    assert len(on_node) == 2
    data = on_node[volume.id]
    assert (data.extra["instance_id"], data.extra["volume_type"], data.state, data.size) == \
        (node.id, "DATADISK", StorageVolumeState.INUSE, 10 * 1024 ** 3)
    assert data.extra["device_id"] >= 1

    assert snapshots_of(driver, volume) == []
    snapshot = driver.create_volume_snapshot(volume)
    assert snapshot.extra["volume_id"] == volume.id
    assert [s.id for s in snapshots_of(driver, volume)] == [snapshot.id]
    assert driver.destroy_volume_snapshot(snapshot) is True
    assert snapshots_of(driver, volume) == []

    assert driver.detach_volume(volume) is True
    assert volume.id not in {v.id for v in driver.list_volumes(node=node)}
    detached = driver.ex_get_volume(volume.id)
    assert detached.state == StorageVolumeState.AVAILABLE and detached.extra["instance_id"] is None
    assert driver.destroy_volume(volume) is True
    assert volume.id not in {v.id for v in driver.list_volumes()}

    # ---- public IP + port forwarding
    before = {a.address for a in driver.ex_list_public_ips()}
    pf_ip = driver.ex_allocate_public_ip(network_id=network.id, location=zone)
    assert pf_ip.address not in before
    listed_ip = next(a for a in driver.ex_list_public_ips() if a.id == pf_ip.id)
    assert (listed_ip.address, listed_ip.associated_network_id) == (pf_ip.address, network.id)
    pf_rule = driver.ex_create_port_forwarding_rule(node, pf_ip, private_port=22, public_port=2222, protocol="TCP")
    (pf_listed,) = driver.ex_list_port_forwarding_rules()
    assert (pf_listed.id, pf_listed.node.id, pf_listed.address.address, pf_listed.protocol) == \
        (pf_rule.id, node.id, pf_ip.address, "tcp")
    assert (pf_listed.public_port, pf_listed.private_port) == ("2222", "22")
    (listed_node,) = driver.list_nodes()
    assert listed_node.public_ips == [pf_ip.address]
    assert [r.id for r in listed_node.extra["port_forwarding_rules"]] == [pf_rule.id]

    # ---- a second public IP, static NAT to the node, and an IP forwarding rule on it
    nat_ip = driver.ex_allocate_public_ip(network_id=network.id, location=zone)
    assert driver._sync_request("enableStaticNat", params={"ipaddressid": nat_ip.id,
                                                           "virtualmachineid": node.id}) == {"success": True}
    ip_rule = driver.ex_create_ip_forwarding_rule(node, nat_ip, "tcp", 8000, 8010)
    (ip_listed,) = driver.ex_list_ip_forwarding_rules()
    assert (ip_listed.id, ip_listed.node.id, ip_listed.address.address) == (ip_rule.id, node.id, nat_ip.address)
    assert (ip_listed.protocol, ip_listed.start_port, ip_listed.end_port) == ("tcp", 8000, 8010)
    got = driver.ex_get_node(node.id)
    assert sorted(got.public_ips) == sorted([pf_ip.address, nat_ip.address])
    assert [r.id for r in got.extra["ip_forwarding_rules"]] == [ip_rule.id]
    assert [r.id for r in got.extra["port_forwarding_rules"]] == [pf_rule.id]

    driver.ex_delete_ip_forwarding_rule(node, ip_rule)
    assert driver.ex_list_ip_forwarding_rules() == []
    assert driver.ex_delete_port_forwarding_rule(node, pf_rule) is True
    assert driver.ex_list_port_forwarding_rules() == []
    assert driver.ex_release_public_ip(nat_ip) is True   # also ends its static NAT
    assert driver.ex_release_public_ip(pf_ip) is True
    assert {a.address for a in driver.ex_list_public_ips()} == before
    assert driver.list_nodes()[0].public_ips == []

    # ---- reboot, destroy
    assert driver.reboot_node(node) is True
    assert [(n.id, n.state) for n in driver.list_nodes()] == [(node.id, NodeState.RUNNING)]
    assert any(c.lower() == "rebootvirtualmachine" for c, _ in sim.request_log)
    # expunged, which also ends its affinity group membership (AffinityGroupServiceImpl.postStateTransitionEvent)
    assert driver.destroy_node(node, ex_expunge=True) is True
    assert driver.list_nodes() == []
    assert node.id not in sim.inventory()["virtualmachines"]
    assert driver.ex_delete_affinity_group(group) is True
    assert driver.ex_list_affinity_groups() == []

    # ---- key pairs go
    for pair in (created, imported):
        driver.delete_key_pair(pair)   # returns False: it compares "success" with the string "true" (docstring)
        with pytest.raises(KeyPairDoesNotExistError):
            driver.get_key_pair(pair.name)
    assert {k.name for k in driver.list_key_pairs()} == {"bosh"}
