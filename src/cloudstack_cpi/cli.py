"""``cloudstack-cpi``: the operators' command line.

``bin/cpi`` does not come through here (click costs start-up time on every
BOSH call); it runs ``cloudstack_cpi.entry`` directly.
"""

from __future__ import annotations

import sys
from typing import Any

import click


def _print_version(ctx: click.Context, _param: click.Parameter, value: bool) -> None:
    # Not click.version_option: it fails in a source checkout without package metadata.
    if value and not ctx.resilient_parsing:
        from . import version

        click.echo(f"cloudstack-cpi {version()}")
        ctx.exit()


def _json_object(_ctx: click.Context, _param: click.Parameter, value: str | None) -> dict[str, Any]:
    import json

    if value is None:
        return {}
    try:
        parsed = json.loads(value)
    except ValueError as exc:
        raise click.BadParameter(f"not valid JSON ({exc})") from None
    if not isinstance(parsed, dict):
        raise click.BadParameter(f"expected a JSON object, got {type(parsed).__name__}")
    return parsed


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.option("--version", is_flag=True, expose_value=False, is_eager=True, callback=_print_version,
              help="Show the version and exit.")
def main() -> None:
    """BOSH CPI for Apache CloudStack: run it, test it, check a cloud against it."""


@main.command("cpi", context_settings={"ignore_unknown_options": True})
@click.argument("config_path", required=False)
def cpi_command(config_path: str | None) -> None:
    """Serve one CPI request from stdin, exactly as bin/cpi does."""
    from .entry import serve

    serve([config_path] if config_path else [])


@main.command(
    "simulator",
    context_settings={"ignore_unknown_options": True, "allow_extra_args": True, "help_option_names": []},
    add_help_option=False,
)
@click.argument("args", nargs=-1, type=click.UNPROCESSED)
def simulator_command(args: tuple[str, ...]) -> None:
    """Run the embedded CloudStack simulator (see --help for its options).

    Prints one JSON line with the endpoint and credentials once listening, and
    serves until interrupted.
    """
    from cloudstack_simulator.cli import main as simulator_main

    sys.exit(simulator_main(list(args), prog="cloudstack-cpi simulator"))


@main.command("call")
@click.argument("method")
@click.argument("arguments", nargs=-1)
@click.option("--config", "config_path", envvar="CPI_CONFIG", required=True,
              type=click.Path(exists=True, dir_okay=False), help="CPI config file (or $CPI_CONFIG).")
@click.option("--api-version", default=2, show_default=True, help="CPI API version to ask for.")
@click.option("--stemcell-api-version", default=3, show_default=True, help="context.vm.stemcell.api_version to send.")
def call_command(method: str, arguments: tuple[str, ...], config_path: str, api_version: int,
                 stemcell_api_version: int) -> None:
    """Send one CPI call through bin/cpi and print the answer readably.

    Each ARGUMENT is JSON; bare words are taken as strings:
    cloudstack-cpi call --config cpi.json has_vm 0d6c...  or  call create_disk 2048 '{}' null
    """
    import json

    from .operator.runner import CpiRunner

    parsed = []
    for text in arguments:
        try:
            parsed.append(json.loads(text))
        except ValueError:
            parsed.append(text)
    runner = CpiRunner(config_path, api_version=api_version, stemcell_api_version=stemcell_api_version,
                       on_log_line=lambda line: click.echo(line, err=True))  # the CPI's log, live
    click.echo(click.style(f"… {method} (bin/cpi; its log follows)", dim=True), err=True)
    outcome = runner.call(method, *parsed)
    if outcome.error:
        error = outcome.error
        click.echo(click.style(f"{error['type']}", fg="red", bold=True) + f" (ok_to_retry: {error['ok_to_retry']})")
        click.echo(error["message"])
    else:
        click.echo(json.dumps(outcome.result, indent=2))
    click.echo(click.style(f"{outcome.seconds:.2f}s", dim=True), err=True)
    sys.exit(1 if outcome.error else 0)


@main.command("validate")
@click.argument("config_path", type=click.Path(exists=True, dir_okay=False))
def validate_command(config_path: str) -> None:
    """Check a CPI config and the cloud it points at; each problem comes with its fix."""
    from .operator.validate import Validator, render

    findings = Validator(config_path).run()
    click.echo(render(findings))
    sys.exit(0 if all(f.ok for f in findings) else 1)


@main.command("lifecycle")
@click.option("--config", "config_path", type=click.Path(exists=True, dir_okay=False),
              help="CPI config of the cloud to check; without it, an embedded simulator is used.")
@click.option("--compute-offering", help="Compute offering for the test VM.")
@click.option("--network", help="CloudStack network (name or id) for the VM (advanced zones).")
@click.option("--network-type", type=click.Choice(["dynamic", "manual"]), default="dynamic", show_default=True)
@click.option("--ip", help="Static IP for a manual network.")
@click.option("--netmask", help="Netmask for a manual network.")
@click.option("--gateway", help="Gateway for a manual network.")
@click.option("--zone", help="Availability zone (default: the config's default_zone).")
@click.option("--disk-offering", help="Disk offering for the persistent disk.")
@click.option("--stemcell", "stemcell_image", type=click.Path(exists=True, dir_okay=False),
              help="Stemcell image file (the tarball's `image`).")
@click.option("--stemcell-properties", callback=_json_object,
              help="Stemcell cloud_properties as a JSON object (from its stemcell.MF).")
@click.option("--light-template", help="Use an existing template (light stemcell) instead of uploading one.")
@click.option("--show-calls", is_flag=True, help="Print every request and answer.")
def lifecycle_command(config_path, compute_offering, network, network_type, ip, netmask, gateway, zone,
                      disk_offering, stemcell_image, stemcell_properties, light_template, show_calls) -> None:
    """Run every CPI method against a cloud, as the official CPIs' lifecycle specs do, then clean up.

    The CPI's log shows on stderr as it comes.  Ctrl-C or SIGTERM lets the running call finish, removes
    what the run created and exits 130 or 143; a second one stops the running call at once.
    """
    from .operator.lifecycle import Lifecycle, Target
    from .operator.runner import CpiRunner

    if config_path is None:
        sys.exit(_run_demo(show_calls=show_calls, show_log=True))
    if not compute_offering or not (stemcell_image or light_template):
        raise click.UsageError("with --config, give --compute-offering and --stemcell (or --light-template)")
    if network_type == "manual" and not (ip and netmask and gateway):
        raise click.UsageError("a manual network needs --ip, --netmask and --gateway")
    target = Target(compute_offering=compute_offering, network=network, network_type=network_type, ip=ip,
                    netmask=netmask, gateway=gateway, availability_zone=zone, disk_offering=disk_offering,
                    stemcell_image=stemcell_image, light_template=light_template,
                    stemcell_properties=stemcell_properties)
    lifecycle = Lifecycle(CpiRunner(config_path), target, show_calls=show_calls)
    lifecycle.run()
    sys.exit(lifecycle.exit_status)


@main.command("demo")
@click.option("--quiet", is_flag=True, help="Only the step table, not every request and answer.")
def demo_command(quiet: bool) -> None:
    """Start the embedded CloudStack simulator and run the whole BOSH lifecycle through bin/cpi."""
    sys.exit(_run_demo(show_calls=not quiet, show_log=not quiet))


def _run_demo(*, show_calls: bool, show_log: bool) -> int:
    import tempfile
    from pathlib import Path

    from .operator.demo import embedded_simulator, simulator_config, simulator_target
    from .operator.lifecycle import Lifecycle
    from .operator.runner import CpiRunner

    with tempfile.TemporaryDirectory(prefix="cloudstack-cpi-demo-") as tmp, embedded_simulator() as sim:
        directory = Path(tmp)
        click.echo(f"Embedded CloudStack simulator at {sim.endpoint} (scenario: advanced)")
        config = simulator_config(sim, directory)
        lifecycle = Lifecycle(CpiRunner(str(config)), simulator_target(directory), show_calls=show_calls,
                              show_log=show_log)
        lifecycle.run()
        leftovers = {kind: ids for kind, ids in sim.inventory().items() if isinstance(ids, list) and ids}
        if leftovers:
            click.echo(f"simulator still holds: {leftovers}")
        return lifecycle.exit_status or (1 if leftovers else 0)


if __name__ == "__main__":
    main()
