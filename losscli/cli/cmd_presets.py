"""``losscli presets``: list the bundled presets (or show one)."""

from __future__ import annotations

from typing import Optional

import typer

from losscli.cli import names
from losscli.cli.app import app
from losscli.cli.common import FORMAT_OPTION
from losscli.cli.output import Format, emit


@app.command("presets")
def presets_command(
    name: Optional[str] = typer.Argument(None, help="Show this preset's resolved configuration.",
                                         autocompletion=names.complete_preset),
    fmt: Format = FORMAT_OPTION,
) -> None:
    """List bundled presets (use them with --preset NAME)."""
    from losscli.config import build_config, list_presets

    if name:
        cfg = build_config(name).to_dict()
        # csv: one key,value row per setting (dotted keys), a table spreadsheets can read
        emit(cfg, fmt if fmt != Format.table else Format.yaml, rows=[{"key": k, "value": v} for k, v in _flat(cfg)])
        return
    rows = [{"name": p["name"], "description": p["description"]} for p in list_presets()]
    emit(rows, fmt, rows=rows)


def _flat(d: dict, prefix: str = "") -> list[tuple[str, object]]:
    out: list[tuple[str, object]] = []
    for k, v in d.items():
        if isinstance(v, dict) and v:
            out += _flat(v, f"{prefix}{k}.")
        else:
            out.append((f"{prefix}{k}", v))
    return out
