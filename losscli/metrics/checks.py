"""Input validation shared by the metrics: tensors or arrays in, float64 CPU tensors out,
one clear UsageError for wrong shapes, dtypes, NaN or out-of-range labels."""

from __future__ import annotations

from typing import Any

import torch

from losscli.errors import UsageError

PROB_ATOL = 1e-3  # tolerance on row sums when deciding whether an input is probabilities


def as_tensor(x: Any, name: str) -> torch.Tensor:
    if isinstance(x, torch.Tensor):
        return x.detach().cpu()
    try:
        import numpy as np

        return torch.as_tensor(np.asarray(x))
    except Exception as exc:  # noqa: BLE001
        raise UsageError(f"{name} must be a tensor or array, got {type(x).__name__}") from exc


def check_scores(scores: Any, name: str = "logits") -> torch.Tensor:
    t = as_tensor(scores, name)
    if t.ndim != 2:
        raise UsageError(f"{name} must have shape [N, C], got shape {tuple(t.shape)}")
    if not t.is_floating_point():
        raise UsageError(f"{name} must be floating point, got {t.dtype}")
    if t.shape[0] == 0 or t.shape[1] == 0:
        raise UsageError(f"{name} is empty (shape {tuple(t.shape)})")
    t = t.to(torch.float64)
    if torch.isnan(t).any() or torch.isposinf(t).any():
        raise UsageError(f"{name} contains NaN or +inf values")
    return t


def check_labels(labels: Any, n: int, c: int, name: str = "labels") -> torch.Tensor:
    t = as_tensor(labels, name)
    if t.ndim == 2 and t.shape[1] == 1:
        t = t[:, 0]
    if t.ndim != 1:
        raise UsageError(f"{name} must have shape [N] (class indices), got shape {tuple(t.shape)}")
    if t.is_floating_point() or t.dtype == torch.bool or t.is_complex():
        raise UsageError(f"{name} must be integer class indices, got {t.dtype}")
    if t.shape[0] != n:
        raise UsageError(f"shape mismatch: {n} rows of scores but {t.shape[0]} {name}")
    t = t.to(torch.int64)
    lo, hi = int(t.min()), int(t.max())
    if lo < 0 or hi >= c:
        raise UsageError(f"{name} out of range: found values {lo}..{hi}, expected 0..{c - 1} for {c} classes")
    return t


def looks_like_probabilities(x: Any, atol: float = PROB_ATOL) -> bool:
    """True when every row is non-negative and sums to 1 within ``atol`` (and C >= 2)."""
    t = as_tensor(x, "input")
    if t.ndim != 2 or t.shape[1] < 2 or t.shape[0] == 0 or not t.is_floating_point():
        return False
    t = t.to(torch.float64)
    return bool((t >= 0).all() and ((t.sum(1) - 1).abs() <= atol).all())


def check_probs(probs: Any, labels: Any, name: str = "probs") -> tuple[torch.Tensor, torch.Tensor]:
    p = check_scores(probs, name)
    if not ((p >= 0).all() and ((p.sum(1) - 1).abs() <= PROB_ATOL).all()):
        raise UsageError(
            f"{name} must be probabilities (rows non-negative, summing to 1); apply softmax to logits first"
        )
    y = check_labels(labels, p.shape[0], p.shape[1])
    return p, y


def check_any(scores: Any, labels: Any, name: str = "scores") -> tuple[torch.Tensor, torch.Tensor]:
    s = check_scores(scores, name)
    return s, check_labels(labels, s.shape[0], s.shape[1])


#: most bins of the ECE family: far past any useful resolution (15 is the literature's default), and
#: classwise ECE holds [C, n_bins] sums
MAX_BINS = 10_000


def check_bins(n_bins: int) -> int:
    if isinstance(n_bins, bool) or not isinstance(n_bins, (int, float)) or int(n_bins) != n_bins or n_bins < 1:
        raise UsageError(f"n_bins must be a positive integer, got {n_bins!r}")
    if n_bins > MAX_BINS:
        raise UsageError(f"n_bins {int(n_bins)} is too many (at most {MAX_BINS}; 15 is the usual choice)")
    return int(n_bins)
