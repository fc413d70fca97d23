"""Parse loss specs like ``focal(gamma=2,alpha=[0.25,0.75])`` and comma lists of them.

Pure string handling (no torch) so the CLI can parse its arguments cheaply. Values are
read as YAML scalars/lists, so ``2`` is an int, ``0.5`` a float, ``[1,2]`` a list and
``ce`` a string.
"""

from __future__ import annotations

import re
from typing import Any

import yaml

from losscli.errors import UsageError

_SPEC = re.compile(r"^\s*([A-Za-z_][\w\-]*)\s*(?:\((.*)\))?\s*$", re.S)


def split_top_level(text: str, sep: str = ",") -> list[str]:
    """Split on ``sep`` outside parentheses and brackets."""
    parts, depth, current = [], 0, []
    for ch in text:
        if ch in "([{":
            depth += 1
        elif ch in ")]}":
            depth -= 1
            if depth < 0:
                raise UsageError(f"unbalanced brackets in {text!r}")
        if ch == sep and depth == 0:
            parts.append("".join(current))
            current = []
        else:
            current.append(ch)
    if depth != 0:
        raise UsageError(f"unbalanced brackets in {text!r}")
    parts.append("".join(current))
    return [p.strip() for p in parts if p.strip()]


def parse_value(text: str) -> Any:
    """A YAML scalar or list; bare words stay strings."""
    try:
        return yaml.safe_load(text)
    except yaml.YAMLError:
        raise UsageError(f"cannot parse value {text!r}") from None


def parse_assignments(items: list[str], what: str = "parameter") -> dict[str, Any]:
    """``["gamma=2", "alpha=[1,2]"]`` -> ``{"gamma": 2, "alpha": [1, 2]}``."""
    out: dict[str, Any] = {}
    for item in items:
        if "=" not in item:
            raise UsageError(f"{what} {item!r} must look like name=value")
        key, value = item.split("=", 1)
        key = key.strip()
        if not key:
            raise UsageError(f"{what} {item!r} has an empty name")
        out[key] = parse_value(value.strip())
    return out


def parse_loss_spec(spec: str) -> tuple[str, dict[str, Any]]:
    """``"focal(gamma=2)"`` -> ``("focal", {"gamma": 2})``."""
    m = _SPEC.match(spec)
    if not m:
        raise UsageError(f"cannot parse loss spec {spec!r}; write name or name(param=value,...)")
    name, inner = m.group(1), m.group(2)
    params = parse_assignments(split_top_level(inner), what=f"{name} parameter") if inner else {}
    return name, params


def format_loss_spec(name: str, params: dict[str, Any] | None = None) -> str:
    """Inverse of ``parse_loss_spec`` for display: ``focal(gamma=2.0)``."""
    if not params:
        return name
    inner = ",".join(f"{k}={v}" for k, v in params.items())
    return f"{name}({inner})"
