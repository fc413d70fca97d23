"""Options shared by several commands (Typer), so they read the same everywhere."""

from __future__ import annotations

import typer

from losscli.cli.output import Format

FORMAT_OPTION = typer.Option(Format.table, "--format", "-f", help="Output format for stdout: table, md, yaml or json.")
QUIET_OPTION = typer.Option(False, "--quiet", "-q", help="No progress output on stderr.")


def parse_csv(text: str | None) -> list[str]:
    """``"a, b,,c"`` -> ``["a", "b", "c"]`` (respecting brackets, for loss specs)."""
    from losscli.lossspec import split_top_level

    return split_top_level(text) if text else []
