"""Render command results: table | md | yaml | json on stdout; logs go to stderr.

Pure formatting, no torch. ``emit`` is the one way a command prints data, so every
command supports the same formats with the same conventions.
"""

from __future__ import annotations

import json
import math
import sys
from enum import Enum
from typing import Any, Sequence


class Format(str, Enum):
    table = "table"
    md = "md"
    yaml = "yaml"
    json = "json"


def to_plain(obj: Any) -> Any:
    """Convert tensors, numpy values, tuples, paths and enums to YAML/JSON-safe data."""
    if isinstance(obj, dict):
        return {str(k): to_plain(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [to_plain(v) for v in obj]
    if isinstance(obj, Enum):
        return obj.value
    if isinstance(obj, float):
        return None if math.isnan(obj) else obj
    if isinstance(obj, bool) or obj is None:
        return obj
    if isinstance(obj, str):
        return str(obj)  # str subclasses (torch.__version__) are not YAML-safe
    if isinstance(obj, int):
        return int(obj)
    if hasattr(obj, "tolist"):  # torch tensors and numpy arrays/scalars
        return to_plain(obj.tolist())
    if hasattr(obj, "__fspath__"):
        return str(obj)
    return str(obj)


def dump_yaml(data: Any) -> str:
    import yaml

    return yaml.safe_dump(to_plain(data), sort_keys=False, allow_unicode=True, width=120)


def dump_json(data: Any) -> str:
    return json.dumps(to_plain(data), indent=2, allow_nan=False)


def render_table(rows: Sequence[dict[str, Any]], fmt: Format | str = Format.table, headers: Sequence[str] | None = None,
                 floatfmt: str = ".4g") -> str:
    """Rows of dicts as a text or markdown table (tabulate)."""
    from tabulate import tabulate

    headers = list(headers) if headers is not None else (list(rows[0].keys()) if rows else [])
    body = [[_cell(r.get(h)) for h in headers] for r in rows]
    style = "github" if Format(fmt) == Format.md else "simple"
    return tabulate(body, headers=headers, tablefmt=style, floatfmt=floatfmt, disable_numparse=False)


def _cell(value: Any) -> Any:
    if isinstance(value, (list, tuple)):
        return ", ".join(str(_cell(v)) for v in value)
    if isinstance(value, dict):
        return ", ".join(f"{k}={_cell(v)}" for k, v in value.items())
    if value is None:
        return ""
    return value


def emit(data: Any, fmt: Format | str, rows: Sequence[dict[str, Any]] | None = None,
         headers: Sequence[str] | None = None, text: str | None = None) -> None:
    """Print ``data`` as yaml/json, or ``text``/``rows`` as a table for humans."""
    fmt = Format(fmt)
    if fmt == Format.yaml:
        out = dump_yaml(data)
    elif fmt == Format.json:
        out = dump_json(data)
    elif text is not None and fmt == Format.md:
        out = text
    elif rows is not None:
        out = render_table(rows, fmt, headers)
    else:
        out = text if text is not None else dump_yaml(data)
    sys.stdout.write(out if out.endswith("\n") else out + "\n")


def log(message: str) -> None:
    """Progress and status lines: stderr, so stdout stays machine-readable."""
    print(message, file=sys.stderr, flush=True)
