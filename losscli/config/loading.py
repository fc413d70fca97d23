"""Configuration from layers: defaults < preset (YAML) < explicit flags < ``--set key=value``.

Unknown keys and wrong types raise a UsageError naming the key (with a "did you mean").
Presets are read with :func:`losscli.serialize.load_yaml` (plain data, no aliases, bounded
size and depth). No torch here: the CLI parses configs before anything heavy is imported.
"""

from __future__ import annotations

import copy
import dataclasses
import difflib
import math
import os
import typing
from pathlib import Path
from typing import Any, Optional, Union

from losscli.config.schema import Config, list_key
from losscli.errors import UsageError
from losscli.lossspec import EmptyItemError, parse_assignments, parse_value, split_list
from losscli.serialize import load_yaml

PRESET_DIR = Path(__file__).resolve().parent.parent / "presets"
#: largest preset file read (presets are a few hundred bytes)
MAX_PRESET_BYTES = 256 * 1024


def list_presets() -> list[dict[str, str]]:
    """Bundled presets: name, first comment line (the description) and path."""
    out = []
    for path in sorted(PRESET_DIR.glob("*.yaml")):
        first = ""
        with open(path, encoding="utf-8") as fh:
            for line in fh:
                if line.startswith("#"):
                    first = line.lstrip("# ").strip()
                    break
        out.append({"name": path.stem, "description": first, "path": str(path)})
    return out


def preset_path(name_or_file: str) -> Path:
    path = Path(name_or_file)
    if path.suffix in (".yaml", ".yml") or os.sep in name_or_file:
        if path.is_dir():
            raise UsageError(f"preset {name_or_file!r} is a directory; pass a preset name or a YAML file")
        if not path.is_file():  # /dev/zero, a FIFO: they exist, and "not found" sent the user looking for a typo
            what = "is not a regular file" if path.exists() else "not found"
            raise UsageError(f"preset file {name_or_file!r} {what}")
        return path
    candidate = PRESET_DIR / f"{name_or_file}.yaml"
    if candidate.is_file():
        return candidate
    names = [p["name"] for p in list_presets()]
    close = difflib.get_close_matches(name_or_file, names, n=1)
    hint = f" Did you mean {close[0]!r}?" if close else ""
    raise UsageError(f"unknown preset {name_or_file!r}.{hint} Presets: {', '.join(names)} (or pass a .yaml file).")


def read_preset(name_or_file: str) -> dict:
    path = preset_path(name_or_file)
    try:
        size = path.stat().st_size
        if size > MAX_PRESET_BYTES:
            raise UsageError(f"preset {str(path)!r} is too large ({size} bytes; at most {MAX_PRESET_BYTES})")
        raw = path.read_bytes()
    except OSError as exc:
        raise UsageError(f"cannot read preset {str(path)!r}: {exc.strerror or exc}") from None
    data = load_yaml(raw, f"preset {str(path)!r}") or {}
    if not isinstance(data, dict):
        raise UsageError(f"preset {str(path)!r} must be a YAML mapping of config keys (see `losscli presets default`)")
    data.pop("description", None)
    return data


def build_config(preset: Optional[str] = None, overrides: Optional[dict] = None,
                 sets: Optional[list[str]] = None) -> Config:
    """Defaults <- preset <- explicit overrides (nested dict) <- ``--set key=value``.

    A preset's model belongs to the preset's dataset: when the dataset is changed (by a flag or
    ``--set``) and the model is not, the model is ``auto`` (picked from the data kind) instead of
    the preset's, which would not fit the new data (``cnn1d`` on a table)."""
    base = read_preset(preset) if preset else {}
    user: dict = _deep_merge({}, overrides or {})
    for key, value in parse_assignments(sets or [], what="--set").items():
        user = _deep_merge(user, _dotted(key, value))
    # each layer is checked on its own first: merging replaces a section that is not a mapping, so a
    # preset's `train: [1, 2]` (or `!!binary`) under `--epochs 1` vanished without a word
    try:
        from_dict(base)
    except UsageError as exc:
        raise UsageError(f"preset {preset!r}: {exc}") from None
    from_dict(user)
    merged = _deep_merge(base, user)
    if _dataset_changed(base, user) and not _model_given(user) and isinstance(merged.get("model"), dict):
        mine = user.get("model") if isinstance(user.get("model"), dict) else {}
        merged["model"] = {"name": "auto", **({"options": mine["options"]} if "options" in mine else {})}
    return from_dict(merged)


def _dataset_changed(base: dict, user: dict) -> bool:
    given = (user.get("dataset") or {}).get("name") if isinstance(user.get("dataset"), dict) else None
    preset = (base.get("dataset") or {}).get("name") if isinstance(base.get("dataset"), dict) else None
    return "model" in base and given is not None and given != preset


def _model_given(user: dict) -> bool:
    model = user.get("model")
    return isinstance(model, dict) and "name" in model


def from_dict(data: dict) -> Config:
    return _build(Config, data, prefix="")


def _dotted(key: str, value: Any) -> dict:
    parts = key.split(".")
    if any(not p.strip() for p in parts):
        raise UsageError(f"--set key {key!r} has an empty part; write section.key=value (e.g. train.lr=0.01)")
    out: dict = {}
    cur = out
    for part in parts[:-1]:
        cur = cur.setdefault(part, {})
    cur[parts[-1]] = value
    return out


def _deep_merge(a: dict, b: dict) -> dict:
    out = copy.deepcopy(a)
    for k, v in b.items():
        if isinstance(v, dict) and isinstance(out.get(k), dict) and k != "options":
            out[k] = _deep_merge(out[k], v)
        elif isinstance(v, dict) and isinstance(out.get(k), dict):  # options: merge one level
            out[k] = {**out[k], **v}
        else:
            out[k] = copy.deepcopy(v)
    return out


def _build(cls: type, data: Any, prefix: str):
    if not isinstance(data, dict):
        raise UsageError(f"config key {prefix.rstrip('.') or '(root)'!r} must be a mapping, got {data!r}")
    hints = typing.get_type_hints(cls)
    fields = {f.name: f for f in dataclasses.fields(cls)}
    unknown = [k for k in data if k not in fields]
    if unknown:
        key = unknown[0]
        close = difflib.get_close_matches(str(key), list(fields), n=1)
        hint = f" Did you mean {prefix + close[0]!r}?" if close else ""
        raise UsageError(f"unknown config key {prefix + str(key)!r}.{hint} "
                         f"Valid keys here: {', '.join(prefix + f for f in fields)}.")
    return cls(**{name: _coerce(hints[name], value, prefix + name) for name, value in data.items()})


def _coerce(tp: Any, value: Any, key: str) -> Any:
    origin = typing.get_origin(tp)
    if dataclasses.is_dataclass(tp):
        return _build(tp, value, key + ".")
    if origin is Union:
        args = typing.get_args(tp)
        if value is None and type(None) in args:
            return None
        options = [a for a in args if a is not type(None)]
        if len(options) == 1:  # Optional[X]: X's own message ("must be a finite number", not "must be float")
            return _coerce(options[0], value, key)
        for arg in options:
            try:
                return _coerce(arg, value, key)
            except EmptyItemError:  # a list it is, with an item missing: say which
                raise
            except UsageError:
                continue
        names = " or ".join(getattr(a, "__name__", str(a)) for a in options)
        raise UsageError(f"config key {key!r} must be {names}, got {value!r}")
    if tp is bool:
        if isinstance(value, bool):
            return value
        raise UsageError(f"config key {key!r} must be true or false, got {value!r}")
    if tp is int:
        if isinstance(value, str):
            value = _number_text(value)
        if isinstance(value, bool) or not isinstance(value, int):
            raise UsageError(f"config key {key!r} must be an integer, got {value!r}")
        return value
    if tp is float:
        if isinstance(value, str):  # YAML 1.1 reads 1e-3 as text
            value = _number_text(value)
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise UsageError(f"config key {key!r} must be a number, got {value!r}")
        if not math.isfinite(value):
            raise UsageError(f"config key {key!r} must be a finite number, got {value!r}")
        return float(value)
    if tp is str:
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return str(value)
        if not isinstance(value, str):
            raise UsageError(f"config key {key!r} must be a string, got {value!r}")
        return value
    if tp is list or origin is list:
        if isinstance(value, str):
            return split_list(value, list_key(key))
        if not isinstance(value, list):
            raise UsageError(f"config key {key!r} must be a list, got {value!r}")
        return value
    if tp is dict or origin is dict:
        if not isinstance(value, dict):
            raise UsageError(f"config key {key!r} must be a mapping, got {value!r}")
        return value
    return value


def _number_text(text: str) -> Any:
    value = parse_value(text)
    return value if isinstance(value, (int, float)) and not isinstance(value, bool) else text
