"""losscli's command line (Typer).

The CLI stays thin: each command lives in its own module, parses its options, calls the
library and prints. Start-up must stay fast: no module imported here may import torch at
import time (heavy imports go inside the command functions). A test checks this.
"""

from __future__ import annotations

import os
import sys

import typer

from losscli import __version__

app = typer.Typer(
    name="losscli",
    help="Should I adopt this classification loss? Train, compare, profile and calibrate the literature's losses.",
    no_args_is_help=True,
    add_completion=False,
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


def _register_commands() -> None:
    # Each module adds its command(s) to ``app`` when imported.
    from losscli.cli import commands  # noqa: F401


def main(argv: list[str] | None = None) -> None:
    """Console entry point: one clear line and an exit code for every known failure."""
    from losscli.errors import LossCLIError

    _register_commands()
    debug = os.environ.get("LOSSCLI_DEBUG", "") not in ("", "0")
    try:
        app(args=argv, prog_name="losscli")
    except LossCLIError as exc:
        if debug:
            raise
        print(f"error: {exc}", file=sys.stderr)
        sys.exit(exc.exit_code)
    except KeyboardInterrupt:
        print("error: interrupted; completed results are kept on disk", file=sys.stderr)
        sys.exit(130)
    except Exception as exc:  # noqa: BLE001 - the CLI promises no tracebacks
        if debug:
            raise
        print(f"error: {type(exc).__name__}: {exc} (set LOSSCLI_DEBUG=1 for the traceback)", file=sys.stderr)
        sys.exit(1)
