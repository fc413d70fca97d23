"""Local tensor files: ``*.npz`` (numpy) or ``*.pt`` (a dict of tensors, loaded with
``weights_only=True``) with keys ``x``, ``y`` and optionally ``x_val``/``y_val``,
``x_test``/``y_test`` and ``class_names``; or a ``*.csv`` table with a header row, numeric
columns, the target in column ``y`` (option ``label_column``) and the features in the others.

The kind follows the per-sample rank of ``x`` unless option ``kind`` says otherwise:
rank 1 -> "vector" (float) , rank 2 -> "image" with one channel, rank 3 -> "image"
(``[C, H, W]``; ``[H, W, C]`` with C in {1, 3, 4} is transposed). Integer ``x`` with
``kind="tokens"`` keeps its ids. A missing test split is carved with ``test_fraction``.

The task follows ``y`` unless option ``task`` says otherwise: float targets with a non-integer
value make a regression dataset (float32 targets, for ``hl_gauss``); integer-valued ones are
class labels (``task=regression`` reads e.g. integer counts as regression targets).
"""

from __future__ import annotations

import os
from typing import Any

import numpy as np
import torch

from losscli.data.bundle import KINDS, TASKS, carve_split, is_regression_target, make_bundle
from losscli.data.registry import register_dataset
from losscli.errors import UsageError

SUFFIXES = (".npz", ".pt", ".pth", ".csv")
OPTIONS = {"kind": None, "num_classes": None, "test_fraction": 0.2, "task": None, "label_column": None}


def _read(path: str, label_column: str | None) -> dict[str, Any]:
    if not os.path.isfile(path):
        raise UsageError(f"{path}: no such file (expected a .npz, .pt or .csv file with x and y)")
    if path.lower().endswith(".csv"):
        return _read_csv(path, label_column or "y")
    if label_column is not None:
        raise UsageError(f"{path}: option label_column names a .csv column; .npz/.pt files hold x and y")
    try:
        if path.endswith(".npz"):
            with np.load(path, allow_pickle=False) as f:
                return {k: f[k] for k in f.files}
        from losscli.safeload import load_torch

        obj = load_torch(path, "a data file")
    except UsageError:
        raise
    except Exception as e:
        raise UsageError(f"{path}: cannot read ({type(e).__name__}: {str(e).strip().splitlines()[0] if str(e).strip() else ''})") from None
    if not isinstance(obj, dict):
        raise UsageError(f"{path}: expected a dict with keys x and y, got {type(obj).__name__}")
    return dict(obj)


def _read_csv(path: str, label_column: str) -> dict[str, Any]:
    """``{x: [N, D] float64, y: [N] float64}`` from a CSV with a header row and numeric cells."""
    import csv

    try:
        with open(path, newline="", encoding="utf-8") as fh:
            rows = list(csv.reader(fh))
    except (OSError, UnicodeDecodeError) as e:
        raise UsageError(f"{path}: cannot read ({type(e).__name__}: {e})") from None
    lines = [(i, r) for i, r in enumerate(rows, start=1) if any(cell.strip() for cell in r)]  # blank lines skipped
    if len(lines) < 2:
        raise UsageError(f"{path}: a CSV needs a header row and at least one data row")
    header = [h.strip() for h in lines[0][1]]
    if label_column not in header:
        raise UsageError(f"{path}: no target column {label_column!r} (columns: {', '.join(header)}); "
                         "pass --label-column NAME")
    if len(header) < 2:
        raise UsageError(f"{path}: needs at least one feature column besides {label_column!r}")
    values = np.empty((len(lines) - 1, len(header)), dtype=np.float64)
    for k, (i, row) in enumerate(lines[1:]):
        if len(row) != len(header):
            raise UsageError(f"{path}, line {i}: {len(row)} cells but the header has {len(header)}")
        try:
            values[k] = [float(cell) for cell in row]
        except ValueError:
            raise UsageError(f"{path}, line {i}: every cell must be a number ({row!r})") from None
    j = header.index(label_column)
    return {"x": np.delete(values, j, axis=1), "y": values[:, j]}


def _task(y: torch.Tensor, option: str | None, path: str) -> str:
    if option is None:
        return "regression" if is_regression_target(y) else "classification"
    if option not in TASKS:
        raise UsageError(f"{path}: option task must be one of {', '.join(TASKS)}, got {option!r}")
    return option


def _infer_kind(x: torch.Tensor) -> str:
    rank = x.dim() - 1
    if rank == 1:
        return "vector"
    if rank in (2, 3):
        return "image"
    raise UsageError(f"cannot infer the data kind from per-sample shape {tuple(x.shape[1:])}; pass option kind")


def _to_image(x: torch.Tensor) -> torch.Tensor:
    if x.dim() == 3:
        return x[:, None]
    if x.dim() == 4 and x.shape[-1] in (1, 3, 4) and x.shape[1] not in (1, 3, 4):
        return x.permute(0, 3, 1, 2).contiguous()
    return x


def load_file(path: str, *, val_fraction: float = 0.1, split_seed: int = 0, options: dict[str, Any]):
    raw = _read(path, options["label_column"])
    missing = [k for k in ("x", "y") if k not in raw]
    if missing:
        raise UsageError(f"{path}: missing key(s) {', '.join(missing)}; found {', '.join(sorted(raw)) or 'nothing'}")
    for a, b in (("x_val", "y_val"), ("x_test", "y_test")):
        if (a in raw) != (b in raw):
            raise UsageError(f"{path}: {a} and {b} must be given together")
    t = {k: torch.as_tensor(np.asarray(v)) if not isinstance(v, torch.Tensor) else v
         for k, v in raw.items() if k != "class_names"}
    for s in ("", "_val", "_test"):
        if f"x{s}" in t and len(t[f"x{s}"]) != len(t[f"y{s}"].reshape(-1)):
            raise UsageError(f"{path}: x{s} has {len(t[f'x{s}'])} rows but y{s} has {len(t[f'y{s}'].reshape(-1))} labels; "
                             "they must have one label per row")
    kind = options["kind"] or _infer_kind(t["x"])
    if kind not in KINDS:
        raise UsageError(f"{path}: option kind must be one of {', '.join(KINDS)}, got {kind!r}")
    xs = {s: t[f"x{s}"] for s in ("", "_val", "_test") if f"x{s}" in t}
    if kind == "image":
        xs = {k: _to_image(v) for k, v in xs.items()}
    ys = {s: t[f"y{s}"] for s in ("", "_val", "_test") if f"y{s}" in t}
    task = _task(torch.cat([v.reshape(-1) for v in ys.values()]), options["task"], path)
    if task == "regression" and options["num_classes"] is not None:
        raise UsageError(f"{path}: option num_classes does not apply to a regression dataset (float targets)")
    info: dict[str, Any] = {"source": f"file {os.path.abspath(path)}"}
    if "_test" not in xs:
        frac = float(options["test_fraction"])
        y = ys[""].reshape(-1)
        keep, carved = carve_split(y if task == "regression" else y.long(), frac, split_seed + 7919,
                                   stratify=task == "classification")
        xs["_test"], ys["_test"] = xs[""][carved], ys[""][carved]
        xs[""], ys[""] = xs[""][keep], ys[""][keep]
        info["test_source"] = f"carved from train (fraction {frac:g}, split_seed {split_seed})"
    names = raw.get("class_names")
    names = [str(n) for n in np.asarray(names).tolist()] if names is not None else None
    return make_bundle(
        os.path.basename(path), x_train=xs[""], y_train=ys[""], x_test=xs["_test"], y_test=ys["_test"],
        x_val=xs.get("_val"), y_val=ys.get("_val"), kind=kind, num_classes=options["num_classes"],
        class_names=names, val_fraction=val_fraction, split_seed=split_seed, info=info, task=task,
    )


@register_dataset("file", options=OPTIONS, kind="", doc="a local .npz/.pt file with x, y (and x_test, y_test), or a .csv")
def load_file_source(*, data_dir=None, download=False, val_fraction=0.1, split_seed=0, options=None, path: str = ""):
    if not path:
        raise UsageError("file: give the path of a .npz, .pt or .csv file as the dataset name")
    return load_file(os.path.expanduser(path), val_fraction=val_fraction, split_seed=split_seed, options=options)
