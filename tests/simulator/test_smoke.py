def test_list_zones_and_deploy(api, sim):
    zones = api.list("listZones", "zone")
    assert {z["name"] for z in zones} == {"zone-1", "zone-2"}
    vm = api.deploy(name="vm-1")
    assert vm["state"] == "Running"
    assert vm["nic"][0]["ipaddress"].startswith("10.1.0.")
    assert sim.inventory()["virtualmachines"] == [vm["id"]]
