"""Parametric calibrators: temperature, vector, matrix and Dirichlet (ODIR) scaling.

All fit the validation NLL in float64. Temperature scaling uses a safeguarded Newton /
bisection root-finder on the (monotone) derivative of the NLL with respect to the inverse
temperature, so it cannot stall; the others use L-BFGS with a strong-Wolfe line search,
started from the temperature-scaling solution.
"""

from __future__ import annotations

import math
from typing import Any

import torch
import torch.nn.functional as F

from losscli.calibrate.base import CALIBRATORS, Calibrator

# Inverse temperature is searched in [B_MIN, B_MAX] (temperature 1e-6 .. 1e6).
B_MIN, B_MAX = 1e-6, 1e6


def fit_inverse_temperature(z: torch.Tensor, y: torch.Tensor, max_iter: int = 200, rtol: float = 1e-12) -> float:
    """Minimise ``NLL(b) = mean(logsumexp(b z) - b z_y)`` over ``b > 0`` (float64).

    ``NLL`` is convex in ``b``, so its derivative ``g(b) = mean(E_softmax(bz)[z] - z_y)`` is
    non-decreasing with ``g'(b) = mean Var_softmax(bz)[z] >= 0``. The root is bracketed in
    ``[B_MIN, B_MAX]`` and found by Newton steps that fall back to bisection (in log b)
    whenever a step leaves the bracket or the bracket stops halving: it cannot stall.
    If ``g`` has no sign change the optimum sits on the boundary (``B_MIN``: scores no
    better than chance; ``B_MAX``: validation set perfectly separated).
    """
    z = z.to(torch.float64)
    zy = z.gather(1, y[:, None]).squeeze(1)

    def g_and_h(b: float) -> tuple[float, float]:
        p = torch.softmax(b * z, dim=1)
        ez = (p * z).sum(1)
        var = (p * z * z).sum(1) - ez * ez
        return float((ez - zy).mean()), float(var.clamp_min(0).mean())

    lo, hi = B_MIN, B_MAX
    if g_and_h(lo)[0] >= 0:
        return lo
    if g_and_h(hi)[0] <= 0:
        return hi
    b, slow = 1.0, 0
    for _ in range(max_iter):
        g, h = g_and_h(b)
        if g == 0.0:
            return b
        width_before = math.log(hi / lo)
        if g < 0:
            lo = b
        else:
            hi = b
        width = math.log(hi / lo)
        if width <= rtol:
            break
        slow = slow + 1 if width > 0.5 * width_before else 0
        newton = b - g / h if h > 0 else float("nan")
        if slow < 2 and lo < newton < hi:
            if abs(newton - b) <= rtol * b:
                return newton
            b = newton
        else:  # bisection in log b: halves the bracket
            b, slow = math.sqrt(lo * hi), 0
    return b


@CALIBRATORS.register("temperature", aliases=("ts",), accuracy_preserving=True,
                      doc="one scalar T: softmax(z / T) (Guo et al. 2017)")
class TemperatureScaling(Calibrator):
    """``softmax(z / T)`` with one temperature fitted on validation NLL; accuracy unchanged.

    ``transform`` returns ``z * (1/T)`` in float64: multiplying float32 logits by a positive
    float64 scalar cannot merge distinct values, so the argmax (and accuracy) is exactly
    preserved.
    """

    name = "temperature"
    accuracy_preserving = True

    def __init__(self, **hparams: Any):
        super().__init__(**hparams)
        self.inverse_temperature: float = 1.0

    def _fit(self, z, y):
        self.inverse_temperature = fit_inverse_temperature(z, y)

    def _transform(self, z):
        return z * self.inverse_temperature

    @property
    def temperature(self) -> float:
        return 1.0 / self.inverse_temperature

    def params(self):
        return {"temperature": float(self.temperature)}

    def _state(self):
        return {"inverse_temperature": torch.tensor(self.inverse_temperature, dtype=torch.float64)}

    def _load_state(self, tensors):
        self.inverse_temperature = float(tensors["inverse_temperature"])


def _lbfgs(params: list[torch.Tensor], objective, max_iter: int) -> None:
    opt = torch.optim.LBFGS(params, lr=1.0, max_iter=max_iter, max_eval=int(max_iter * 1.5),
                            tolerance_grad=1e-7, tolerance_change=1e-10, history_size=20,
                            line_search_fn="strong_wolfe")

    def closure():
        opt.zero_grad()
        loss = objective()
        loss.backward()
        return loss

    opt.step(closure)


class _AffineCalibrator(Calibrator):
    """``W x + b`` (or ``w * x + b``) applied to logits or log-probabilities, L-BFGS on NLL + penalty."""

    diagonal = False  # vector scaling: W is a diagonal (stored as a vector)
    on_log_probs = False  # Dirichlet calibration: the input is log_softmax(z)
    default_hparams: dict[str, float] = {}

    def __init__(self, **hparams: Any):
        merged = {**self.default_hparams, **hparams}
        super().__init__(**merged)
        self.weight: torch.Tensor | None = None
        self.bias: torch.Tensor | None = None

    def _inputs(self, z):
        return F.log_softmax(z, dim=1) if self.on_log_probs else z

    def _apply(self, x, weight, bias):
        return (x * weight if self.diagonal else x @ weight.T) + bias

    def _fit(self, z, y):
        c = z.shape[1]
        b0 = fit_inverse_temperature(z, y)  # start from the temperature-scaling solution
        x = self._inputs(z)
        weight = (torch.full((c,), b0, dtype=torch.float64) if self.diagonal
                  else torch.eye(c, dtype=torch.float64) * b0).requires_grad_(True)
        bias = torch.zeros(c, dtype=torch.float64, requires_grad=True)
        lam = float(self.hparams.get("odir_lambda", 0.0))
        mu = float(self.hparams.get("odir_mu", 0.0))
        offdiag = None if self.diagonal or c < 2 else ~torch.eye(c, dtype=torch.bool)

        def objective():
            loss = F.cross_entropy(self._apply(x, weight, bias), y)
            if offdiag is not None and lam > 0:
                loss = loss + lam * (weight[offdiag] ** 2).sum() / (c * (c - 1))
            if mu > 0:
                loss = loss + mu * (bias ** 2).sum() / c
            return loss

        _lbfgs([weight, bias], objective, int(self.hparams.get("max_iter", 200)))
        if not (torch.isfinite(weight).all() and torch.isfinite(bias).all()):  # pragma: no cover - defensive
            weight = (torch.full((c,), b0, dtype=torch.float64) if self.diagonal
                      else torch.eye(c, dtype=torch.float64) * b0)
            bias = torch.zeros(c, dtype=torch.float64)
        self.weight, self.bias = weight.detach(), bias.detach()

    def _transform(self, z):
        return self._apply(self._inputs(z), self.weight, self.bias)

    def _state(self):
        return {"weight": self.weight, "bias": self.bias}

    def _load_state(self, tensors):
        self.weight = tensors["weight"].to(torch.float64)
        self.bias = tensors["bias"].to(torch.float64)

    def params(self):
        w, b = self.weight, self.bias
        diag = w if self.diagonal else torch.diagonal(w)
        out: dict[str, Any] = {
            "weight_diag_mean": float(diag.mean()),
            "bias_abs_mean": float(b.abs().mean()),
        }
        if not self.diagonal and w.shape[0] > 1:
            off = w[~torch.eye(w.shape[0], dtype=torch.bool)]
            out["weight_offdiag_abs_mean"] = float(off.abs().mean())
        for k in ("odir_lambda", "odir_mu"):
            if k in self.hparams:
                out[k] = float(self.hparams[k])
        return out


@CALIBRATORS.register("vector", accuracy_preserving=False,
                      doc="per-class scale and bias on the logits: w * z + b")
class VectorScaling(_AffineCalibrator):
    """``softmax(w * z + b)`` with per-class ``w, b`` (Guo et al. 2017)."""

    name = "vector"
    diagonal = True


@CALIBRATORS.register("matrix", accuracy_preserving=False,
                      doc="full affine map of the logits: W z + b, ODIR-regularised")
class MatrixScaling(_AffineCalibrator):
    """``softmax(W z + b)`` (Guo et al. 2017) with ODIR regularisation of the off-diagonal of
    ``W`` and of ``b`` (Kull et al. 2019's MS-ODIR). ``C^2 + C`` parameters."""

    name = "matrix"
    default_hparams = {"odir_lambda": 1e-2, "odir_mu": 1e-2}


@CALIBRATORS.register("dirichlet", accuracy_preserving=False,
                      doc="W log p + b on log-probabilities with ODIR regularisation (Kull et al. 2019)")
class DirichletCalibration(_AffineCalibrator):
    """Dirichlet calibration ``softmax(W log softmax(z) + b)`` with Off-Diagonal and
    Intercept Regularisation: ``NLL + lambda * sum_{i!=j} W_ij^2 / (C(C-1)) + mu * sum_j b_j^2 / C``
    (Kull et al., NeurIPS 2019)."""

    name = "dirichlet"
    on_log_probs = True
    default_hparams = {"odir_lambda": 1e-2, "odir_mu": 1e-2}
