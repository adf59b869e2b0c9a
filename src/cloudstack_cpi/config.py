"""The CPI's configuration file (``config/cpi.json`` rendered by the BOSH job).

Property names follow the Go CloudStack CPI release and bosh-deployment's
``cloudstack/cpi.yml`` so that operators can switch releases without renaming
anything.  Keys of the request ``context`` that name ``cloudstack`` properties
override the file (multi-CPI: the director merges cpi-config properties into
the context).  Errors name the field path, never its value.
"""


import json
import re
from typing import Any

from .errors import CpiError
from .schema import (
    Anything,
    Choice,
    Flag,
    Integer,
    Mapping,
    Nested,
    Number,
    Problem,
    Secret,
    SecretText,
    Section,
    Text,
    TextList,
    parse as parse_section,
)

# Context keys the director itself sends; everything else in the context is cpi-config.
DIRECTOR_CONTEXT_KEYS = frozenset({"director_uuid", "request_id", "vm"})

# Sections refuse unknown keys (a typo must not silently fall back to a default), and flags are strict so that
# "yes" or "false" in quotes is refused rather than read (see schema.py for why this is not a pydantic model).

GO_CPI_COMPAT = "Accepted for compatibility with the Go CPI release; ignored."


class Timeouts(Section):
    """Seconds to wait for CloudStack, per operation."""

    global_: float = Number(600, gt=0, key="global", doc="Any async job not listed below.")
    create_vm: float = Number(900, gt=0, doc="deployVirtualMachine until Running.")
    delete_vm: float = Number(600, gt=0, doc="destroyVirtualMachine.")
    reboot_vm: float = Number(600, gt=0, doc="rebootVirtualMachine / startVirtualMachine.")
    stop_vm: float = Number(600, gt=0, doc="stopVirtualMachine.")
    create_volume: float = Number(600, gt=0, doc="createVolume.")
    delete_volume: float = Number(300, gt=0, doc="deleteVolume.")
    resize_volume: float = Number(900, gt=0, doc="resizeVolume.")
    attach_volume: float = Number(600, gt=0, doc="attachVolume.")
    detach_volume: float = Number(600, gt=0, doc="detachVolume.")
    snapshot_volume: float = Number(3600, gt=0, doc="createSnapshot.")
    delete_snapshot_volume: float = Number(600, gt=0, doc="deleteSnapshot.")
    poll_template: float = Number(3600, gt=0, doc="A template upload, download or copy until Download Complete.")
    http_connect: float = Number(10, gt=0, doc="Connecting to the API endpoint.")
    http_read: float = Number(120, gt=0, doc="Waiting for one API answer.")


class DefaultOffers(Section):
    """Offerings used when cloud_properties name none."""

    disk: str | None = Text(None, doc="Disk offering for persistent disks.")
    ephemeral_disk: str | None = Text(None, doc="Disk offering for ephemeral disks.")
    custom_disk: str = Text("shared.custom", doc="Customized disk offering used when a size must be chosen freely.")
    compute: str | None = Text(None, doc="Compute offering when a VM type names none.")
    custom_compute: str | None = Text(
        None, doc="Customized compute offering used by calculate_vm_cloud_properties for exact sizes."
    )


class UrlUpload(Section):
    """The ``url`` upload strategy: CloudStack downloads the image over HTTP."""

    base_url: str | None = Text(
        None, doc="URL of a web server that already serves the images; the file name is appended."
    )
    serve_directory: str | None = Text(None, doc="Where to copy the image so that base_url serves it.")
    listen_host: str = Text("0.0.0.0", doc="Address the built-in HTTP server binds to.")
    listen_port: int = Integer(0, ge=0, le=65535, doc="Port of the built-in server (0: any free port).")
    advertise_host: str | None = Text(
        None, doc="Host name or IP CloudStack's secondary storage uses to reach the built-in server."
    )


class VolumeUpload(Section):
    """The ``volume`` strategy: write the image onto a volume attached to the VM the CPI runs on."""

    vm_id: str | None = Text(
        None, doc="The CloudStack id of the VM running the CPI (default: asked from the metadata service)."
    )
    device_dir: str = Text("/dev", doc="Where the attached volume's block device appears.")
    metadata_url: str = Text(
        "http://data-server./latest/meta-data/vm-id", doc="Metadata service URL that answers this VM's id."
    )
    disk_offering: str | None = Text(
        None, doc="Disk offering for the work volume (default: default_offer.custom_disk)."
    )
    device_timeout: float = Number(
        120, gt=0, doc="Seconds to wait for the attached work volume's block device to appear."
    )


class StemcellConfig(Section):
    """How stemcell images become CloudStack templates (see docs/stemcells.md)."""

    upload_strategy: str = Choice(
        "auto", options=("auto", "post", "url", "volume"),
        doc="How images reach CloudStack: auto picks post, or url when url.base_url is set."
    )
    os_type: str | None = Text(
        None, doc="OS type description (listOsTypes) for new templates; default: mapped from the stemcell's os_distro."
    )
    requires_hvm: bool = Flag(True, doc="Register templates as requiring HVM.")
    public_visibility: bool = Flag(False, doc="Make templates public.")
    zones: list[str] = TextList(doc="Zones where templates must be usable (default: default_zone).")
    url: UrlUpload = Nested(UrlUpload)
    volume: VolumeUpload = Nested(VolumeUpload)


def _http_endpoint(value: str) -> str:
    if not value.startswith(("http://", "https://")):
        raise ValueError("must be an http:// or https:// URL")
    return value.rstrip("/")


def _pem_text(value: str) -> str:
    # TLS wants a CA file, but the job renders the certificate itself into cpi.json: a path here is a mistake
    # that would otherwise surface as a TLS failure far from its cause.
    if value and "-----BEGIN" not in value:
        if re.match(r"^\s*(/|~|\.{1,2}/|[A-Za-z]:\\)", value):
            raise ValueError("must be PEM text (-----BEGIN CERTIFICATE-----...), not a file path: put the "
                             "certificate itself in the config, not where it is stored")
        raise ValueError("must be PEM text (-----BEGIN CERTIFICATE-----...), and this has no PEM block")
    return value


class CloudStackConfig(Section):
    """The CloudStack API and how the CPI uses it (job properties `cloudstack.*`)."""

    endpoint: str = Text(doc="API endpoint, e.g. https://cloud.example.com/client/api.", check=_http_endpoint)
    api_key: str = Text(doc="API key of the CloudStack user the CPI acts as.")
    secret_access_key: Secret = SecretText(doc="Secret key of that user.")
    default_zone: str | None = Text(None, doc="Zone (name or id) when neither availability_zone nor disks decide.")
    project: str | None = Text(None, doc=(
        "CloudStack project (name or id) that owns what the CPI creates and is the scope of everything it lists; "
        "none: the account's own resources. An id saves one listProjects request per call."))
    default_key_name: str | None = Text(None, doc="SSH key pair installed for user vcap on new VMs.")
    private_key: str | None = Text(None, doc=GO_CPI_COMPAT)
    ca_cert: str | None = Text(None, doc="PEM CA certificate(s) to verify the endpoint with.", check=_pem_text)
    skip_verify_ssl: bool = Flag(False, doc="Do not verify the endpoint's TLS certificate (testing only).")
    expunge_vm: bool = Flag(True, doc=(
        "Expunge VMs on delete_vm so their IPs are free at once. Needs an admin account or the cloud setting "
        "allow.user.expunge.recover.vm; when CloudStack refuses, the VM is destroyed without expunging and keeps "
        "its IPs until expunge.delay has passed."))
    default_security_groups: list[str] = TextList(
        doc="Security groups (names or ids) for VMs in zones with security groups."
    )
    enable_auto_anti_affinity: bool = Flag(
        False, doc="Put the VMs of each BOSH instance group into their own anti-affinity group."
    )
    auto_anti_affinity_type: str = Text("host anti-affinity", doc="Affinity group type for the automatic groups.")
    timeout: Timeouts = Nested(Timeouts)
    default_offer: DefaultOffers = Nested(DefaultOffers)
    stemcell: StemcellConfig = Nested(StemcellConfig)
    user_data_limit: int = Integer(
        32768, ge=1024, doc="Largest base64 user data the cloud accepts (its vm.userdata.max.length)."
    )
    api_retries: int = Integer(6, ge=1, le=20, doc="Tries in all for API requests that are safe to repeat.")
    log_level: str = Choice("info", options=("debug", "info", "warning", "error"), doc="Detail of the stderr log.")
    clean_disk: Any = Anything(doc=GO_CPI_COMPAT + " (Its orphaned-disk cleaner; delete_vm removes "
                                                   "ephemeral disks itself.)")
    interval_clean_disk: Any = Anything(doc=GO_CPI_COMPAT)
    calculate: Any = Anything(doc=GO_CPI_COMPAT + " (Offering tag filters of its "
                                                  "calculate_vm_cloud_properties.)")


class Blobstore(Section):
    """Blobstore settings handed to the agent."""

    provider: str = Text(doc="Blobstore provider the agent uses (dav, s3, local, ...).")
    options: dict[str, Any] = Mapping(doc="Provider options (endpoint, user, password, ...).")


class AgentConfig(Section):
    """Settings handed to every new VM's agent (job properties `agent.*`)."""

    mbus: str | None = Text(None, doc="Message bus URL the agent listens on or connects to.")
    ntp: list[str] = TextList(doc="NTP servers for the agent.")
    blobstore: Blobstore | None = Nested(Blobstore, optional=True,
                                         doc="Blobstore settings (env.bosh.blobstores takes precedence).")
    env_service: Any = Anything(doc=GO_CPI_COMPAT)


class Config(Section):
    """The whole config file."""

    cloudstack: CloudStackConfig = Nested(CloudStackConfig, required=True)
    agent: AgentConfig = Nested(AgentConfig)
    ntp: list[str] = TextList(doc="NTP servers (legacy place; agent.ntp wins).")
    registry: Any = Anything(doc=GO_CPI_COMPAT + " (The registry is gone: settings travel as user data.)")
    director: Any = Anything(doc=GO_CPI_COMPAT + " (director.name, used by its disk cleaner.)")

    @property
    def agent_ntp(self) -> list[str]:
        return self.agent.ntp or self.ntp


def load(path: str, context: dict | None = None) -> Config:
    """Read the config file and apply the request context's cpi-config overrides."""
    try:
        with open(path, encoding="utf-8") as handle:
            raw = json.load(handle)
    except FileNotFoundError:
        raise CpiError(f"Reading CPI config '{path}': file not found") from None
    except OSError as exc:
        raise CpiError(f"Reading CPI config '{path}': {exc.strerror}") from None
    except UnicodeDecodeError:
        raise CpiError(f"Reading CPI config '{path}': not UTF-8 text; the CPI reads a JSON file") from None
    except json.JSONDecodeError as exc:
        raise CpiError(f"Reading CPI config '{path}': {_json_problem(exc)}") from None
    return parse(raw, context, source=path)


def parse(raw: Any, context: dict | None = None, *, source: str = "config") -> Config:
    if not isinstance(raw, dict):
        raise CpiError(f"Invalid CPI config '{source}': expected a JSON object")
    overrides = {k: v for k, v in (context or {}).items() if k not in DIRECTOR_CONTEXT_KEYS}
    if overrides:
        cloudstack = raw.get("cloudstack")
        merged = dict(cloudstack) if isinstance(cloudstack, dict) else {}
        merged.update(overrides)
        raw = {**raw, "cloudstack": merged}
    try:
        config: Config = parse_section(Config, raw)
    except Problem as problem:
        raise CpiError(f"Invalid CPI config '{source}': {problem.message}") from None
    return config


_YAML_LINE = re.compile(r"^\s*(---|[A-Za-z_][\w.-]*\s*:(\s|$)|- )")


def _json_problem(exc: json.JSONDecodeError) -> str:
    """What is wrong with the text, with line and column; YAML is named as such (the job renders JSON)."""
    first = next((line for line in exc.doc.splitlines() if line.strip() and not line.lstrip().startswith("#")), "")
    if _YAML_LINE.match(first):
        return ("this looks like YAML, but the CPI reads JSON (the BOSH job renders config/cpi.json as JSON; "
                "outside BOSH, write the same properties as a JSON object)")
    return f"not valid JSON at line {exc.lineno} column {exc.colno}: {exc.msg}"
