"""Plain data in and out: YAML/JSON dumping, safe YAML loading, and text/markdown tables.

Every report (run, compare, profile, calibration) goes through :func:`to_plain` before it is
written or printed, so tensors, numpy values, enums and paths always serialise the same way.
Nothing heavy is imported here (no torch, no Typer): the engine, the reports and the CLI all
use this module.
"""

from __future__ import annotations

import functools
import json
import math
from enum import Enum
from typing import Any, Sequence

from losscli.errors import UsageError

#: largest YAML document losscli reads (presets, run configs and reports are a few KB; this
#: bounds the work a hostile file can ask for)
MAX_YAML_BYTES = 4 * 2**20
#: deepest nesting accepted in a YAML document
MAX_YAML_DEPTH = 32


def to_plain(obj: Any, *, finite: bool = False) -> Any:
    """Convert tensors, numpy values, tuples, paths and enums to YAML/JSON-safe data; NaN -> None, and
    with ``finite`` +-inf too (JSON has no infinity; YAML writes ``.inf``)."""
    if isinstance(obj, dict):
        return {str(k): to_plain(v, finite=finite) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [to_plain(v, finite=finite) for v in obj]
    if isinstance(obj, Enum):
        return to_plain(obj.value, finite=finite)
    if isinstance(obj, float):
        return None if math.isnan(obj) or (finite and math.isinf(obj)) else obj
    if isinstance(obj, bool) or obj is None:
        return obj
    if isinstance(obj, str):
        return str(obj)  # str subclasses (torch.__version__) are not YAML-safe
    if isinstance(obj, int):
        return int(obj)
    if hasattr(obj, "tolist"):  # torch tensors and numpy arrays/scalars
        return to_plain(obj.tolist(), finite=finite)
    return str(obj)  # paths and anything else: their text


def dump_yaml(data: Any) -> str:
    import yaml

    # libyaml's emitter when PyYAML has it: the same text as the pure-Python one, ~5x faster
    dumper = getattr(yaml, "CSafeDumper", yaml.SafeDumper)
    return yaml.dump(to_plain(data), Dumper=dumper, sort_keys=False, allow_unicode=True, width=120)


def dump_json(data: Any) -> str:
    """Strict JSON: NaN and +-inf become null (YAML keeps infinities as ``.inf``)."""
    return json.dumps(to_plain(data, finite=True), indent=2, allow_nan=False)


class DuplicateKey(Exception):
    def __init__(self, key: str, line: int):
        super().__init__(key)
        self.key, self.line = key, line


@functools.lru_cache(maxsize=None)
def strict_loader(c: bool = True):
    """PyYAML's safe loader (the libyaml C parser when installed and ``c``: ~10x faster on the run reports a
    compare resume reads) that refuses a mapping key given twice. Built on first use: yaml is not
    imported by ``--help``. ``c=False``: the pure-Python parser, whose deep nesting is a RecursionError
    (libyaml's own depth limit is a parse error that would not say why)."""
    import yaml

    base = getattr(yaml, "CSafeLoader", yaml.SafeLoader) if c else yaml.SafeLoader

    class StrictSafeLoader(base):  # type: ignore[misc,valid-type]
        def construct_mapping(self, node, deep=False):
            seen: set = set()
            for key, _ in node.value:
                if isinstance(key, yaml.ScalarNode):
                    if key.value in seen:
                        raise DuplicateKey(key.value, key.start_mark.line + 1)
                    seen.add(key.value)
            return super().construct_mapping(node, deep=deep)

    return StrictSafeLoader


def load_yaml(text: str | bytes, what: str) -> Any:
    """Parse a YAML document safely: plain data only (``safe_load``), no aliases (an alias
    bomb expands exponentially), bounded size and depth. Errors are one-line UsageErrors
    naming ``what`` (a file name or "preset x")."""
    import yaml

    if isinstance(text, bytes):
        if len(text) > MAX_YAML_BYTES:
            raise UsageError(f"{what} is too large ({len(text)} bytes; at most {MAX_YAML_BYTES})")
        try:
            text = text.decode("utf-8")
        except UnicodeDecodeError:
            raise UsageError(f"{what} is not UTF-8 text") from None
    if len(text) > MAX_YAML_BYTES:
        raise UsageError(f"{what} is too large ({len(text)} characters; at most {MAX_YAML_BYTES})")
    if "\x00" in text:
        raise UsageError(f"{what} is binary, not YAML text")
    loader = strict_loader()
    try:
        if "*" in text:  # an alias is written *name: without a "*" there is none, and no need for a second parse
            refuse_aliases(text, what, loader)
        data = yaml.load(text, Loader=loader)  # noqa: S506 - a SafeLoader subclass (plain data only)
    except DuplicateKey as dup:  # YAML keeps the last silently: a preset's first `train:` block would vanish
        raise UsageError(f"{what} gives key {dup.key!r} twice (line {dup.line}); merge the two into one") from None
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" (line {mark.line + 1})" if mark is not None else ""
        problem = getattr(exc, "problem", None) or str(exc).strip().splitlines()[0]
        raise UsageError(f"{what} is not valid YAML{where}: {problem}") from None
    except RecursionError:
        raise UsageError(f"{what} is nested too deeply") from None
    except UsageError:
        raise
    except (ValueError, OverflowError) as exc:  # a scalar YAML resolves but cannot build: 2020-13-45, 5000 digits
        raise UsageError(f"{what} has a value that cannot be read ({' '.join(str(exc).split())[:100]}); write plain "
                         "numbers and quote text") from None
    if too_deep(data):
        raise UsageError(f"{what} is nested too deeply (more than {MAX_YAML_DEPTH} levels)")
    return data


def refuse_aliases(text: str, what: str, loader: Any) -> None:
    """Scan the events before building anything: an alias bomb expands exponentially when built."""
    import yaml

    for event in yaml.parse(text, Loader=loader):
        if isinstance(event, yaml.AliasEvent):
            raise UsageError(f"{what} uses a YAML alias (*name); write the values out instead")


def too_deep(data: Any) -> bool:
    """Lists and mappings nested more than MAX_YAML_DEPTH levels (code that walks them recursively,
    from validation to deepcopy, would hit Python's recursion limit)."""
    return _depth(data) > MAX_YAML_DEPTH


def _depth(obj: Any, level: int = 0) -> int:
    if level > MAX_YAML_DEPTH:
        return level
    if isinstance(obj, dict):
        return max((_depth(v, level + 1) for v in obj.values()), default=level + 1)
    if isinstance(obj, list):
        return max((_depth(v, level + 1) for v in obj), default=level + 1)
    return level


def render_table(rows: Sequence[dict[str, Any]], style: str = "table", headers: Sequence[str] | None = None,
                 floatfmt: str = ".4g") -> str:
    """Rows of dicts as a plain-text (``style="table"``) or markdown (``"md"``) table; ``"csv"``
    gives comma-separated values with a header line."""
    style = str(getattr(style, "value", style))  # a Format enum or its text
    # every key of every row (in first-seen order): rows need not all carry the same optional columns
    headers = list(headers) if headers is not None else list(dict.fromkeys(k for r in rows for k in r))
    if style == "csv":
        return _csv(rows, headers)
    from tabulate import tabulate

    body = [[_cell(r.get(h)) for h in headers] for r in rows]
    fmt = "github" if style == "md" else "simple"
    return tabulate(body, headers=headers, tablefmt=fmt, floatfmt=floatfmt, disable_numparse=False)


def _csv(rows: Sequence[dict[str, Any]], headers: list[str]) -> str:
    import csv
    import io

    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    writer.writerow(headers)
    for r in rows:
        writer.writerow(["" if r.get(h) is None else _cell(to_plain(r.get(h))) for h in headers])
    return buf.getvalue()


def _cell(value: Any) -> Any:
    if isinstance(value, (list, tuple)):
        return ", ".join(str(_cell(v)) for v in value)
    if isinstance(value, dict):
        return ", ".join(f"{k}={_cell(v)}" for k, v in value.items())
    if value is None:
        return ""
    return value
