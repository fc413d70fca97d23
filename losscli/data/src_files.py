"""Local files: ``*.npz`` (numpy) or ``*.pt`` (a dict of tensors, loaded with ``weights_only=True``)
with keys ``x``, ``y`` and optionally ``x_val``/``y_val``, ``x_test``/``y_test`` and ``class_names``;
or a table, ``*.csv`` (a header row) or ``*.parquet``: the label in option ``label_column`` (found
by name otherwise: label, target, class, y...), the features in option ``feature_columns`` or every
numeric column but the label (``losscli.data.tabular``).

The kind follows the per-sample rank of ``x`` unless option ``kind`` says otherwise:
rank 1 -> "vector" (float) , rank 2 -> "image" with one channel, rank 3 -> "image"
(``[C, H, W]``; ``[H, W, C]`` with C in {1, 3, 4} is transposed). Integer ``x`` with
``kind="tokens"`` keeps its ids. A missing test split is carved with ``test_fraction``.

Inputs are standardised with training-split statistics (per feature, or per channel for images;
``losscli.data.normalize``) unless option ``normalize`` is false (``--no-normalize``); token ids never.

The task follows ``y`` unless option ``task`` says otherwise: float targets with a non-integer
value make a regression dataset (float32 targets, for ``hl_gauss``); integer-valued ones are
class labels (``task=regression`` reads e.g. integer counts as regression targets).
"""

from __future__ import annotations

import os
from typing import Any

import numpy as np
import torch

from losscli.data import tabular
from losscli.data.bundle import KINDS, TASKS, carve_split, is_regression_target, make_bundle
from losscli.data.normalize import standardize
from losscli.data.registry import register_dataset
from losscli.errors import UsageError

SUFFIXES = (".npz", ".pt", ".pth", ".csv", ".parquet")
OPTIONS = {"kind": None, "num_classes": None, "test_fraction": 0.2, "task": None, "label_column": None,
           "feature_columns": None, "normalize": True}


def _read(path: str, options: dict[str, Any]) -> dict[str, Any]:
    if not os.path.isfile(path):
        raise UsageError(f"{path}: no such file (expected a .npz, .pt, .csv or .parquet file with x and y)")
    low = path.lower()
    if low.endswith((".csv", ".parquet")):
        return _read_table(path, options)
    for key in ("label_column", "feature_columns"):
        if options[key] is not None:
            raise UsageError(f"{path}: option {key} names table columns (.csv, .parquet); .npz/.pt files hold x and y")
    try:
        if low.endswith(".npz"):
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


def _read_table(path: str, options: dict[str, Any]) -> dict[str, Any]:
    """``{x, y, class_names, table}`` from a CSV (header row) or a parquet file: the feature columns
    (option feature_columns, else every numeric column but the label) and the label column."""
    columns = _csv_columns(path) if path.lower().endswith(".csv") else _parquet_columns(path)
    names = list(columns)
    label = tabular.pick_label(names, options["label_column"], path)
    numeric = {c for c, v in columns.items() if tabular.is_numeric(v)}
    features, ignored = tabular.pick_features(names, numeric, label, options["feature_columns"], path)
    x = tabular.feature_matrix(columns, features, path)
    ys, class_names, task = tabular.encode_labels({"": columns[label]}, options["task"], path)
    return {"x": x, "y": ys[""], "class_names": class_names, "task": task,
            "table": tabular.table_info(label, features, ignored)}


def _csv_columns(path: str) -> dict[str, np.ndarray]:
    import csv

    try:
        with open(path, newline="", encoding="utf-8-sig") as fh:
            rows = list(csv.reader(fh))
    except (OSError, UnicodeDecodeError, csv.Error) as e:
        raise UsageError(f"{path}: cannot read ({type(e).__name__}: {e})") from None
    lines = [(i, r) for i, r in enumerate(rows, start=1) if any(cell.strip() for cell in r)]  # blank lines skipped
    if len(lines) < 2:
        raise UsageError(f"{path}: a CSV needs a header row and at least one data row")
    header = [h.strip() for h in lines[0][1]]
    if len(set(header)) != len(header) or "" in header:
        raise UsageError(f"{path}: the header row needs distinct, non-empty column names (got {', '.join(header)})")
    for i, row in lines[1:]:
        if len(row) != len(header):
            raise UsageError(f"{path}, line {i}: {len(row)} cells but the header has {len(header)}")
    body = [r for _, r in lines[1:]]
    line_of = lambda k: lines[1 + k][0]  # noqa: E731 - data row k -> line number in the file
    return {h: tabular.column_from_cells([r[j] for r in body], h, path, line_of) for j, h in enumerate(header)}


def _parquet_columns(path: str) -> dict[str, np.ndarray]:
    try:
        import pyarrow.parquet as pq

        table = pq.read_table(path)
    except ImportError:
        raise UsageError(f"{path}: reading parquet needs pyarrow (pip install pyarrow)") from None
    except Exception as e:  # noqa: BLE001 - a corrupt or non-parquet file is one line
        raise UsageError(f"{path}: cannot read as parquet ({type(e).__name__}: {str(e).strip().splitlines()[0][:160]})") from None
    if len(set(table.column_names)) != len(table.column_names):
        raise UsageError(f"{path}: column names must be distinct")
    return tabular.arrow_columns(table)


def _array(key: str, value: Any, path: str) -> torch.Tensor:
    """One array of the file as a tensor: real numbers, one row per example (labels: one per row)."""
    t = value if isinstance(value, torch.Tensor) else None
    if t is None:
        a = np.asarray(value)
        if a.dtype.kind not in "biuf":
            raise UsageError(f"{path}: {key} holds {a.dtype} values; x and y must be arrays of real numbers "
                             "(class labels as integers 0..C-1; a table with text labels can be a .csv)")
        t = torch.as_tensor(a)
    elif t.dtype.is_complex:
        raise UsageError(f"{path}: {key} holds {t.dtype} values; x and y must be arrays of real numbers")
    if t.dim() == 0:
        raise UsageError(f"{path}: {key} is a single value; it must hold one row per example")
    if key.startswith("y") and t.dim() > 1 and t[0].numel() != 1:
        raise UsageError(f"{path}: {key} has shape {tuple(t.shape)}; it must hold one label per row (shape [N])")
    return t


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
    raw = _read(path, options)
    table_task, table = raw.pop("task", None), raw.pop("table", None)
    missing = [k for k in ("x", "y") if k not in raw]
    if missing:
        raise UsageError(f"{path}: missing key(s) {', '.join(missing)}; found {', '.join(sorted(raw)) or 'nothing'}")
    for a, b in (("x_val", "y_val"), ("x_test", "y_test")):
        if (a in raw) != (b in raw):
            raise UsageError(f"{path}: {a} and {b} must be given together")
    t = {k: _array(k, v, path) for k, v in raw.items() if k != "class_names"}
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
    task = table_task or _task(torch.cat([v.reshape(-1) for v in ys.values()]), options["task"], path)
    if task == "regression" and options["num_classes"] is not None:
        raise UsageError(f"{path}: option num_classes does not apply to a regression dataset (float targets)")
    info: dict[str, Any] = {"source": f"file {os.path.abspath(path)}"}
    if table:
        info["table"] = table
    row_index = None
    if "_test" not in xs:
        frac = float(options["test_fraction"])
        y = ys[""].reshape(-1)
        keep, carved = carve_split(y if task == "regression" else y.long(), frac, split_seed + 7919,
                                   stratify=task == "classification")
        xs["_test"], ys["_test"] = xs[""][carved], ys[""][carved]
        xs[""], ys[""] = xs[""][keep], ys[""][keep]
        row_index = keep
        info["test_source"] = f"carved from train (fraction {frac:g}, split_seed {split_seed})"
    names = raw.get("class_names")
    names = [str(n) for n in np.asarray(names).tolist()] if names is not None else None
    bundle = make_bundle(
        os.path.basename(path), x_train=xs[""], y_train=ys[""], x_test=xs["_test"], y_test=ys["_test"],
        x_val=xs.get("_val"), y_val=ys.get("_val"), kind=kind, num_classes=options["num_classes"],
        class_names=names, val_fraction=val_fraction, split_seed=split_seed, info=info, task=task,
        row_index=row_index,
    )
    return standardize(bundle, _flag(options["normalize"], path))


def _flag(value: Any, path: str) -> bool:
    if not isinstance(value, bool):
        raise UsageError(f"{path}: option normalize must be true or false, got {value!r}")
    return value


@register_dataset("file", options=OPTIONS, kind="",
                  doc="a local .npz/.pt file with x, y (and x_test, y_test), or a .csv/.parquet table")
def load_file_source(*, data_dir=None, download=False, val_fraction=0.1, split_seed=0, options=None, path: str = ""):
    if not path:
        raise UsageError("file: give the path of a .npz, .pt, .csv or .parquet file as the dataset name")
    return load_file(os.path.expanduser(path), val_fraction=val_fraction, split_seed=split_seed, options=options)
