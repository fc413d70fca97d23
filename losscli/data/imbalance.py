"""Long-tailed training sets (Cao et al. 2019, LDAM; Buda et al. 2018), train split only.

With ``n_max`` the smallest available class size (so every target can be met exactly):

* ``exp:R``  -> ``n_c = floor(n_max * R ** (-c / (C - 1)))`` for class index ``c``;
* ``step:R`` -> the first ``C - C // 2`` classes keep ``n_max``, the other ``C // 2`` classes
  (the minority half) keep ``floor(n_max / R)``;

each at least 1. Samples are kept by a seeded permutation within each class, in their
original order. ``y_train_clean`` is subsampled alongside ``y_train``.
"""

from __future__ import annotations

import math

import torch

from losscli.data.bundle import DataBundle
from losscli.data.settings import ImbalanceSpec, parse_imbalance_spec
from losscli.errors import UsageError


def target_counts(kind: str, ratio: float, n_max: int, num_classes: int) -> list[int]:
    C = num_classes
    if kind == "none":
        return [n_max] * C
    if kind == "exp":
        raw = [n_max * ratio ** (-(c / (C - 1))) if C > 1 else n_max for c in range(C)]
    elif kind == "step":
        raw = [n_max if c < C - C // 2 else n_max / ratio for c in range(C)]
    else:  # pragma: no cover - parse_imbalance_spec rejects this
        raise UsageError(f"unknown imbalance kind {kind!r}")
    return [max(1, int(math.floor(v + 1e-9))) for v in raw]


def apply_imbalance(bundle: DataBundle, spec: str | ImbalanceSpec, seed: int = 0) -> DataBundle:
    """A new bundle whose training split is subsampled to a long tail per ``spec``."""
    parsed = parse_imbalance_spec(spec)
    C = bundle.num_classes
    if bundle.is_regression:  # no classes to make rare
        if parsed.kind != "none":
            raise UsageError(f"imbalance {parsed} subsamples classes; {bundle.name} is a regression dataset "
                             "(float targets): use imbalance none")
        out = bundle.replace()
        out.info["imbalance"] = {"spec": "none", "ratio": 1.0}
        return out
    if parsed.kind == "none":
        out = bundle.replace()
        out.info["imbalance"] = {"spec": "none", "ratio": 1.0, "class_counts": out.class_counts}
        return out
    y = bundle.y_train_clean
    available = torch.bincount(y, minlength=C)
    if int(available.min()) == 0:
        empty = [c for c in range(C) if int(available[c]) == 0]
        raise UsageError(f"imbalance {parsed}: class(es) {empty[:5]} have no training samples")
    n_max = int(available.min())
    counts = target_counts(parsed.kind, parsed.ratio, n_max, C)
    g = torch.Generator().manual_seed(int(seed))
    keep = []
    for c in range(C):
        idx = torch.nonzero(y == c).flatten()
        keep.append(idx[torch.randperm(len(idx), generator=g)[: counts[c]]])
    keep_idx = torch.sort(torch.cat(keep))[0]
    out = bundle.replace(x_train=bundle.x_train[keep_idx], y_train=bundle.y_train[keep_idx],
                         y_train_clean=y[keep_idx],
                         train_index=None if bundle.train_index is None else bundle.train_index[keep_idx])
    out.info["imbalance"] = {
        "spec": str(parsed), "kind": parsed.kind, "ratio": parsed.ratio, "seed": int(seed),
        "class_counts": counts, "actual_ratio": max(counts) / min(counts),
        "n_max": n_max,
    }
    out.info.setdefault("sizes", {})["train"] = len(keep_idx)
    return out
