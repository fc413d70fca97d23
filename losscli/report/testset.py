"""How much of a difference between two losses is the test set's doing: a bootstrap over test
examples, shared by every seed and both losses (they are evaluated on the same examples).

For ``B`` resamples of the test set (multinomial weights ``w``), each run's metric is recomputed
on the reweighted set, averaged over seeds, and the variance of the loss-minus-baseline mean over
resamples is the test-set sampling variance that :func:`losscli.stats.paired_test` adds to
the seed variance. Metrics that are averages, or ratios of averages per class or per confidence
bin, are exact under reweighting; the others (adaptive/classwise ECE, MCE, AURC, shot accuracy)
have no test-set term (None), which the report states. Pure numpy; deterministic (fixed seed).
"""

from __future__ import annotations

import functools
from typing import Callable

import numpy as np

N_RESAMPLES = 400
SEED = 20261201
N_BINS = 15


def _avg(key: str, fn=lambda v: v) -> Callable[[dict, np.ndarray], np.ndarray]:
    def metric(o: dict, w: np.ndarray) -> np.ndarray:  # w: [B, N] weights summing to 1 per row
        return w @ fn(o[key]).astype(float)
    return metric


def _accuracy(o: dict, w: np.ndarray) -> np.ndarray:
    return w @ (o["pred"] == o["y"]).astype(float)


def _ece(o: dict, w: np.ndarray) -> np.ndarray:
    edges = np.linspace(0.0, 1.0, N_BINS + 1)
    bins = np.clip(np.searchsorted(edges[1:-1], o["conf"], side="left"), 0, N_BINS - 1)
    gap = (o["pred"] == o["y"]).astype(float) - o["conf"]
    per_bin = np.zeros((len(gap), N_BINS))
    per_bin[np.arange(len(gap)), bins] = gap
    return np.abs(w @ per_bin).sum(axis=1)


def _per_class(o: dict, w: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Weighted (true positives, predicted counts, true counts) per class, and the classes present."""
    c = int(o["num_classes"])
    y_onehot = np.eye(c)[o["y"]]
    p_onehot = np.eye(c)[o["pred"]]
    tp = w @ (y_onehot * p_onehot)
    return tp, w @ p_onehot, w @ y_onehot, y_onehot.sum(0) > 0


def _balanced_accuracy(o: dict, w: np.ndarray) -> np.ndarray:
    tp, _, true, present = _per_class(o, w)
    with np.errstate(invalid="ignore", divide="ignore"):
        recall = np.where(true > 0, tp / np.where(true > 0, true, 1), 0.0)
    return recall[:, present].sum(1) / max(int(present.sum()), 1)


def _macro_f1(o: dict, w: np.ndarray) -> np.ndarray:
    tp, pred, true, _ = _per_class(o, w)
    denom = pred + true  # 2TP + FP + FN
    seen = denom > 0
    f1 = np.where(seen, 2 * tp / np.where(seen, denom, 1), 0.0)
    return f1.sum(1) / np.maximum(seen.sum(1), 1)


WEIGHTED: dict[str, Callable[[dict, np.ndarray], np.ndarray]] = {
    "accuracy": _accuracy,
    "top5": _avg("top5"),
    "nll": _avg("p_true", lambda p: -np.log(np.clip(p, 1e-300, None))),
    "brier": _avg("brier"),
    "ece": _ece,
    "balanced_accuracy": _balanced_accuracy,
    "macro_f1": _macro_f1,
}


@functools.lru_cache(maxsize=2)  # a compare's test sets: one per dataset, usually one
def resample_weights(n_examples: int, n_resamples: int = N_RESAMPLES, seed: int = SEED) -> np.ndarray:
    """``[B, N]`` bootstrap weights (multinomial counts / N): one shared set per test set. Drawn once
    per size (read-only): every loss, metric and setting of a compare used to draw the same set again."""
    rng = np.random.default_rng(seed)
    w = rng.multinomial(n_examples, np.full(n_examples, 1.0 / n_examples), size=n_resamples) / n_examples
    w.flags.writeable = False
    return w


def example_bootstrap_variance(metric: str, loss_runs: list[dict], base_runs: list[dict],
                     weights: np.ndarray | None = None, memo: dict | None = None) -> float | None:
    """Bootstrap variance of mean_seeds(metric(loss) - metric(baseline)) over test resamples.

    ``loss_runs`` and ``base_runs`` are the per-example outcomes (:func:`losscli.metrics.outcomes.
    example_outcomes`) of the paired seeds, in the same order. None when the metric has no
    per-example form or the outcomes are missing or from different test sets. ``memo`` (a dict the
    caller keeps while the outcomes live) keeps each baseline run's resampled metric: every loss is
    compared with the same baseline runs, which were recomputed once per loss.
    """
    fn = WEIGHTED.get(metric)
    if fn is None or not loss_runs or len(loss_runs) != len(base_runs):
        return None
    runs = loss_runs + base_runs
    if any(r is None for r in runs):
        return None
    n = len(runs[0]["y"])
    if any(len(r["y"]) != n or not np.array_equal(r["y"], runs[0]["y"]) for r in runs):
        return None  # not the same test examples: no shared resampling
    w = resample_weights(n) if weights is None else weights
    diff = np.mean([fn(a, w) - _resampled(fn, metric, b, w, memo) for a, b in zip(loss_runs, base_runs)], axis=0)  # [B]
    return float(diff.var(ddof=1))


def _resampled(fn: Callable[[dict, np.ndarray], np.ndarray], metric: str, outcomes: dict, w: np.ndarray,
               memo: dict | None) -> np.ndarray:
    """``fn(outcomes, w)``, from ``memo`` when computed before (keyed by identity: the caller keeps both alive)."""
    if memo is None:
        return fn(outcomes, w)
    key = (metric, id(outcomes), id(w))
    if key not in memo:
        memo[key] = fn(outcomes, w)
    return memo[key]
