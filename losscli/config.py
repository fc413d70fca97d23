"""Typed configuration: presets (YAML) + ``--set key=value`` overrides, validated.

One schema serves every command: ``train`` reads ``loss``/``seed``, ``compare`` reads
``losses``/``seeds``/``noise``/``imbalance``. Unknown keys and wrong types raise a
UsageError naming the key (with a "did you mean"). No torch here: the CLI parses and
validates configs before anything heavy is imported.
"""

from __future__ import annotations

import copy
import dataclasses
import difflib
import os
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Optional, Union

import yaml

from losscli.errors import UsageError
from losscli.specs import parse_assignments, split_top_level

PRESET_DIR = Path(__file__).resolve().parent / "presets"


@dataclass
class DatasetConfig:
    name: str = "mnist1d"
    data_dir: Optional[str] = None
    download: bool = False
    val_fraction: float = 0.1
    split_seed: int = 0
    options: dict = field(default_factory=dict)


@dataclass
class ModelConfig:
    name: str = "auto"
    options: dict = field(default_factory=dict)


@dataclass
class TrainConfig:
    epochs: int = 100
    batch_size: int = 128
    optimizer: str = "adamw"  # adamw | sgd
    lr: float = 0.01
    weight_decay: float = 0.0005
    momentum: float = 0.9
    schedule: str = "cosine"  # cosine | onecycle | step | constant
    warmup_epochs: float = 1.0
    step_milestones: list = field(default_factory=lambda: [0.5, 0.75])  # fractions of training, for "step"
    step_gamma: float = 0.1
    grad_clip: Optional[float] = None
    eval_every: int = 1


@dataclass
class Config:
    loss: str = "ce"
    losses: list = field(default_factory=lambda: ["ce"])
    baseline: Optional[str] = None
    seed: int = 0
    seeds: Union[int, list] = 3
    noise: Union[str, list] = "none"
    imbalance: Union[str, list] = "none"
    dataset: DatasetConfig = field(default_factory=DatasetConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    device: str = "auto"  # auto | cpu | cuda | cuda:N
    compile: Optional[bool] = None  # None: on for CUDA, off for CPU
    precision: str = "auto"  # auto (bf16 autocast on CUDA) | fp32 | bf16
    # CPU intra-op threads per run: None = auto (1 for small models, which run fastest that way)
    threads: Optional[int] = None
    # compare worker processes: None = auto (one per CPU core on CPU; 1 on CUDA, where runs are batched)
    jobs: Optional[int] = None
    # train compatible runs stacked with torch.func: None = auto (on CUDA, where tiny models are
    # launch-bound; off on CPU, where stacked grouped convolutions measured slower than separate runs)
    batch_runs: Optional[bool] = None

    # -- views used by the commands -----------------------------------------------------
    def seed_list(self) -> list[int]:
        if isinstance(self.seeds, int):
            if self.seeds < 1:
                raise UsageError("seeds must be >= 1")
            return list(range(self.seeds))
        return [int(s) for s in self.seeds]

    def noise_list(self) -> list[str]:
        return _as_list(self.noise)

    def imbalance_list(self) -> list[str]:
        return _as_list(self.imbalance)

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)


def _as_list(value: Union[str, list]) -> list[str]:
    if isinstance(value, str):
        return split_top_level(value) or ["none"]
    return [str(v) for v in value]


# --------------------------------------------------------------------------- loading
def list_presets() -> list[dict[str, str]]:
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
        if not path.is_file():
            raise UsageError(f"preset file {name_or_file!r} not found")
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
        data = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" (line {mark.line + 1})" if mark is not None else ""
        raise UsageError(f"preset {str(path)!r} is not valid YAML{where}: {getattr(exc, 'problem', exc)}") from None
    if not isinstance(data, dict):
        raise UsageError(f"preset {str(path)!r} must be a YAML mapping of config keys")
    data.pop("description", None)
    return data


def build_config(preset: Optional[str] = None, overrides: Optional[dict] = None, sets: Optional[list[str]] = None) -> Config:
    """Defaults <- preset <- explicit overrides (nested dict) <- ``--set key=value``."""
    merged: dict = {}
    if preset:
        merged = _deep_merge(merged, read_preset(preset))
    if overrides:
        merged = _deep_merge(merged, overrides)
    if sets:
        for key, value in parse_assignments(sets, what="--set").items():
            merged = _deep_merge(merged, _dotted(key, value))
    return from_dict(merged)


def from_dict(data: dict) -> Config:
    return _build(Config, data, prefix="")


def _dotted(key: str, value: Any) -> dict:
    out: dict = {}
    cur = out
    parts = key.split(".")
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
        raise UsageError(f"unknown config key {prefix + str(key)!r}.{hint} Valid keys here: {', '.join(prefix + f for f in fields)}.")
    kwargs = {}
    for name, value in data.items():
        kwargs[name] = _coerce(hints[name], value, prefix + name)
    return cls(**kwargs)


def _coerce(tp: Any, value: Any, key: str) -> Any:
    origin = typing.get_origin(tp)
    if dataclasses.is_dataclass(tp):
        return _build(tp, value, key + ".")
    if origin is Union:
        args = typing.get_args(tp)
        if value is None and type(None) in args:
            return None
        errors = []
        for arg in args:
            if arg is type(None):
                continue
            try:
                return _coerce(arg, value, key)
            except UsageError as exc:
                errors.append(str(exc))
        names = " or ".join(getattr(a, "__name__", str(a)) for a in args if a is not type(None))
        raise UsageError(f"config key {key!r} must be {names}, got {value!r}")
    if tp is bool:
        if isinstance(value, bool):
            return value
        raise UsageError(f"config key {key!r} must be true or false, got {value!r}")
    if tp is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise UsageError(f"config key {key!r} must be an integer, got {value!r}")
        return value
    if tp is float:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise UsageError(f"config key {key!r} must be a number, got {value!r}")
        return float(value)
    if tp is str:
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return str(value)
        if not isinstance(value, str):
            raise UsageError(f"config key {key!r} must be a string, got {value!r}")
        return value
    if tp is list or origin is list:
        if isinstance(value, str):
            return split_top_level(value)
        if not isinstance(value, list):
            raise UsageError(f"config key {key!r} must be a list, got {value!r}")
        return value
    if tp is dict or origin is dict:
        if not isinstance(value, dict):
            raise UsageError(f"config key {key!r} must be a mapping, got {value!r}")
        return value
    return value
