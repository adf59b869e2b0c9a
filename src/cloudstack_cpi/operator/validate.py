"""``cloudstack-cpi validate CONFIG``: check a CPI config and the cloud it points at.

Each check says what it looked at; each problem says, in plain words, what to
change.  Nothing is created in the cloud.
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

from ..cloudstack.errors import CloudStackError
from ..errors import BoshError
from ..log import Logger

if TYPE_CHECKING:
    from ..cloudstack.gateway import Gateway
    from ..cloudstack.models import Zone


@dataclass
class Finding:
    ok: bool
    check: str
    detail: str
    fix: str = ""


class Validator:
    def __init__(self, config_path: str, *, log: Logger | None = None,
                 progress: Callable[[str], None] | None = None) -> None:
        self.config_path = config_path
        self.log = log or Logger(level="warning")
        # Before each step that waits for the cloud, a line on stderr (the report goes to stdout at the end), so
        # that a silent endpoint shows what is being waited for and for how long at most.
        self.progress = progress or _to_stderr
        self.findings: list[Finding] = []

    def run(self) -> list[Finding]:
        from .. import config as config_module

        try:
            cfg = config_module.load(self.config_path)
        except BoshError as err:
            self._fail("config file", err.message, _config_fix(err.message))
            return self.findings
        self._pass("config file", f"{self.config_path} is valid")
        self.cfg = cfg
        self._agent_settings()
        cloud = self._gateway()
        if cloud is None:
            return self.findings
        try:
            if not self._credentials(cloud):
                return self.findings
            if not self._project(cloud):
                return self.findings
            zone = self._zone(cloud)
            self._offerings(cloud)
            self._key_pair(cloud)
            if zone is not None:
                self._security_groups(cloud, zone)
                self._networks(cloud, zone)
            self._upload_support(cloud)
            self._expunge_permission(cloud)
        finally:
            cloud.client.close()
        return self.findings

    # -- checks ------------------------------------------------------------------

    def _agent_settings(self) -> None:
        if not self.cfg.agent.mbus:
            self._fail("agent.mbus", "not set: new VMs' agents would not know their message bus",
                       "Set agent.mbus (create-env: https://mbus:PASSWORD@0.0.0.0:6868; director: nats://IP:4222).")
        else:
            self._pass("agent.mbus", "set")

    def _gateway(self) -> Gateway | None:
        from ..cloudstack.client import Client, RetryPolicy
        from ..cloudstack.gateway import Gateway

        cs = self.cfg.cloudstack
        try:
            client = Client(cs.endpoint, cs.api_key, cs.secret_access_key.get_secret_value(), log=self.log,
                            verify=not cs.skip_verify_ssl, ca_cert=cs.ca_cert, connect_timeout=cs.timeout.http_connect,
                            read_timeout=cs.timeout.http_read, retry=RetryPolicy(attempts=2))
        except Exception as exc:  # noqa: BLE001 - report, don't crash
            self._fail("client", str(exc), "Check cloudstack.ca_cert holds PEM text.")
            return None
        return Gateway(client, cs.timeout)

    def _credentials(self, cloud: Gateway) -> bool:
        self._waiting(cloud, f"Connecting to {self.cfg.cloudstack.endpoint}")
        try:
            capabilities = cloud.account.capabilities()
        except CloudStackError as err:
            if err.http_status == 401:
                self._fail("credentials", "the cloud rejected the API key or its signature",
                           "Check cloudstack.api_key and cloudstack.secret_access_key "
                           "(a user's keys, not the account's name).")
            elif err.kind == "tls":  # the certificate was refused: a trust matter, not reachability
                self._fail("endpoint", err.errortext,
                           "Give the CA in cloudstack.ca_cert, or (testing only) set cloudstack.skip_verify_ssl: true.")
            elif err.kind == "transport":
                self._fail("endpoint", err.errortext, "Check cloudstack.endpoint and that this machine can reach it.")
            else:
                self._fail("credentials", str(err), "Check the endpoint is a CloudStack API (…/client/api).")
            return False
        self._pass("credentials", f"accepted by CloudStack {capabilities.version} at {self.cfg.cloudstack.endpoint}")
        self.version = capabilities.version
        return True

    def _zone(self, cloud: Gateway) -> Zone | None:
        from ..lookups import pick

        wanted = self.cfg.cloudstack.default_zone
        self._waiting(cloud, "Listing zones")
        zones = cloud.catalogue.zones()
        if not wanted:
            names = ", ".join(z.name for z in zones)
            self._fail("default_zone", "not set", f"Set cloudstack.default_zone to one of: {names}.")
            return None
        return self._lookup("default_zone", lambda: pick(zones, wanted, kind="Zone"),
                            lambda z: f"'{z.name}' ({z.network_type} zone"
                                      f"{', security groups' if z.security_groups_enabled else ''})",
                            "Set cloudstack.default_zone to an existing zone's name or id.")

    def _offerings(self, cloud: Gateway) -> None:
        from ..lookups import pick

        offers = self.cfg.cloudstack.default_offer
        self._waiting(cloud, "Listing disk and compute offerings")
        disk_offerings = cloud.catalogue.disk_offerings()
        for name, wanted in (("default_offer.disk", offers.disk),
                             ("default_offer.ephemeral_disk", offers.ephemeral_disk),
                             ("default_offer.custom_disk", offers.custom_disk)):
            if wanted:
                self._lookup(name, lambda w=wanted: pick(disk_offerings, w, kind="Disk offering"),
                             lambda o: f"'{o.name}'" + (" (customized)" if o.customized else ""),
                             f"Set cloudstack.{name} to an existing disk offering.")
        compute = cloud.catalogue.service_offerings()
        for name, wanted in (("default_offer.compute", offers.compute),
                             ("default_offer.custom_compute", offers.custom_compute)):
            if wanted:
                self._lookup(name, lambda w=wanted: pick(compute, w, kind="Compute offering"),
                             lambda o: f"'{o.name}'", f"Set cloudstack.{name} to an existing compute offering.")

    def _project(self, cloud: Gateway) -> bool:
        """cloudstack.project: a project this account belongs to; the checks after this one look inside it, as the
        CPI will (listProjects shows a user only the projects it is a member of)."""
        from ..projects import resolve

        wanted = self.cfg.cloudstack.project
        if not wanted:
            return True
        fix = ("Set cloudstack.project to a project this account belongs to (listProjects shows them), or remove it "
               "to use the account's own resources.")
        self._waiting(cloud, f"Looking for project '{wanted}'")
        try:
            project_id = resolve(cloud, wanted)
            found = cloud.account.projects(project_id=project_id)
        except BoshError as err:
            self._fail("project", err.message, fix)
            return False
        except CloudStackError as err:
            self._fail("project", str(err), fix)
            return False
        if not found:
            self._fail("project", f"project '{wanted}' is not visible to this account", fix)
            return False
        cloud.client.project_id = project_id
        state = found[0].state
        if state != "Active":
            self._fail("project", f"project '{wanted}' is {state}: CloudStack refuses new resources in it",
                       "Activate the project (activateProject) or choose another.")
            return False
        self._pass("project", f"project '{wanted}' ({project_id}): the checks below look inside it")
        return True

    def _key_pair(self, cloud: Gateway) -> None:
        wanted = self.cfg.cloudstack.default_key_name
        if not wanted:
            self._pass("default_key_name", "not set: VMs get no SSH key (bosh ssh still works through the agent)")
            return
        self._waiting(cloud, f"Looking for key pair '{wanted}'")
        found = [k for k in cloud.catalogue.key_pairs() if k.name == wanted]
        if found:
            self._pass("default_key_name", f"key pair '{wanted}' exists")
        else:
            self._fail("default_key_name", f"key pair '{wanted}' not found",
                       "Register it (registerSSHKeyPair) or change cloudstack.default_key_name.")

    def _security_groups(self, cloud: Gateway, zone: Zone) -> None:
        from ..lookups import pick

        wanted = self.cfg.cloudstack.default_security_groups
        if not wanted:
            return
        if not zone.security_groups_enabled:
            self._fail("default_security_groups", f"zone '{zone.name}' has no security groups",
                       "Remove cloudstack.default_security_groups, or use a zone with security groups.")
            return
        self._waiting(cloud, "Listing security groups")
        groups = cloud.networks.security_groups()
        for name in wanted:
            self._lookup(f"security group {name}", lambda n=name: pick(groups, n, kind="Security group"),
                         lambda g: "exists", "Create it or remove it from cloudstack.default_security_groups.")

    def _networks(self, cloud: Gateway, zone: Zone) -> None:
        if zone.is_basic:
            self._pass("networks", "basic zone: one guest network, chosen by CloudStack")
            return
        self._waiting(cloud, f"Listing networks in zone '{zone.name}'")
        usable = [n.name for n in cloud.networks.in_zone(zone.id) if n.can_deploy]
        if usable:
            self._pass("networks", "usable in network cloud_properties.name: " + ", ".join(sorted(usable)))
        else:
            self._fail("networks", f"no network to deploy VMs on in zone '{zone.name}'",
                       "Create an isolated or shared network, or ask the cloud's operator for one.")

    def _upload_support(self, cloud: Gateway) -> None:
        strategy = self.cfg.cloudstack.stemcell.upload_strategy
        if strategy in ("post", "auto") and not self.cfg.cloudstack.stemcell.url.base_url:
            self._waiting(cloud, "Asking whether the cloud offers getUploadParamsForTemplate")
            if cloud.account.offers_api("getUploadParamsForTemplate") is False:
                self._fail("stemcell upload",
                           "this cloud does not offer getUploadParamsForTemplate (CloudStack < 4.6?)",
                           "Use cloudstack.stemcell.upload_strategy: url (with stemcell.url.*) or volume.")
            else:
                self._pass("stemcell upload", "direct POST upload (getUploadParamsForTemplate)")
        else:
            self._pass("stemcell upload", f"strategy '{strategy}'")

    def _expunge_permission(self, cloud: Gateway) -> None:
        """May delete_vm expunge?  CloudStack lets admins, and users only with allow.user.expunge.recover.vm."""
        self._waiting(cloud, "Asking whether this account may expunge VMs")
        # allowuserexpungerecovervm is the setting's value for this account whatever its role (listCapabilities);
        # listConfigurations, which would show it too, is for admins only.
        capabilities = cloud.account.capabilities()
        if capabilities.user_may_expunge:
            why: str | None = "allow.user.expunge.recover.vm is true for this account"
        else:
            # A user lists only its own account (unless allow.user.view.all.domain.accounts); an admin its own too.
            admin = cloud.account.is_admin() and not capabilities.users_see_all_accounts
            why = "an admin account" if admin else None
        expunge = self.cfg.cloudstack.expunge_vm
        unused = "" if expunge else " (cloudstack.expunge_vm is false: delete_vm does not ask)"
        if why:
            self._pass("expunge permission", f"this account may expunge VMs ({why}){unused}")
            return
        detail = ("this account may not expunge VMs (a user account, and allow.user.expunge.recover.vm is false): "
                  "deleted VMs stay Destroyed and keep their IP addresses, static ones included, until CloudStack "
                  "expunges them after its expunge.delay")
        if not expunge:
            self._pass("expunge permission", detail + unused)
            return
        self._fail("expunge permission", f"{detail}; delete_vm will destroy them without expunging",
                   "Ask the cloud's operator to set allow.user.expunge.recover.vm to true for this account (or use "
                   "an admin account's keys); or set cloudstack.expunge_vm: false to accept that deleted VMs keep "
                   "their IPs until expunge.delay.")

    # -- reporting ---------------------------------------------------------------

    def _waiting(self, cloud: Gateway, what: str) -> None:
        """Say what comes next and the longest it can take: what is left of the client's API deadline."""
        self.progress(f"{what} (up to {round(cloud.client.api_time_left, 1):g} s) ...")

    def _lookup(self, check: str, find: Callable, describe: Callable, fix: str):
        try:
            found = find()
        except BoshError as err:
            self._fail(check, err.message, fix)
            return None
        self._pass(check, describe(found))
        return found

    def _pass(self, check: str, detail: str) -> None:
        self.findings.append(Finding(True, check, detail))

    def _fail(self, check: str, detail: str, fix: str) -> None:
        self.findings.append(Finding(False, check, detail, fix))


def _to_stderr(line: str) -> None:
    sys.stderr.write(line + "\n")
    sys.stderr.flush()


def render(findings: list[Finding]) -> str:
    lines = []
    for f in findings:
        lines.append(f"{'ok  ' if f.ok else 'FAIL'}  {f.check}: {f.detail}")
        if f.fix:
            lines.append(f"      fix: {f.fix}")
    problems = sum(not f.ok for f in findings)
    lines.append("valid: the cloud is ready for BOSH" if not problems else f"{problems} problem(s) found")
    return "\n".join(lines)


def _config_fix(message: str) -> str:
    """The fix for a config-file failure: what to change, without claiming a property where none is named."""
    if "Invalid CPI config" in message:
        return ("Fix each property the message names (docs/configuration.md lists them all); an unknown property "
                "is a typo or a key this CPI does not have.")
    if "file not found" in message:
        return "Pass the path of the rendered config/cpi.json (or your own JSON config)."
    if "YAML" in message:
        return "Write the config as JSON: the same properties as a JSON object (see docs/examples/)."
    return "Fix the file at the line and column given: it must be one JSON object (see docs/examples/)."
