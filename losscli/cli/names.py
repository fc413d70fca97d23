"""Names for shell completion (loss, dataset, model, preset, calibrator), found without importing anything heavy.

Completion runs the CLI once per Tab press, so it must answer in milliseconds: importing the
registries would import torch (over a second). The names are read from the source of the modules
that register them instead (``@register_loss("focal", ...)``, ``@register_dataset("mnist1d", ...)``,
``@register_model("mlp", ...)``) with one regular expression per registry, a few milliseconds for
every module together; a test checks that the result equals the registries, so a new way of
registering cannot go unnoticed. Callbacks never raise: a completion that fails offers nothing.
"""

from __future__ import annotations

import os
import re
from functools import lru_cache
from pathlib import Path

PACKAGE = Path(__file__).resolve().parent.parent
_FIRST_STRING = r"\(\s*[\"']([A-Za-z0-9_.-]+)[\"']"
LOSS = re.compile(r"register_loss" + _FIRST_STRING)
DATASET = re.compile(r"(?:register_dataset|_register)" + _FIRST_STRING)
MODEL = re.compile(r"register_model" + _FIRST_STRING)
#: at a line's start: the package docstrings show ``@CALIBRATORS.register("name")`` as an example
CALIBRATOR = re.compile(r"^@CALIBRATORS\.register" + _FIRST_STRING, re.MULTILINE)
#: dataset names that take a path after them
PREFIXES = ("hf:", "folder:")
#: dataset files losscli reads directly
DATA_SUFFIXES = (".npz", ".pt", ".pth", ".csv", ".parquet")


def _scan(folder: str, pattern: re.Pattern, prefix: str = "") -> list[str]:
    names: list[str] = []
    for path in sorted((PACKAGE / folder).glob(f"{prefix}*.py")):
        try:
            text = path.read_text(encoding="utf-8")
        except OSError:
            continue
        names += [n for n in pattern.findall(text) if n not in names]
    return names


@lru_cache(maxsize=None)
def loss_names() -> tuple[str, ...]:
    return tuple(sorted(set(_scan("losses", LOSS))))


@lru_cache(maxsize=None)
def dataset_names() -> tuple[str, ...]:
    return tuple(sorted(set(_scan("data", DATASET, "src_")) - {"file", "hf", "folder"}))


@lru_cache(maxsize=None)
def model_names() -> tuple[str, ...]:
    return tuple(sorted(set(_scan("models", MODEL)) | {"auto"}))


@lru_cache(maxsize=None)
def calibrator_names() -> tuple[str, ...]:
    return tuple(sorted(set(_scan("calibrate", CALIBRATOR))))


def preset_names() -> tuple[str, ...]:
    return tuple(sorted(p.stem for p in (PACKAGE / "presets").glob("*.yaml")))


def _matching(names, incomplete: str) -> list[str]:
    return [n for n in names if n.startswith(incomplete)]


def complete_loss(incomplete: str) -> list[str]:
    return _matching(loss_names(), incomplete)


def complete_losses(incomplete: str) -> list[str]:
    """A comma list: complete its last item, keeping the ones before (``ce,fo`` -> ``ce,focal``)."""
    head, _, last = incomplete.rpartition(",")
    return [f"{head},{n}" if head else n for n in _matching(loss_names(), last)]


def complete_calibrators(incomplete: str) -> list[str]:
    """A comma list, as :func:`complete_losses` (``temperature,h`` -> ``temperature,h_calibration``)."""
    head, _, last = incomplete.rpartition(",")
    return [f"{head},{n}" if head else n for n in _matching(calibrator_names(), last)]


def complete_model(incomplete: str) -> list[str]:
    return _matching(model_names(), incomplete)


def complete_preset(incomplete: str) -> list[str]:
    return _matching(preset_names(), incomplete)


def complete_dataset(incomplete: str) -> list[str]:
    """Registered names, ``hf:``/``folder:``, and paths: data files, and directories to go into."""
    for prefix in PREFIXES:
        if incomplete.startswith(prefix):
            return [prefix + p for p in _paths(incomplete[len(prefix):], dirs_only=prefix == "folder:")]
    out = _matching([*dataset_names(), *PREFIXES], incomplete)
    if incomplete[:1] in ("/", ".", "~") or os.sep in incomplete or not out:
        out += _paths(incomplete, dirs_only=False)
    return out


def _paths(incomplete: str, dirs_only: bool) -> list[str]:
    try:
        expanded = os.path.expanduser(incomplete)
        folder, stem = os.path.split(expanded)
        entries = sorted(os.scandir(folder or "."), key=lambda e: e.name)
    except OSError:
        return []
    shown_folder = incomplete[: len(incomplete) - len(stem)]
    out = []
    for e in entries:
        if not e.name.startswith(stem) or (e.name.startswith(".") and not stem.startswith(".")):
            continue
        if e.is_dir():
            out.append(shown_folder + e.name + "/")
        elif not dirs_only and e.name.lower().endswith(DATA_SUFFIXES):
            out.append(shown_folder + e.name)
    return out[:200]


def complete_tracker(incomplete: str) -> list[str]:
    return _matching(("mlflow", "tensorboard"), incomplete)
