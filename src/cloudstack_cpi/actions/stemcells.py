"""create_stemcell and delete_stemcell: stemcell images become CloudStack templates.

The stemcell CID is the template's id (light stemcells: ``"<template id> light"``).
How the bytes reach CloudStack (``cloudstack.stemcell.upload_strategy``) is
described in docs/stemcells.md; the strategies live in ``cloudstack_cpi.stemcell``.
"""

from __future__ import annotations

import contextlib
import os
from dataclasses import dataclass, fields
from typing import TYPE_CHECKING, Any

from .. import leftovers, lookups
from ..cloudstack.errors import CloudStackError
from ..errors import CloudError
from ..stemcell import ostypes, templates

if TYPE_CHECKING:
    from ..cloudstack.gateway import Gateway
    from ..cloudstack.models import OsType, Zone
    from ..cloudstack.templates import NewTemplate, TemplateUpload
    from ..context import CallContext

STRATEGIES = ("post", "url", "volume")


def create_stemcell(ctx: CallContext, image_path: str, cloud_properties: dict, env: dict | None = None) -> str:
    """Make the stemcell image a CloudStack template usable in every configured zone; return its CID.

    BOSH contract: ``image_path`` is the ``image`` file extracted from the
    stemcell tarball, ``cloud_properties`` the stemcell.MF cloud_properties,
    ``env`` (CPI API v3) ``{"tags": {...}}`` to put on the new resource.  The
    result is the stemcell CID the director later passes to create_vm and
    delete_stemcell.  Nothing half-made may remain on failure.  Light
    stemcells (cloud_properties naming an existing template) create nothing.
    """
    props = _stemcell_props(cloud_properties)
    from ..stemcell.image import ImageError

    label = f"'{props.name or 'stemcell'} {props.version or ''}'".replace(" '", "'")
    try:
        light = props.template_id or props.template_name or props.light_template
        if light:
            return _light(ctx, light, _stemcell_zones(ctx.cloud.catalogue.zones(), ctx.config.cloudstack))
        return _create(ctx, image_path, props, env)
    except ImageError as err:
        raise CloudError(f"Creating stemcell {label}: image {err}") from None
    except CloudStackError as err:
        raise CloudError(f"Creating stemcell {label}: {err}", err.is_transient) from None
    except CloudError as err:
        raise CloudError(f"Creating stemcell {label}: {err.message}", err.ok_to_retry) from None


@dataclass(frozen=True)
class _StemcellProps:
    """models.StemcellCloudProperties' fields, for cloud_properties needing no conversion (``_stemcell_props``)."""

    name: str | None = None
    version: str | None = None
    infrastructure: str | None = None
    hypervisor: str | None = None
    disk: int | None = None
    disk_format: str | None = None
    os_type: str | None = None
    os_distro: str | None = None
    architecture: str | None = None
    template_id: str | None = None
    template_name: str | None = None
    light_template: str | None = None


_PROP_TYPES = {field.name: int if field.name == "disk" else str for field in fields(_StemcellProps)}


def _stemcell_props(cloud_properties: Any) -> Any:
    """The stemcell's cloud_properties, as models.StemcellCloudProperties reads them.

    What a stemcell builder writes (strings, an integer ``disk``, other keys, which the model allows) pydantic takes
    as it is: those are read here without importing pydantic (0.2-0.3 s of a 45 MiB create_stemcell's ~1 s,
    bench/stemcell_upload.py).  Anything else (another type, a value pydantic would convert or refuse) goes
    through the model, with its conversions and messages.
    """
    raw = cloud_properties or {}
    plain = type(raw) is dict and all(raw.get(name) is None or type(raw[name]) is kind
                                      for name, kind in _PROP_TYPES.items())
    if plain:
        return _StemcellProps(**{name: raw.get(name) for name in _PROP_TYPES})
    from .. import models

    return models.parse(models.StemcellCloudProperties, cloud_properties, "stemcell cloud_properties")


def delete_stemcell(ctx: CallContext, stemcell_cid: str) -> None:
    """Delete the stemcell's template in every zone and wait until it is gone.

    BOSH contract: deleting a stemcell that no longer exists is not an error
    (the director's ``delete-stemcell --force`` and the CLI expect that).
    Light stemcells are references to templates the CPI did not create: they
    are left alone.
    """
    if stemcell_cid.endswith(lookups.LIGHT_SUFFIX):
        ctx.log.info(f"Stemcell '{stemcell_cid}' is a light stemcell: its template is left in place")
        return None
    try:
        if not ctx.cloud.templates.delete(stemcell_cid):
            ctx.log.info(f"Stemcell '{stemcell_cid}': template already gone")
    except CloudStackError as err:
        raise CloudError(f"Deleting stemcell '{stemcell_cid}': {err}", err.is_transient) from None
    except CloudError as err:
        raise CloudError(f"Deleting stemcell '{stemcell_cid}': {err.message}") from None
    return None


# --- strategy choice ------------------------------------------------------------------------


def choose_strategy(stemcell_config) -> str:
    """``auto`` is ``url`` when a base URL is configured (a web server is there to use), else ``post``."""
    strategy = stemcell_config.upload_strategy
    if strategy == "auto":
        return "url" if stemcell_config.url.base_url else "post"
    return strategy


# --- the work -----------------------------------------------------------------------------------


@dataclass
class _Made:
    template_id: str | None = None


def _create(ctx: CallContext, image_path: str, props, env) -> str:
    """Check the zones, the hypervisor and the image, then make the template (``_make``).

    With the post strategy, a payload sent as it is (a tgz's root.img) is decompressed from as early as its plan is
    known (``upload_post.reading_ahead``), so that the requests before the POST wait for CloudStack beside it: as
    soon as the client exists when the stemcell names its hypervisor (stemcell.MF does; ``_early_plan``), else once
    the zone's hypervisors are listed.  Not before the client: building it imports the HTTP modules, and a thread
    decompressing beside the imports took the CPU they needed (bench/README.md, "Stemcell uploads")."""
    cs = ctx.config.cloudstack
    strategy = choose_strategy(cs.stemcell)
    cloud = ctx.cloud
    with contextlib.ExitStack() as reading:
        early = _early_plan(image_path, props) if strategy == "post" else None
        ahead = _read_ahead(reading, early) if early is not None else None
        available = cloud.catalogue.zones()
        zones = _stemcell_zones(available, cs)
        hypervisor = _hypervisor(cloud, ctx.log, props.hypervisor, zones)
        info = _detect(image_path, props, ctx.log, detected=early.info if early is not None else None)
        plan = None if strategy == "volume" else early or _plan(info, hypervisor)
        if strategy == "post" and early is None:
            ahead = _read_ahead(reading, plan)
        return _make(ctx, image_path, props, env, zones, available, strategy, hypervisor, info, plan, ahead)


def _early_plan(image_path: str, props):
    """The post strategy's plan for the image, before the zones are listed: for the read-ahead only.  None when the
    stemcell names no hypervisor, when telling the disk format would take a pass over a compressed image (which
    ``_detect`` makes after the zones' checks, as before), or when anything is amiss: the checks after the zones'
    report it, in their order (a zone's error first)."""
    if not props.hypervisor:
        return None
    from ..stemcell import convert, image

    try:
        info = image.detect(image_path)
        if not info.resolved:
            return None
        image.check_usable(info, props.disk_format)
        return convert.plan_upload(info, templates.cloudstack_hypervisor(props.hypervisor))
    except (image.ImageError, CloudError):
        return None


def _read_ahead(stack: contextlib.ExitStack, plan):
    """``upload_post.reading_ahead(plan)``, closed with ``stack``."""
    from ..stemcell import upload_post

    return stack.enter_context(upload_post.reading_ahead(plan))


def _make(ctx: CallContext, image_path: str, props, env, zones: list[Zone], available: list[Zone], strategy: str,
          hypervisor: str, info, plan, ahead) -> str:
    from ..stemcell import upload_volume

    cs = ctx.config.cloudstack
    cloud, log = ctx.cloud, ctx.log
    ostype = ostypes.choose(cloud.catalogue.os_types(), configured=cs.stemcell.os_type,
                            os_distro=props.os_distro, os_type=props.os_type, architecture=props.architecture,
                            stemcell_name=props.name)
    naming = templates.naming(props.name, props.version)
    log.info(f"Creating template {naming.name} ({hypervisor}, OS type '{ostype.description}') with the "
             f"{strategy} strategy; zones: {', '.join(z.name for z in zones)}")
    waiter = templates.Waiter(cloud.templates, log, timeout=cs.timeout.poll_template)
    # Templates of create_stemcell calls killed before they answered: the director never learned of them.
    leftovers.sweep(ctx.log, "Template", cloud.templates.unconfirmed, create_stemcell_bound(cs.timeout),
                    lambda template: cloud.templates.discard(template.id))
    new = _new_template(ctx, naming, ostype, templates.template_tags(naming, ctx.director_uuid, env))
    made = _Made()
    work = upload_volume.WorkResources()
    try:
        if strategy == "volume":
            zones = _volume(ctx, image_path, info, hypervisor, new, zones, available, made, work)
        elif strategy == "post":
            _post(ctx, image_path, plan, hypervisor, naming, new, zones[0], made, ahead)
        else:
            _url(ctx, image_path, plan, hypervisor, naming, new, zones[0], made)
        template_id = made.template_id
        assert template_id is not None  # every strategy records the template it made, or raises
        source = zones[0]
        waiter.wait(template_id, source.id, what="Waiting for the template", zone_name=source.name)
        templates.copy_to(waiter, template_id, source, zones[1:])
        upload_volume.cleanup(cloud, work)  # the volume strategy's work volume and snapshot go first
        cloud.tags.confirm("Template", template_id)  # the last step: ready everywhere, handed over now
    except BaseException as exc:
        half_made = made.template_id or work.template_id
        if half_made:
            log.warning(f"Removing half-made template {half_made} after: {_one_line(exc)}")
            cloud.templates.discard(half_made)
        raise
    finally:
        upload_volume.cleanup(cloud, work)  # after a failure (after success there is nothing left to remove)
    log.info(f"Stemcell template {template_id} ({naming.name}) is ready")
    return template_id


def _new_template(ctx: CallContext, naming: templates.Naming, ostype: OsType, tags: dict[str, str]) -> NewTemplate:
    """The new template as every strategy makes it: 64-bit, no password reset, HVM and visibility from the config,
    tagged beside its create."""
    from ..cloudstack.templates import NewTemplate

    stemcell = ctx.config.cloudstack.stemcell
    return NewTemplate(name=naming.name, display_text=naming.displaytext, os_type_id=ostype.id,
                       requires_hvm=stemcell.requires_hvm, public=stemcell.public_visibility, tags=tags)


def create_stemcell_bound(timeout) -> float:
    """The longest a create_stemcell can take: the wait until ready and the copies to other zones (each bounded by
    poll_template), as long again for streaming the image itself, and its tag jobs."""
    return 3 * timeout.poll_template + 2 * timeout.global_ + leftovers.MARGIN


def _post(ctx: CallContext, image_path, plan, hypervisor, naming, new: NewTemplate, zone: Zone, made: _Made,
          ahead) -> None:
    from ..stemcell import upload_post

    cs = ctx.config.cloudstack
    transport = ctx.cloud.upload_transport()

    def send(upload: TemplateUpload) -> None:  # while the template's tags job runs
        made.template_id = upload.id
        upload_post.post(upload, plan, image_path, f"{naming.name}.{plan.extension}", transport=transport, log=ctx.log,
                         timeout=(cs.timeout.http_connect, max(cs.timeout.http_read, 300.0)),
                         tmpdir=upload_post.tmpdir_for(image_path), ahead=ahead)

    try:
        ctx.cloud.templates.request_upload(new, image_format=plan.format, hypervisor=hypervisor, zone_id=zone.id,
                                           send=send)
    finally:
        transport.close()


def _url(ctx: CallContext, image_path, plan, hypervisor, naming, new: NewTemplate, zone: Zone, made: _Made) -> None:
    from ..stemcell import upload_url

    cs = ctx.config.cloudstack
    settings = cs.stemcell.url
    filename = f"{naming.name}.{plan.extension}"
    with contextlib.ExitStack() as stack:
        if settings.base_url:
            if not settings.serve_directory:
                raise CloudError("cloudstack.stemcell.url.base_url needs cloudstack.stemcell.url.serve_directory "
                                 "(where the CPI puts the file the web server serves)")
            upload_url.check_directory(settings.serve_directory)
            stack.enter_context(upload_url.staged_file(image_path, plan, settings.serve_directory, filename, ctx.log))
            url = upload_url.url_join(settings.base_url, filename)
        else:
            path = image_path
            if not plan.passes_through:
                path = stack.enter_context(upload_url.staged_file(
                    image_path, plan, os.path.dirname(os.path.abspath(image_path)), filename, ctx.log))
            server = stack.enter_context(upload_url.OneFileServer(
                path, filename, listen_host=settings.listen_host, listen_port=settings.listen_port,
                advertise_host=settings.advertise_host, endpoint=cs.endpoint, log=ctx.log))
            url = server.url
        registered = ctx.cloud.templates.register(new, image_format=plan.format, hypervisor=hypervisor,
                                                  zone_id=zone.id, url=url)
        made.template_id = registered.id
        # The file must stay reachable until CloudStack has all of it.
        templates.Waiter(ctx.cloud.templates, ctx.log, timeout=cs.timeout.poll_template).wait(
            registered.id, zone.id, what="Waiting for CloudStack to download the image", zone_name=zone.name)


def _volume(ctx: CallContext, image_path, info, hypervisor, new: NewTemplate, zones: list[Zone],
            available: list[Zone], made: _Made, work) -> list[Zone]:
    from ..stemcell import convert, upload_volume

    cs = ctx.config.cloudstack
    settings = cs.stemcell.volume
    cloud = ctx.cloud
    vm_id = upload_volume.own_vm_id(settings.vm_id, settings.metadata_url)
    vm = cloud.vms.get(vm_id)
    if vm is None:
        raise CloudError(f"VM '{vm_id}' (cloudstack.stemcell.volume.vm_id or the metadata service) not found")
    if (vm.hypervisor or hypervisor).lower() != hypervisor.lower():
        raise CloudError(f"VM '{vm_id}' runs on {vm.hypervisor}, the stemcell is for {hypervisor}: "
                         "a template made from its volume would not fit")
    home = lookups.pick(available, vm.zone_id, kind="Zone")
    if home.id not in {z.id for z in zones}:
        ctx.log.info(f"The template is made in zone '{home.name}' (this VM's zone) and copied from there")
    size = convert.raw_size(info)
    if size is None:
        info = info.resolve()
        size = convert.raw_size(info)
        assert size is not None  # a resolved image's format tells its size
    offering = lookups.pick(cloud.catalogue.disk_offerings(), settings.disk_offering or cs.default_offer.custom_disk,
                            kind="Disk offering")
    tmpdir = os.path.dirname(os.path.abspath(image_path))
    made.template_id = upload_volume.run(
        cloud, log=ctx.log, vm=vm, offering=offering, raw_size=size,
        raw_chunks=lambda: convert.raw_stream(image_path, info, tmpdir=tmpdir), device_dir=settings.device_dir,
        new=new, work=work, device_timeout=settings.device_timeout,
    )
    return [home] + [z for z in zones if z.id != home.id]


# --- pieces -------------------------------------------------------------------------------------


def _stemcell_zones(available: list[Zone], cs) -> list[Zone]:
    wanted = list(cs.stemcell.zones) or ([cs.default_zone] if cs.default_zone else [])
    if not wanted:
        raise CloudError("No zone for stemcells: set cloudstack.stemcell.zones or cloudstack.default_zone")
    zones: list[Zone] = []
    for name in wanted:
        zone = lookups.pick(available, name, kind="Zone")
        if zone.id not in {z.id for z in zones}:
            zones.append(zone)
    return zones


def _hypervisor(cloud: Gateway, log, stemcell_hypervisor: str | None, zones: list[Zone]) -> str:
    """CloudStack's name for the stemcell's hypervisor, checked against every zone's hypervisors."""
    offered = {zone.id: _zone_hypervisors(cloud, log, zone) for zone in zones}
    if stemcell_hypervisor:
        hypervisor = templates.cloudstack_hypervisor(stemcell_hypervisor)
    else:
        names = offered[zones[0].id] or []
        first = [h for h in names if h.lower() in {"kvm", "xenserver", "vmware"}]
        if len(first) != 1:
            raise CloudError("The stemcell's cloud_properties name no hypervisor (xen, kvm or vmware) and zone "
                             f"'{zones[0].name}' runs {', '.join(names) or 'unknown hypervisors'}")
        hypervisor = first[0]
    for zone in zones:
        zone_names = offered[zone.id]
        if zone_names is not None and hypervisor.lower() not in {n.lower() for n in zone_names}:
            raise CloudError(f"Zone '{zone.name}' has no {hypervisor} hosts (its hypervisors: "
                             f"{', '.join(zone_names) or 'none'}); the stemcell is for {hypervisor}")
    return hypervisor


def _zone_hypervisors(cloud: Gateway, log, zone: Zone) -> list[str] | None:
    """The zone's hypervisors; None when the account may not ask (the check is then left to CloudStack)."""
    try:
        return cloud.catalogue.hypervisors(zone.id)
    except CloudStackError as err:
        if err.errorcode in (401, 432, 531):
            log.warning(f"Cannot list the hypervisors of zone '{zone.name}' ({err}); not checking them")
            return None
        raise


def _detect(image_path: str, props, log, *, detected=None):
    """The image's ImageInfo, resolved and checked; ``detected``: what ``_early_plan`` found (the same file)."""
    from ..stemcell import image as image_module

    info = detected or image_module.detect(image_path)
    if not info.resolved:
        log.info(f"Reading {image_path} once to tell a fixed VHD from a raw disk inside the {info.compression} stream")
        info = info.resolve()
    # Before anything exists in CloudStack (all strategies come through here): refuse what cannot be a
    # disk, or is not the disk_format the stemcell declares.  Uses only what detection read.
    image_module.check_usable(info, props.disk_format)
    log.info(f"Image {image_path}: {info.disk_format}"
             + (f" ({info.vhd_type})" if info.vhd_type else "")
             + (f", {info.compression}-compressed" if info.compression else "")
             + (f", in a tar ({info.member})" if info.container == "tar" and info.disk_format != "ova" else "")
             + (f", virtual size {info.virtual_size} bytes" if info.virtual_size else ""))
    return info


def _plan(info, hypervisor: str):
    from ..stemcell import convert
    from ..stemcell.image import ImageError

    try:
        plan = convert.plan_upload(info, hypervisor)
    except ImageError as err:
        raise CloudError(str(err)) from None
    return plan


def _light(ctx: CallContext, wanted: str, zones: list[Zone]) -> str:
    """The existing template a light stemcell names, ready in every zone (by id, else by its one exact name)."""
    found_templates = ctx.cloud.templates
    template_id = lookups.stemcell_template_id(wanted)
    found = None
    problems = []
    for zone in zones:
        row = found_templates.executable_by_id(template_id, zone.id) or lookups.only_named(
            found_templates.executable_named(template_id, zone.id), template_id, kind="Template")
        if row is None:
            problems.append(f"not found in zone '{zone.name}'")
        elif not row.ready:
            problems.append(f"not ready in zone '{zone.name}' (status: {row.status or 'none'})")
        elif found is not None and row.id != found.id:
            problems.append(f"names another template in zone '{zone.name}' ({row.id})")
        else:
            found = found or row
    if problems or found is None:
        raise CloudError(f"Light stemcell: template '{wanted}' is {'; '.join(problems)}")
    ctx.log.info(f"Light stemcell: using existing template {found.id} ({found.name})")
    return f"{found.id}{lookups.LIGHT_SUFFIX}"


def _one_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return text[0][:300] if text else type(exc).__name__
