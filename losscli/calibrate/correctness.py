"""Correctness-aware (CA) post-hoc calibration (Liu et al., 2024; LOSSES-2.md §10), logits-only variant.

The CA objective of the official code (``Temperature_adaptive.set_temperature``): a class-balanced
squared error between the calibrated top-1 confidence and the correctness of the ORIGINAL prediction,

    correct_i = 1[argmax z_i = y_i],   c_i = max_c softmax(z_i / T)_c,   acc = mean(correct)
    w_i = (1 - acc) if correct_i else acc,   L_CA = sum_i w_i (c_i - correct_i)^2 / sum_i w_i

The official calibrator is a sample-adaptive temperature fed with softmax scores of transformed
images (rotation, greyscale, colour jitter), which post-hoc logits cannot provide. losscli's variant
fits ONE temperature on the validation logits with the same objective (the catalogue's "natural
variant"), in the official clamp range T in [0.1, 10]: a deterministic 1-D search (log-spaced grid,
then golden section). A temperature never changes the argmax, so accuracy is preserved.
"""

from __future__ import annotations

import math
from typing import Any, Callable

import torch

from losscli.calibrate.base import CALIBRATORS, Calibrator

T_MIN, T_MAX = 0.1, 10.0  # the official clamp of the adaptive temperature


def ca_loss(cal_logits: torch.Tensor, orig_logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """The CA objective (scalar). If every prediction is right (or every one wrong) all class-balancing
    weights are 0; the objective then falls back to the unweighted mean instead of 0/0."""
    correct = (orig_logits.argmax(dim=1) == labels).to(cal_logits.dtype)
    conf = torch.softmax(cal_logits, dim=1).amax(dim=1)
    acc = correct.mean()
    w = torch.where(correct > 0, 1.0 - acc, acc)
    if not bool(w.sum() > 0):
        w = torch.ones_like(w)
    return (w * (conf - correct).square()).sum() / w.sum()


def minimise_log_scalar(objective: Callable[[float], float], lo: float, hi: float,
                        grid: int = 121, iters: int = 60) -> float:
    """Minimise ``objective(x)`` over ``x`` in ``[lo, hi]`` (``lo > 0``) searching in ``log x``:
    a log-spaced grid, then golden section between the best point's neighbours. Deterministic;
    robust to the flat or non-convex stretches a 1-D calibration objective can have."""
    logs = torch.linspace(math.log(lo), math.log(hi), grid, dtype=torch.float64).tolist()
    values = [objective(math.exp(t)) for t in logs]
    best = min(range(grid), key=lambda i: (values[i], i))
    a, b = logs[max(best - 1, 0)], logs[min(best + 1, grid - 1)]
    ratio = (math.sqrt(5.0) - 1.0) / 2.0
    c, d = b - ratio * (b - a), a + ratio * (b - a)
    fc, fd = objective(math.exp(c)), objective(math.exp(d))
    for _ in range(iters):
        if fc <= fd:
            b, d, fd = d, c, fc
            c = b - ratio * (b - a)
            fc = objective(math.exp(c))
        else:
            a, c, fc = c, d, fd
            d = a + ratio * (b - a)
            fd = objective(math.exp(d))
    x, fx = (c, fc) if fc <= fd else (d, fd)
    return math.exp(x) if fx <= values[best] else math.exp(logs[best])


@CALIBRATORS.register("correctness_aware", aliases=("ca",), accuracy_preserving=True,
                      doc="one temperature fitted with the correctness-aware (CA) objective (Liu et al. 2024)")
class CorrectnessAwareCalibration(Calibrator):
    """``softmax(z / T)`` with ``T`` in [0.1, 10] minimising the class-balanced squared error between
    the top-1 confidence and the original prediction's correctness (see the module docstring)."""

    name = "correctness_aware"
    accuracy_preserving = True

    def __init__(self, **hparams: Any):
        super().__init__(**hparams)
        self.temperature: float = 1.0

    def _fit(self, z, y):
        z = z.to(torch.float64)
        self.temperature = minimise_log_scalar(lambda t: float(ca_loss(z / t, z, y)), T_MIN, T_MAX)

    def _transform(self, z):
        return z * (1.0 / self.temperature)

    def params(self):
        return {"temperature": float(self.temperature)}

    def _state(self):
        return {"temperature": torch.tensor(self.temperature, dtype=torch.float64)}

    def _load_state(self, tensors):
        self.temperature = float(tensors["temperature"])
