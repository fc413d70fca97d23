"""Loss spec strings: ``focal(gamma=2,alpha=[0.25,0.75])``, comma lists of them, ``k=v`` lists.

Pure string handling (no torch), so the CLI can parse its arguments cheaply. Values are read
as YAML scalars/lists, so ``2`` is an int, ``0.5`` a float, ``1e-3`` a float (YAML 1.1 would
read it as a string), ``[1,2]`` a list and ``ce`` a string. Validation against the registry
(names, parameter ranges, canonical labels) lives in :mod:`losscli.losses`.
"""

from __future__ import annotations

import math
import re
from typing import Any

from losscli.errors import UsageError

#: longest spec accepted: specs are short; this keeps parsing linear-time work bounded
MAX_SPEC_CHARS = 10_000
_NAME = re.compile(r"[A-Za-z_][\w.\-]*(?::[A-Za-z_]\w*)?")  # plain name, or a plugin "pkg.module:Name"
_PLUGIN_NAME = re.compile(r"[A-Za-z_][\w]*(?:\.[A-Za-z_]\w*)*:[A-Za-z_]\w*")
_FLOAT = re.compile(r"[+-]?(?:\d+\.?\d*|\.\d+)(?:[eE][+-]?\d+)?")


def split_top_level(text: str, sep: str = ",") -> list[str]:
    """Split on ``sep`` outside parentheses and brackets; empty parts are dropped."""
    parts, depth, current = [], 0, []
    for ch in text:
        if ch in "([{":
            depth += 1
        elif ch in ")]}":
            depth -= 1
            if depth < 0:
                raise UsageError(f"unbalanced brackets in {_short(text)!r}")
        if ch == sep and depth == 0:
            parts.append("".join(current))
            current = []
        else:
            current.append(ch)
    if depth != 0:
        raise UsageError(f"unbalanced brackets in {_short(text)!r}")
    parts.append("".join(current))
    return [p.strip() for p in parts if p.strip()]


def parse_value(text: str) -> Any:
    """A YAML scalar or list; bare words stay strings; ``1e-3`` is a number."""
    import yaml

    stripped = text.strip()
    if _FLOAT.fullmatch(stripped):
        number = float(stripped)
        return int(stripped) if re.fullmatch(r"[+-]?\d+", stripped) else number
    try:
        value = yaml.safe_load(stripped)
    except yaml.YAMLError:
        raise UsageError(f"cannot parse value {_short(text)!r}") from None
    if isinstance(value, list):
        return [parse_value(str(v)) if isinstance(v, str) else v for v in value]
    return value


def parse_assignments(items: list[str], what: str = "parameter") -> dict[str, Any]:
    """``["gamma=2", "alpha=[1,2]"]`` -> ``{"gamma": 2, "alpha": [1, 2]}``; a key given twice is an error."""
    out: dict[str, Any] = {}
    for item in items:
        if "=" not in item:
            raise UsageError(f"{what} {_short(item)!r} must look like name=value")
        key, value = item.split("=", 1)
        key = key.strip()
        if not key:
            raise UsageError(f"{what} {_short(item)!r} has an empty name")
        if key in out:
            raise UsageError(f"{what} {key!r} is given twice")
        out[key] = parse_value(value)
    return out


def parse_loss_spec(spec: str) -> tuple[str, dict[str, Any]]:
    """``"focal(gamma=2)"`` -> ``("focal", {"gamma": 2})``; plugin names ``pkg.mod:Name(...)`` too."""
    if not isinstance(spec, str):
        raise UsageError(f"a loss spec must be a string such as focal or focal(gamma=2), got {spec!r}")
    if len(spec) > MAX_SPEC_CHARS:
        raise UsageError(f"loss spec is too long ({len(spec)} characters; at most {MAX_SPEC_CHARS})")
    text = spec.strip()
    if not text:
        raise UsageError("empty loss spec; write a loss name such as ce or focal(gamma=2) (see `losscli losses`)")
    m = _NAME.match(text)
    rest = text[m.end():].lstrip() if m else None
    if m is None or (rest and not (rest.startswith("(") and rest.endswith(")"))):
        raise UsageError(f"cannot parse loss spec {_short(spec)!r}; write name or name(param=value,...)")
    name = m.group(0)
    inner = rest[1:-1] if rest else ""
    params = parse_assignments(split_top_level(inner), what=f"{name} parameter") if inner.strip() else {}
    return name, params


def is_plugin_name(name: str) -> bool:
    """``pkg.module:Name`` names a loss by import path instead of the registry."""
    return bool(_PLUGIN_NAME.fullmatch(name))


def format_value(value: Any) -> str:
    """A parameter value as a spec writes it: shortest exact text (``3`` for 3.0, ``0.1``, ``1e-05``);
    validation coerces it back to the parameter's type, so the spec round-trips."""
    if isinstance(value, (list, tuple)):
        return "[" + ",".join(format_value(v) for v in value) + "]"
    if isinstance(value, float) and math.isfinite(value):
        text = repr(value)
        return text[:-2] if text.endswith(".0") else text
    return str(value)


def format_loss_spec(name: str, params: dict[str, Any] | None = None) -> str:
    """Inverse of :func:`parse_loss_spec`: ``focal(gamma=3.0)``; no parentheses without parameters."""
    if not params:
        return name
    return f"{name}(" + ",".join(f"{k}={format_value(v)}" for k, v in params.items()) + ")"


def _short(text: str, limit: int = 80) -> str:
    return text if len(text) <= limit else text[:limit] + "..."
