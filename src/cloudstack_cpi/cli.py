"""``cloudstack-cpi``: the operators' command line.

``bin/cpi`` does not come through here (click costs start-up time on every
BOSH call); it runs ``cloudstack_cpi.entry`` directly.
"""

from __future__ import annotations

import sys

import click


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
def main() -> None:
    """BOSH CPI for Apache CloudStack: run it, test it, check a cloud against it."""


@main.command("cpi", context_settings={"ignore_unknown_options": True})
@click.argument("config_path", required=False)
def cpi_command(config_path: str | None) -> None:
    """Serve one CPI request from stdin, exactly as bin/cpi does."""
    from .entry import main as entry_main

    sys.exit(entry_main([config_path] if config_path else []))


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

    sys.exit(simulator_main(list(args)))


if __name__ == "__main__":
    main()
