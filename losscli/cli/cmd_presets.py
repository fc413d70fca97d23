"""``losscli presets``: list the bundled presets (or show one)."""

from __future__ import annotations

from typing import Optional

import typer

from losscli.cli.app import app
from losscli.cli.common import FORMAT_OPTION
from losscli.cli.output import Format, emit


@app.command("presets")
def presets_command(
    name: Optional[str] = typer.Argument(None, help="Show this preset's resolved configuration."),
    fmt: Format = FORMAT_OPTION,
) -> None:
    """List bundled presets (use them with --preset NAME)."""
    from losscli.config import build_config, list_presets

    if name:
        cfg = build_config(name).to_dict()
        emit(cfg, fmt if fmt != Format.table else Format.yaml)
        return
    rows = [{"name": p["name"], "description": p["description"]} for p in list_presets()]
    emit(rows, fmt, rows=rows)
