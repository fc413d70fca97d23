"""``DataBundle``: one dataset as CPU tensors (train / val / test) plus plain-data facts.

Sources build a bundle with :func:`make_bundle`, which checks dtypes and shapes, carves a
validation split from train when the source has none, and fills ``info``. Noise and
imbalance return new bundles (``dataclasses.replace``); val and test are never touched.

A bundle's ``task`` is ``classification`` (int64 labels, ``num_classes`` classes) or
``regression`` (float32 targets, ``num_classes == 0``: the model's outputs are the loss's bins,
see ``hl_gauss``); regression splits are carved uniformly at random (there are no classes to
stratify by), and label noise, imbalance and class counts do not apply to them.
"""

from __future__ import annotations

import copy
import dataclasses
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch

from losscli.errors import UsageError

KINDS = ("vector", "sequence1d", "image", "tokens")
TASKS = ("classification", "regression")
#: most classes a dataset may infer from its labels (a stray label such as 10**9 would otherwise size a
#: model output and a bincount of that many classes)
MAX_CLASSES = 1_000_000


@dataclass
class DataBundle:
    name: str
    x_train: torch.Tensor
    y_train: torch.Tensor  # labels used for training (possibly corrupted)
    y_train_clean: torch.Tensor
    x_val: torch.Tensor
    y_val: torch.Tensor
    x_test: torch.Tensor
    y_test: torch.Tensor
    num_classes: int
    input_shape: tuple  # per-sample shape
    kind: str  # "vector" | "sequence1d" | "image" | "tokens"
    class_names: list[str] | None = None
    info: dict[str, Any] = field(default_factory=dict)
    task: str = "classification"  # "classification" | "regression" (float targets; num_classes 0)
    # row of each training / validation example in the source's training data as stored (before
    # losscli carved val and test from it): what per-sample label files (``--noise file:``) align with
    train_index: torch.Tensor | None = None
    val_index: torch.Tensor | None = None  # None: the source provided its own validation split

    @property
    def is_regression(self) -> bool:
        return self.task == "regression"

    @property
    def class_counts(self) -> list[int]:
        """Number of training samples per (possibly corrupted) training label."""
        self._need_classes("class counts")
        return torch.bincount(self.y_train, minlength=self.num_classes).tolist()

    @property
    def clean_class_counts(self) -> list[int]:
        self._need_classes("class counts")
        return torch.bincount(self.y_train_clean, minlength=self.num_classes).tolist()

    def _need_classes(self, what: str) -> None:
        if self.is_regression:
            raise UsageError(f"{self.name} is a regression dataset (float targets): it has no {what}")

    @property
    def noisy_mask(self) -> torch.Tensor:
        """Bool ``[N_train]``: training labels that differ from the clean ones."""
        return self.y_train != self.y_train_clean

    def replace(self, **changes: Any) -> "DataBundle":
        """A copy with ``changes`` applied; ``info`` is deep-copied so bundles never share it."""
        changes.setdefault("info", copy.deepcopy(self.info))
        return dataclasses.replace(self, **changes)

    def without_test(self) -> "DataBundle":
        """A copy whose test split is empty: what model selection (tuning) may see."""
        return self.replace(x_test=self.x_test[:0], y_test=self.y_test[:0])

    def sizes(self) -> dict[str, int]:
        return {"train": len(self.y_train), "val": len(self.y_val), "test": len(self.y_test)}


def carve_split(y: torch.Tensor, fraction: float, seed: int, stratify: bool = True) -> tuple[torch.Tensor, torch.Tensor]:
    """Stratified split of indices: ``(keep, carved)`` with ``round(fraction * n_c)`` carved per class;
    with ``stratify=False`` (regression targets) ``round(fraction * n)`` carved uniformly at random.

    Both index tensors are sorted, so the result depends only on ``(y, fraction, seed)``.
    """
    if not 0.0 <= fraction < 1.0:
        raise UsageError(f"val_fraction must be in [0, 1), got {fraction!r}")
    g = torch.Generator().manual_seed(int(seed))
    if not stratify:
        carved_idx = torch.sort(torch.randperm(len(y), generator=g)[: int(round(fraction * len(y)))])[0]
        mask = torch.ones(len(y), dtype=torch.bool)
        mask[carved_idx] = False
        return torch.nonzero(mask).flatten(), carved_idx
    carved = []
    for c in torch.unique(y).tolist():
        idx = torch.nonzero(y == c).flatten()
        k = int(round(fraction * len(idx)))
        if k:
            carved.append(idx[torch.randperm(len(idx), generator=g)[:k]])
    carved_idx = torch.sort(torch.cat(carved))[0] if carved else torch.zeros(0, dtype=torch.long)
    mask = torch.ones(len(y), dtype=torch.bool)
    mask[carved_idx] = False
    return torch.nonzero(mask).flatten(), carved_idx


def _tensor(a: Any) -> torch.Tensor:
    if isinstance(a, np.ndarray) and not a.flags.writeable:
        a = a.copy()
    return torch.as_tensor(a)


def _as_x(x: Any, kind: str, what: str) -> torch.Tensor:
    t = _tensor(x)
    if t.dtype.is_complex:
        raise UsageError(f"{what}: inputs must be real numbers, got {t.dtype}")
    if kind == "tokens":
        if t.dtype.is_floating_point:
            raise UsageError(f"{what}: token ids must be integers, got {t.dtype}")
        return t.to(torch.int64).contiguous()
    out = t.to(torch.float32).contiguous()
    if t.dtype.is_floating_point and not bool(torch.isfinite(out).all()):
        raise UsageError(f"{what}: inputs contain NaN or inf (or values too large for float32); drop or fill "
                         "those values first")
    return out


def _as_y(y: Any, what: str) -> torch.Tensor:
    t = _tensor(y)
    if t.dtype.is_floating_point:
        if not torch.equal(t, t.round()):
            raise UsageError(f"{what}: labels must be integers")
    elif t.dtype == torch.bool or t.dtype.is_complex:
        raise UsageError(f"{what}: labels must be integers, got {t.dtype}")
    was_float = t.dtype.is_floating_point
    t = t.to(torch.int64).reshape(-1)
    if len(t) and int(t.min()) < 0:
        hint = ("; float targets that are all whole numbers are read as class labels: for regression add "
                "--set dataset.options.task=regression") if was_float else ""
        raise UsageError(f"{what}: labels must be >= 0, got {int(t.min())}{hint}")
    return t


def _as_target(y: Any, what: str) -> torch.Tensor:
    """Regression targets: finite float32 ``[N]``."""
    t = _tensor(y)
    if t.dtype == torch.bool or t.dtype.is_complex:
        raise UsageError(f"{what}: regression targets must be real numbers, got {t.dtype}")
    t = t.to(torch.float32).reshape(-1)
    if not bool(torch.isfinite(t).all()):
        raise UsageError(f"{what}: regression targets must be finite (found NaN or inf)")
    return t


#: float targets read as at least this many class labels get a "regression?" warning
MANY_FLOAT_CLASSES = 50


def is_regression_target(y: Any) -> bool:
    """True for float targets with a non-integer value (integer-valued floats read as class labels)."""
    t = _tensor(y)
    return bool(t.dtype.is_floating_point and t.numel() and not torch.equal(t, t.round()))


def make_bundle(
    name: str,
    *,
    x_train: Any,
    y_train: Any,
    x_test: Any,
    y_test: Any,
    kind: str,
    x_val: Any = None,
    y_val: Any = None,
    num_classes: int | None = None,
    class_names: list[str] | None = None,
    val_fraction: float = 0.1,
    split_seed: int = 0,
    info: dict[str, Any] | None = None,
    task: str = "classification",
    row_index: Any = None,
) -> DataBundle:
    """Validate tensors, carve val from train when absent, and build the bundle.

    ``row_index`` is the source row of each ``x_train`` row when the source already held rows out
    (a carved test split); by default row ``i`` is source row ``i``."""
    if kind not in KINDS:
        raise UsageError(f"{name}: unknown data kind {kind!r}; use one of {', '.join(KINDS)}")
    if task not in TASKS:
        raise UsageError(f"{name}: unknown task {task!r}; use one of {', '.join(TASKS)}")
    regression = task == "regression"
    as_y = _as_target if regression else _as_y
    xtr, ytr = _as_x(x_train, kind, f"{name} train"), as_y(y_train, f"{name} train")
    xte, yte = _as_x(x_test, kind, f"{name} test"), as_y(y_test, f"{name} test")
    info = dict(info or {})
    if (x_val is None) != (y_val is None):
        raise UsageError(f"{name}: x_val and y_val must be given together")
    rows = torch.arange(len(ytr)) if row_index is None else torch.as_tensor(row_index, dtype=torch.int64)
    if len(rows) != len(ytr):
        raise ValueError(f"{name}: row_index has {len(rows)} entries for {len(ytr)} training rows")
    val_rows = None
    if x_val is None:
        keep, carved = carve_split(ytr, val_fraction, split_seed, stratify=not regression)
        xva, yva = xtr[carved], ytr[carved]
        xtr, ytr = xtr[keep], ytr[keep]
        rows, val_rows = rows[keep], rows[carved]
        info["val_source"] = f"carved from train (fraction {val_fraction:g}, split_seed {split_seed})"
    else:
        xva, yva = _as_x(x_val, kind, f"{name} val"), as_y(y_val, f"{name} val")
        info["val_source"] = "provided by the dataset"
    for split, (x, y) in {"train": (xtr, ytr), "val": (xva, yva), "test": (xte, yte)}.items():
        if len(x) != len(y):
            raise UsageError(f"{name} {split}: {len(x)} inputs but {len(y)} labels")
        if x.shape[1:] != xtr.shape[1:] and len(x):
            raise UsageError(f"{name} {split}: sample shape {tuple(x.shape[1:])} differs from train {tuple(xtr.shape[1:])}")
    if len(ytr) == 0:
        raise UsageError(f"{name}: the training split is empty")
    if len(yte) == 0:
        raise UsageError(f"{name}: the test split is empty ({len(ytr) + len(yva)} examples in all); give more examples "
                         "or an explicit test split (x_test, y_test)")
    if regression:
        return _regression_bundle(name, (xtr, ytr, xva, yva, xte, yte), kind, info, (rows, val_rows))
    seen = max(int(y.max()) for y in (ytr, yva, yte) if len(y)) + 1
    if num_classes is not None and (isinstance(num_classes, bool) or not isinstance(num_classes, int)
                                    or not 2 <= num_classes <= MAX_CLASSES):
        raise UsageError(f"{name}: num_classes must be an integer from 2 to {MAX_CLASSES}, got {num_classes!r}")
    if num_classes is None and seen > MAX_CLASSES:
        raise UsageError(f"{name}: label {seen - 1} would make {seen} classes (at most {MAX_CLASSES}); labels must be "
                         "class ids 0..C-1: renumber them")
    classes_inferred = num_classes is None
    if num_classes is None:
        num_classes = seen
    elif seen > num_classes:
        raise UsageError(f"{name}: label {seen - 1} out of range for {num_classes} classes")
    if num_classes < 2:
        raise UsageError(f"{name}: every label is {int(ytr[0])}; classification needs at least 2 classes")
    if class_names is not None:
        class_names = [str(c) for c in class_names]
        if len(class_names) != num_classes:
            class_names = None
    if classes_inferred and seen >= MANY_FLOAT_CLASSES and _tensor(y_train).dtype.is_floating_point:
        # whole-number float targets (counts, scores, sklearn's diabetes) are read as class labels: with this
        # many classes it is more likely a regression target, and nothing else would say so
        info["warnings"] = [*info.get("warnings", []), (
            f"{name}: its float targets are all whole numbers, read as {seen} class labels; if they are "
            "regression targets add --set dataset.options.task=regression")]
    unseen = unseen_classes_warning(name, ytr, yte, class_names)
    if unseen:  # accepted silently before: those test examples can only count as errors
        info["warnings"] = [*info.get("warnings", []), unseen]
    info.setdefault("source", name)
    info["sizes"] = {"train": len(ytr), "val": len(yva), "test": len(yte)}
    info["num_classes"] = int(num_classes)
    info["input_shape"] = list(xtr.shape[1:])
    info["kind"] = kind
    info["task"] = "classification"
    info.setdefault("noise", {"spec": "none", "rate": 0.0, "actual_fraction_flipped": 0.0})
    info.setdefault("imbalance", {"spec": "none", "ratio": 1.0,
                                  "class_counts": torch.bincount(ytr, minlength=num_classes).tolist()})
    return DataBundle(
        name=name, x_train=xtr, y_train=ytr, y_train_clean=ytr.clone(), x_val=xva, y_val=yva,
        x_test=xte, y_test=yte, num_classes=int(num_classes), input_shape=tuple(xtr.shape[1:]),
        kind=kind, class_names=class_names, info=info, train_index=rows, val_index=val_rows,
    )


def unseen_classes_warning(name: str, y_train: torch.Tensor, y_test: torch.Tensor, class_names: list[str] | None = None,
                           shown: int = 5) -> str | None:
    """One line naming the test classes ``y_train`` never has (the first ``shown``, then "and N more");
    None when it has them all."""
    unseen = sorted(set(torch.unique(y_test).tolist()) - set(torch.unique(y_train).tolist()))
    if not unseen:
        return None
    labels = [f"{c} ({class_names[c]})" if class_names and class_names[c] != str(c) else str(c) for c in unseen[:shown]]
    more = f" and {len(unseen) - shown} more" if len(unseen) > shown else ""
    return (f"{name}: the test split has {len(unseen)} class{'es' if len(unseen) != 1 else ''} the training split "
            f"never has ({', '.join(labels)}{more}); the model cannot learn them, so their test examples count as "
            "errors")


def _regression_bundle(name: str, splits: tuple, kind: str, info: dict[str, Any], index: tuple) -> DataBundle:
    xtr, ytr, xva, yva, xte, yte = splits
    info.setdefault("source", name)
    info["task"] = "regression"
    info["sizes"] = {"train": len(ytr), "val": len(yva), "test": len(yte)}
    info["input_shape"] = list(xtr.shape[1:])
    info["kind"] = kind
    info["target"] = {"mean": float(ytr.mean()), "std": float(ytr.std()) if len(ytr) > 1 else 0.0,
                      "min": float(ytr.min()), "max": float(ytr.max())}  # of the training split
    info.setdefault("noise", {"spec": "none", "rate": 0.0, "actual_fraction_flipped": 0.0})
    info.setdefault("imbalance", {"spec": "none", "ratio": 1.0})
    return DataBundle(
        name=name, x_train=xtr, y_train=ytr, y_train_clean=ytr.clone(), x_val=xva, y_val=yva, x_test=xte, y_test=yte,
        num_classes=0, input_shape=tuple(xtr.shape[1:]), kind=kind, info=info, task="regression",
        train_index=index[0], val_index=index[1],
    )
