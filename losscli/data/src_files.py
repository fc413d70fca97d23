"""Local tensor files: ``*.npz`` (numpy) or ``*.pt`` (a dict of tensors, loaded with
``weights_only=True``) with keys ``x``, ``y`` and optionally ``x_val``/``y_val``,
``x_test``/``y_test`` and ``class_names``.

The kind follows the per-sample rank of ``x`` unless option ``kind`` says otherwise:
rank 1 -> "vector" (float) , rank 2 -> "image" with one channel, rank 3 -> "image"
(``[C, H, W]``; ``[H, W, C]`` with C in {1, 3, 4} is transposed). Integer ``x`` with
``kind="tokens"`` keeps its ids. A missing test split is carved with ``test_fraction``.
"""

from __future__ import annotations

import os
from typing import Any

import numpy as np
import torch

from losscli.data.bundle import KINDS, carve_split, make_bundle
from losscli.data.registry import register_dataset
from losscli.errors import UsageError

SUFFIXES = (".npz", ".pt", ".pth")
OPTIONS = {"kind": None, "num_classes": None, "test_fraction": 0.2}


def _read(path: str) -> dict[str, Any]:
    if not os.path.isfile(path):
        raise UsageError(f"{path}: no such file (expected a .npz or .pt file with arrays x and y)")
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
    raw = _read(path)
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
    info: dict[str, Any] = {"source": f"file {os.path.abspath(path)}"}
    if "_test" not in xs:
        frac = float(options["test_fraction"])
        y = ys[""].reshape(-1).long()
        keep, carved = carve_split(y, frac, split_seed + 7919)
        xs["_test"], ys["_test"] = xs[""][carved], ys[""][carved]
        xs[""], ys[""] = xs[""][keep], ys[""][keep]
        info["test_source"] = f"carved from train (fraction {frac:g}, split_seed {split_seed})"
    names = raw.get("class_names")
    names = [str(n) for n in np.asarray(names).tolist()] if names is not None else None
    return make_bundle(
        os.path.basename(path), x_train=xs[""], y_train=ys[""], x_test=xs["_test"], y_test=ys["_test"],
        x_val=xs.get("_val"), y_val=ys.get("_val"), kind=kind, num_classes=options["num_classes"],
        class_names=names, val_fraction=val_fraction, split_seed=split_seed, info=info,
    )


@register_dataset("file", options=OPTIONS, kind="", doc="a local .npz or .pt file with x, y (and x_test, y_test)")
def load_file_source(*, data_dir=None, download=False, val_fraction=0.1, split_seed=0, options=None, path: str = ""):
    if not path:
        raise UsageError("file: give the path of a .npz or .pt file as the dataset name")
    return load_file(os.path.expanduser(path), val_fraction=val_fraction, split_seed=split_seed, options=options)
