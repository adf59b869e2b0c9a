"""The CPI's configuration file (``config/cpi.json`` rendered by the BOSH job).

Property names follow the Go CloudStack CPI release and bosh-deployment's
``cloudstack/cpi.yml`` so that operators can switch releases without renaming
anything.  Keys of the request ``context`` that name ``cloudstack`` properties
override the file (multi-CPI: the director merges cpi-config properties into
the context).  Errors name the field path, never its value.
"""


import difflib
import json
import re
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, SecretStr, StrictBool, ValidationError, field_validator

from .errors import CpiError

# Context keys the director itself sends; everything else in the context is cpi-config.
DIRECTOR_CONTEXT_KEYS = frozenset({"director_uuid", "request_id", "vm"})


class _Model(BaseModel):
    # Unknown keys are refused (a typo must not silently fall back to a default); booleans are strict so that
    # "yes" or "false" in quotes is refused rather than read.
    model_config = ConfigDict(extra="forbid", frozen=True, defer_build=True)


GO_CPI_COMPAT = "Accepted for compatibility with the Go CPI release; ignored."


class Timeouts(_Model):
    """Seconds to wait for CloudStack, per operation."""

    global_: float = Field(600, alias="global", gt=0, description="Any async job not listed below.")
    create_vm: float = Field(900, gt=0, description="deployVirtualMachine until Running.")
    delete_vm: float = Field(600, gt=0, description="destroyVirtualMachine.")
    reboot_vm: float = Field(600, gt=0, description="rebootVirtualMachine / startVirtualMachine.")
    stop_vm: float = Field(600, gt=0, description="stopVirtualMachine.")
    create_volume: float = Field(600, gt=0, description="createVolume.")
    delete_volume: float = Field(300, gt=0, description="deleteVolume.")
    resize_volume: float = Field(900, gt=0, description="resizeVolume.")
    attach_volume: float = Field(600, gt=0, description="attachVolume.")
    detach_volume: float = Field(600, gt=0, description="detachVolume.")
    snapshot_volume: float = Field(3600, gt=0, description="createSnapshot.")
    delete_snapshot_volume: float = Field(600, gt=0, description="deleteSnapshot.")
    poll_template: float = Field(3600, gt=0, description="A template upload, download or copy until Download Complete.")
    http_connect: float = Field(10, gt=0, description="Connecting to the API endpoint.")
    http_read: float = Field(120, gt=0, description="Waiting for one API answer.")

    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True, defer_build=True)


class DefaultOffers(_Model):
    """Offerings used when cloud_properties name none."""

    disk: str | None = Field(None, description="Disk offering for persistent disks.")
    ephemeral_disk: str | None = Field(None, description="Disk offering for ephemeral disks.")
    custom_disk: str = Field("shared.custom", description="Customized disk offering used when a size must be chosen freely.")
    compute: str | None = Field(None, description="Compute offering when a VM type names none.")
    custom_compute: str | None = Field(
        None, description="Customized compute offering used by calculate_vm_cloud_properties for exact sizes."
    )


class UrlUpload(_Model):
    """The ``url`` upload strategy: CloudStack downloads the image over HTTP."""

    base_url: str | None = Field(
        None, description="URL of a web server that already serves the images; the file name is appended."
    )
    serve_directory: str | None = Field(None, description="Where to copy the image so that base_url serves it.")
    listen_host: str = Field("0.0.0.0", description="Address the built-in HTTP server binds to.")
    listen_port: int = Field(0, ge=0, le=65535, description="Port of the built-in server (0: any free port).")
    advertise_host: str | None = Field(
        None, description="Host name or IP CloudStack's secondary storage uses to reach the built-in server."
    )


class VolumeUpload(_Model):
    """The ``volume`` strategy: write the image onto a volume attached to the VM the CPI runs on."""

    vm_id: str | None = Field(None, description="The CloudStack id of the VM running the CPI (default: asked from the metadata service).")
    device_dir: str = Field("/dev", description="Where the attached volume's block device appears.")
    metadata_url: str = Field(
        "http://data-server./latest/meta-data/vm-id", description="Metadata service URL that answers this VM's id."
    )
    disk_offering: str | None = Field(None, description="Disk offering for the work volume (default: default_offer.custom_disk).")
    device_timeout: float = Field(120, gt=0, description="Seconds to wait for the attached work volume's block device to appear.")


class StemcellConfig(_Model):
    """How stemcell images become CloudStack templates (see docs/stemcells.md)."""

    upload_strategy: Literal["auto", "post", "url", "volume"] = Field(
        "auto", description="How images reach CloudStack: auto picks post, or url when url.base_url is set."
    )
    os_type: str | None = Field(
        None, description="OS type description (listOsTypes) for new templates; default: mapped from the stemcell's os_distro."
    )
    requires_hvm: StrictBool = Field(True, description="Register templates as requiring HVM.")
    public_visibility: StrictBool = Field(False, description="Make templates public.")
    zones: list[str] = Field(default_factory=list, description="Zones where templates must be usable (default: default_zone).")
    url: UrlUpload = Field(default_factory=UrlUpload)
    volume: VolumeUpload = Field(default_factory=VolumeUpload)


class CloudStackConfig(_Model):
    """The CloudStack API and how the CPI uses it (job properties `cloudstack.*`)."""

    endpoint: str = Field(description="API endpoint, e.g. https://cloud.example.com/client/api.")
    api_key: str = Field(description="API key of the CloudStack user the CPI acts as.")
    secret_access_key: SecretStr = Field(description="Secret key of that user.")
    default_zone: str | None = Field(None, description="Zone (name or id) when neither availability_zone nor disks decide.")
    default_key_name: str | None = Field(None, description="SSH key pair installed for user vcap on new VMs.")
    private_key: str | None = Field(None, description=GO_CPI_COMPAT)
    ca_cert: str | None = Field(None, description="PEM CA certificate(s) to verify the endpoint with.")
    skip_verify_ssl: StrictBool = Field(False, description="Do not verify the endpoint's TLS certificate (testing only).")
    expunge_vm: StrictBool = Field(True, description=(
        "Expunge VMs on delete_vm so their IPs are free at once. Needs an admin account or the cloud setting "
        "allow.user.expunge.recover.vm; when CloudStack refuses, the VM is destroyed without expunging and keeps "
        "its IPs until expunge.delay has passed."))
    default_security_groups: list[str] = Field(
        default_factory=list, description="Security groups (names or ids) for VMs in zones with security groups."
    )
    enable_auto_anti_affinity: StrictBool = Field(
        False, description="Put the VMs of each BOSH instance group into their own anti-affinity group."
    )
    auto_anti_affinity_type: str = Field("host anti-affinity", description="Affinity group type for the automatic groups.")
    timeout: Timeouts = Field(default_factory=Timeouts)
    default_offer: DefaultOffers = Field(default_factory=DefaultOffers)
    stemcell: StemcellConfig = Field(default_factory=StemcellConfig)
    user_data_limit: int = Field(
        32768, ge=1024, description="Largest base64 user data the cloud accepts (its vm.userdata.max.length)."
    )
    api_retries: int = Field(6, ge=1, le=20, description="Tries in all for API requests that are safe to repeat.")
    log_level: Literal["debug", "info", "warning", "error"] = Field("info", description="Detail of the stderr log.")
    clean_disk: Any = Field(None, description=GO_CPI_COMPAT + " (Its orphaned-disk cleaner; delete_vm removes "
                                                              "ephemeral disks itself.)")
    interval_clean_disk: Any = Field(None, description=GO_CPI_COMPAT)
    calculate: Any = Field(None, description=GO_CPI_COMPAT + " (Offering tag filters of its "
                                                             "calculate_vm_cloud_properties.)")

    @field_validator("endpoint")
    @classmethod
    def _http_endpoint(cls, value: str) -> str:
        if not value.startswith(("http://", "https://")):
            raise ValueError("must be an http:// or https:// URL")
        return value.rstrip("/")

    @field_validator("ca_cert")
    @classmethod
    def _pem_text(cls, value: str | None) -> str | None:
        # requests wants a file, but the job renders the certificate itself into cpi.json: a path here is a mistake
        # that would otherwise surface as a TLS failure far from its cause.
        if value and "-----BEGIN" not in value:
            if re.match(r"^\s*(/|~|\.{1,2}/|[A-Za-z]:\\)", value):
                raise ValueError("must be PEM text (-----BEGIN CERTIFICATE-----...), not a file path: put the "
                                 "certificate itself in the config, not where it is stored")
            raise ValueError("must be PEM text (-----BEGIN CERTIFICATE-----...), and this has no PEM block")
        return value


class Blobstore(_Model):
    """Blobstore settings handed to the agent."""

    provider: str = Field(description="Blobstore provider the agent uses (dav, s3, local, ...).")
    options: dict[str, Any] = Field(default_factory=dict, description="Provider options (endpoint, user, password, ...).")


class AgentConfig(_Model):
    """Settings handed to every new VM's agent (job properties `agent.*`)."""

    mbus: str | None = Field(None, description="Message bus URL the agent listens on or connects to.")
    ntp: list[str] = Field(default_factory=list, description="NTP servers for the agent.")
    blobstore: Blobstore | None = Field(None, description="Blobstore settings (env.bosh.blobstores takes precedence).")
    env_service: Any = Field(None, description=GO_CPI_COMPAT)


class Config(_Model):
    """The whole config file."""

    cloudstack: CloudStackConfig
    agent: AgentConfig = Field(default_factory=AgentConfig)
    ntp: list[str] = Field(default_factory=list, description="NTP servers (legacy place; agent.ntp wins).")
    registry: Any = Field(None, description=GO_CPI_COMPAT + " (The registry is gone: settings travel as user data.)")
    director: Any = Field(None, description=GO_CPI_COMPAT + " (director.name, used by its disk cleaner.)")

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
        return Config.model_validate(raw)
    except ValidationError as exc:
        raise CpiError(f"Invalid CPI config '{source}': {describe_validation_error(exc)}") from None


def describe_validation_error(exc: ValidationError) -> str:
    """Field paths and reasons, never the offending values (they may be secrets)."""
    problems = []
    for error in exc.errors(include_input=False, include_url=False):
        path = ".".join(str(part) for part in error["loc"]) or "(top level)"
        if error["type"] == "extra_forbidden":
            problems.append(f"{path}: unknown property{_nearest(error['loc'])}")
        elif error["type"] == "bool_type":
            problems.append(f"{path}: must be true or false (a JSON boolean, not a string or number)")
        else:
            problems.append(f"{path}: {error['msg']}")
    return "; ".join(problems)


def _nearest(loc: tuple) -> str:
    """", did you mean 'x'?" for the closest property at the same place, from the model itself."""
    model: Any = Config
    for part in loc[:-1]:
        field = model.model_fields.get(str(part)) if isinstance(model, type) and issubclass(model, BaseModel) else None
        if field is None:
            field = next((f for f in model.model_fields.values() if f.alias == part), None)
        model = field.annotation if field is not None else None
        model = next((arg for arg in getattr(model, "__args__", ()) if isinstance(arg, type)
                      and issubclass(arg, BaseModel)), model)
        if not (isinstance(model, type) and issubclass(model, BaseModel)):
            return ""
    names = [field.alias or name for name, field in model.model_fields.items()]
    close = difflib.get_close_matches(str(loc[-1]), names, n=1, cutoff=0.6)
    return f", did you mean '{close[0]}'?" if close else f" (valid here: {', '.join(sorted(names))})"


_YAML_LINE = re.compile(r"^\s*(---|[A-Za-z_][\w.-]*\s*:(\s|$)|- )")


def _json_problem(exc: json.JSONDecodeError) -> str:
    """What is wrong with the text, with line and column; YAML is named as such (the job renders JSON)."""
    first = next((line for line in exc.doc.splitlines() if line.strip() and not line.lstrip().startswith("#")), "")
    if _YAML_LINE.match(first):
        return ("this looks like YAML, but the CPI reads JSON (the BOSH job renders config/cpi.json as JSON; "
                "outside BOSH, write the same properties as a JSON object)")
    return f"not valid JSON at line {exc.lineno} column {exc.colno}: {exc.msg}"
