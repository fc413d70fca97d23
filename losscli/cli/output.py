"""How commands print: data on stdout in the chosen format, progress and status on stderr.

``emit`` is the one way a command prints data, so every command supports the same formats
with the same conventions. Serialisation itself lives in :mod:`losscli.serialize` (no CLI
there), shared with the reports the library writes.
"""

from __future__ import annotations

import sys
from enum import Enum
from typing import Any, Sequence

from losscli.serialize import dump_json, dump_yaml, render_table


class Format(str, Enum):
    table = "table"
    md = "md"
    csv = "csv"
    yaml = "yaml"
    json = "json"


def emit(data: Any, fmt: Format | str, rows: Sequence[dict[str, Any]] | None = None,
         headers: Sequence[str] | None = None, text: str | None = None) -> None:
    """Print ``data`` as yaml/json, or ``text``/``rows`` for people (table, md) and spreadsheets (csv)."""
    fmt = Format(fmt)
    if fmt == Format.yaml:
        out = dump_yaml(data)
    elif fmt == Format.json:
        out = dump_json(data)
    elif fmt == Format.csv:
        out = render_table(rows if rows is not None else _as_rows(data), "csv", headers)
    elif text is not None and fmt == Format.md:
        out = text
    elif rows is not None:
        out = render_table(rows, fmt.value, headers)
    else:
        out = text if text is not None else dump_yaml(data)
    sys.stdout.write(out if out.endswith("\n") else out + "\n")


def _as_rows(data: Any) -> list[dict[str, Any]]:
    if isinstance(data, list) and all(isinstance(r, dict) for r in data):
        return data
    if isinstance(data, dict):
        return [data]
    return [{"value": data}]


def log(message: str) -> None:
    """Progress and status lines: stderr, so stdout stays machine-readable."""
    print(message, file=sys.stderr, flush=True)
