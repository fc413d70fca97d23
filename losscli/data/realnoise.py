"""Real-world label noise: per-sample noisy labels read from a file (``file:PATH``) or from the
CIFAR-N release of human annotations (``cifar10n:aggre``..., ``cifar100n:noisy``; Wei et al. 2022,
"Learning with Noisy Labels Revisited: A Study Using Real-World Human Annotations", ICLR).

The labels are aligned with the dataset's training data as stored: label ``i`` belongs to row ``i``
of the training set (CIFAR's 50,000 training images in batch order; a file dataset's ``x``), before
losscli holds out validation (and test, when it carves one). Each training example gets the noisy
label of its row (``DataBundle.train_index``); the rows held out for validation get theirs too, so
validation is as noisy as a practitioner's (``--clean-val`` keeps it clean). A dataset that brings
its own validation split keeps it clean: the file has no labels for it. Test labels stay clean.

Label files: ``.npy`` (an integer array), ``.pt`` (a tensor or list, or a dict with one label
array or a ``noisy_label``/``label``/``y`` entry), ``.csv`` (one column, or a ``noisy_label``/
``label``/``y`` column; a header row is optional). CIFAR-N's ``CIFAR-10_human.pt`` holds numpy
arrays ``clean_label``, ``aggre_label``, ``worse_label``, ``random_label1..3``;
``CIFAR-100_human.pt`` holds ``clean_label``, ``noisy_label`` (and coarse variants). Its
``clean_label`` must equal the dataset's labels, which proves the two are aligned.
"""

from __future__ import annotations

import os
from typing import Any

import numpy as np
import torch

from losscli.data.settings import HUMAN_LABEL_SETS, NoiseSpec, file_digest
from losscli.errors import UsageError

HUMAN_FILES = {"cifar10n": "CIFAR-10_human.pt", "cifar100n": "CIFAR-100_human.pt"}
HUMAN_DATASETS = {"cifar10n": "cifar10", "cifar100n": "cifar100"}
LABEL_KEYS = ("noisy_label", "noisy_labels", "label", "labels", "y")


def _integers(values: Any, where: str) -> np.ndarray:
    a = np.asarray(values.numpy() if isinstance(values, torch.Tensor) else values)
    if a.dtype.kind == "f" and np.all(np.isfinite(a)) and np.all(a == np.round(a)):
        a = a.astype(np.int64)
    if a.dtype.kind not in "iu":
        raise UsageError(f"{where}: noisy labels must be integers (class ids), got {a.dtype}")
    if a.ndim > 1 and a[:1].size != 1:  # [N, 2] would be read as 2N labels, all misaligned
        raise UsageError(f"{where}: shape {a.shape}; give one label per training row (shape [N])")
    return a.reshape(-1).astype(np.int64)


def _pick(obj: dict, where: str) -> Any:
    arrays = {k: v for k, v in obj.items() if isinstance(k, str)}
    for k in LABEL_KEYS:
        if k in arrays:
            return arrays[k]
    if len(arrays) == 1:
        return next(iter(arrays.values()))
    raise UsageError(f"{where}: a dict of several arrays ({', '.join(sorted(arrays)[:6])}); name the labels "
                     f"{' or '.join(LABEL_KEYS[:3])}")


def _load_pt(path: str, what: str) -> Any:
    """A .pt file of tensors or numpy arrays (CIFAR-N's release holds numpy arrays), never code."""
    import torch.serialization as ts

    from losscli.safeload import load_torch

    reconstruct = np._core.multiarray._reconstruct if hasattr(np, "_core") else np.core.multiarray._reconstruct
    # numpy 1.x (the release was written with it) and 2.x pickle arrays under different module names
    allowed: list = [np.ndarray, np.dtype, (reconstruct, "numpy.core.multiarray._reconstruct"),
                     (reconstruct, "numpy._core.multiarray._reconstruct")]
    allowed += [type(np.dtype(t)) for t in ("int64", "int32", "int16", "uint8", "float64", "float32", "bool")]
    with ts.safe_globals(allowed):
        return load_torch(path, what)


def read_label_file(path: str) -> np.ndarray:
    """The integer labels in ``path`` (.npy, .pt or .csv)."""
    where = f"noise file {path}"
    low = path.lower()
    try:
        if low.endswith(".npy"):
            return _integers(np.load(path, allow_pickle=False), where)
        if low.endswith(".csv"):
            return _read_csv(path, where)
    except UsageError:
        raise
    except (OSError, ValueError) as exc:
        raise UsageError(f"cannot read {where} ({type(exc).__name__}: {str(exc).strip()[:160]})") from None
    obj = _load_pt(path, "noisy labels")
    return _integers(_pick(obj, where) if isinstance(obj, dict) else obj, where)


def _read_csv(path: str, where: str) -> np.ndarray:
    import csv

    with open(path, newline="", encoding="utf-8-sig") as fh:
        rows = [r for r in csv.reader(fh) if any(c.strip() for c in r)]
    if not rows:
        raise UsageError(f"{where} is empty")
    col = 0
    if not rows[0][0].strip().lstrip("-").isdigit():  # a header row
        header = [h.strip() for h in rows[0]]
        rows = rows[1:]
        if len(header) > 1:
            named = [k for k in LABEL_KEYS if k in header]
            if not named:
                raise UsageError(f"{where}: {len(header)} columns; name the label column one of {', '.join(LABEL_KEYS)}")
            col = header.index(named[0])
    try:
        return np.asarray([int(r[col]) for r in rows], dtype=np.int64)
    except (ValueError, IndexError):
        raise UsageError(f"{where}: every row needs an integer label in column {col + 1}") from None


def human_label_file(kind: str, data_dir: str | None) -> str:
    """Where the CIFAR-N release file is: ``--data-dir`` (or the default data dir) or its
    ``CIFAR-N``/``cifar-10-100n/data`` subfolders."""
    from losscli.data.cache import default_data_dir

    root = os.path.abspath(os.path.expanduser(data_dir or default_data_dir()))
    name = HUMAN_FILES[kind]
    for d in (root, os.path.join(root, "CIFAR-N"), os.path.join(root, "cifar-n"), os.path.join(root, "cifar-10-100n", "data")):
        if os.path.isfile(os.path.join(d, name)):
            return os.path.join(d, name)
    raise UsageError(f"{kind}: no {name} in {root} (nor its CIFAR-N/ subfolder); put the CIFAR-N release's label "
                     "file there (github.com/UCSC-REAL/cifar-10-100n, data/) or pass --data-dir DIR")


def _human_labels(parsed: NoiseSpec, bundle, data_dir: str | None, info: dict) -> np.ndarray:
    wanted = HUMAN_DATASETS[parsed.kind]
    if bundle.name != wanted:
        raise UsageError(f"noise {parsed} is the human annotation of {wanted}'s training set; use it with --dataset "
                         f"{wanted} (got {bundle.name})")
    path = human_label_file(parsed.kind, data_dir)
    obj = _load_pt(path, "CIFAR-N labels")
    key = HUMAN_LABEL_SETS[parsed.kind][parsed.source]
    if not isinstance(obj, dict) or key not in obj:
        found = ", ".join(sorted(map(str, obj))[:8]) if isinstance(obj, dict) else type(obj).__name__
        raise UsageError(f"{path} is not the CIFAR-N label file: no {key!r} (found {found})")
    info.update(file=path, sha256=file_digest(path), label_set=key)
    noisy = _integers(obj[key], path)
    if "clean_label" in obj:  # the release's own copy of the true labels: proof of alignment
        _check_aligned(_integers(obj["clean_label"], path), bundle, path, wanted)
    return noisy


def _check_aligned(clean: np.ndarray, bundle, path: str, wanted: str) -> None:
    """The file's clean labels must equal the dataset's at every row the bundle holds."""
    pairs = [(bundle.train_index, bundle.y_train_clean)]
    if bundle.val_index is not None:
        pairs.append((bundle.val_index, bundle.y_val))
    idx = torch.cat([i for i, _ in pairs]).numpy()
    ours = torch.cat([y for _, y in pairs]).numpy()
    if len(idx) and int(idx.max()) >= len(clean):
        raise UsageError(f"{path}: {len(clean)} labels but {wanted}'s training data has more rows; the label file "
                         f"does not belong to these {wanted} files")
    differ = int((clean[idx] != ours).sum())
    if differ:
        raise UsageError(f"{path}: its clean_label disagrees with {wanted}'s training labels at {differ} of {len(idx)} "
                         f"rows; the label file does not belong to these {wanted} files")


def real_noise(bundle, parsed: NoiseSpec, noisy_val: bool, data_dir: str | None) -> tuple[torch.Tensor, torch.Tensor, dict]:
    """``(noisy training labels, validation labels, info)`` for ``file:`` or CIFAR-N noise."""
    info: dict[str, Any] = {"method": "per-sample labels from a file" if parsed.kind == "file"
                            else "CIFAR-N human annotations (Wei et al. 2022)"}
    if bundle.train_index is None:
        raise UsageError(f"{bundle.name}: its source does not record training rows, so noisy labels from a file "
                         "cannot be aligned with it")
    if parsed.kind == "file":
        noisy = read_label_file(parsed.source)
        info.update(file=parsed.source, sha256=parsed.digest)
    else:
        noisy = _human_labels(parsed, bundle, data_dir, info)
    n_rows = int(bundle.train_index.max()) + 1 if len(bundle.train_index) else 0
    if bundle.val_index is not None and len(bundle.val_index):
        n_rows = max(n_rows, int(bundle.val_index.max()) + 1)
    if len(noisy) < n_rows:
        raise UsageError(f"noise {parsed.kind}: {len(noisy)} labels but {bundle.name}'s training data has at least "
                         f"{n_rows} rows; the file needs one label per training row, in order")
    if len(noisy) and (noisy.min() < 0 or noisy.max() >= bundle.num_classes):
        bad = int(noisy.min()) if noisy.min() < 0 else int(noisy.max())
        raise UsageError(f"noise {parsed.kind}: label {bad} out of range for {bundle.name}'s {bundle.num_classes} "
                         "classes")
    info["file_rows"] = len(noisy)
    labels = torch.from_numpy(noisy)
    y_train = labels[bundle.train_index]
    y_val = bundle.y_val
    if noisy_val and bundle.val_index is not None:
        y_val = labels[bundle.val_index]
        info["validation"] = "noisy (the file's labels of the held-out rows)"
        info["val_num_flipped"] = int((y_val != bundle.y_val).sum())
    elif noisy_val:
        info["validation"] = "clean (the dataset's own validation split: the file has no labels for it)"
    else:
        info["validation"] = "clean"
    return y_train, y_val, info
