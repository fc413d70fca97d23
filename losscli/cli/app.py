"""The Typer application object every command module registers on (``@app.command``).

Kept apart from ``losscli.cli`` (which imports the command modules) so the imports point one way.
"""

from __future__ import annotations

import typer

from losscli import __version__

app = typer.Typer(
    name="losscli",
    help="Should I adopt this classification loss? Train, compare, profile and calibrate the literature's losses.",
    no_args_is_help=True,
    # --install-completion / --show-completion (bash, zsh, fish, powershell); the completion callbacks
    # (losscli.cli.names) read names without importing torch, so a Tab press answers at once
    add_completion=True,
    pretty_exceptions_enable=False,
    rich_markup_mode=None,
    context_settings={"help_option_names": ["-h", "--help"]},
)


def _version(value: bool) -> None:
    if value:
        print(f"losscli {__version__}")
        raise typer.Exit()


@app.callback()
def _root(
    version: bool = typer.Option(False, "--version", callback=_version, is_eager=True, help="Print the version and exit."),
) -> None:
    """losscli: classification losses, measured honestly."""
