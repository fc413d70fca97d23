"""Non-parametric calibrators: histogram binning and isotonic regression, one-vs-rest.

Each class ``c`` gets its own map ``p_c -> q_c`` fitted on ``(softmax(z)_c, 1[y == c])`` of the
validation set; the ``C`` mapped values are floored at ``eps`` and renormalised to sum to 1,
and ``transform`` returns their logarithm (valid logits). Neither preserves accuracy exactly
(ties are created by the piecewise-constant maps).
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch

from losscli.calibrate.base import CALIBRATORS, Calibrator
from losscli.metrics.functional import bin_indices


def _renormalised_log(q: torch.Tensor, eps: float) -> torch.Tensor:
    q = q.clamp_min(eps)
    return torch.log(q / q.sum(1, keepdim=True))


@CALIBRATORS.register("histogram", accuracy_preserving=False,
                      doc="one-vs-rest histogram binning, renormalised (Zadrozny & Elkan 2001)")
class HistogramBinning(Calibrator):
    """One-vs-rest histogram binning with ``n_bins`` equal-width bins per class (same
    ``(lo, hi]`` convention as the ECE): each bin predicts the frequency of the class among
    validation samples in it; empty bins keep their centre. Then renormalised across classes."""

    name = "histogram"

    def __init__(self, n_bins: int = 15, eps: float = 1e-6, **hparams: Any):
        super().__init__(n_bins=int(n_bins), eps=float(eps), **hparams)
        self.values: torch.Tensor | None = None  # [C, n_bins]

    def _fit(self, z, y):
        n_bins = self.hparams["n_bins"]
        p = torch.softmax(z, dim=1)
        c = p.shape[1]
        idx = (bin_indices(p, n_bins) + torch.arange(c)[None, :] * n_bins).reshape(-1)
        hit = torch.nn.functional.one_hot(y, c).to(torch.float64).reshape(-1)
        count = torch.bincount(idx, minlength=c * n_bins).to(torch.float64)
        pos = torch.zeros(c * n_bins, dtype=torch.float64).index_add_(0, idx, hit)
        centres = (torch.arange(n_bins, dtype=torch.float64) + 0.5) / n_bins
        values = torch.where(count > 0, pos / count.clamp_min(1), centres.repeat(c))
        self.values = values.reshape(c, n_bins)

    def _transform(self, z):
        n_bins = self.hparams["n_bins"]
        p = torch.softmax(z, dim=1)
        idx = bin_indices(p, n_bins)
        q = self.values.gather(1, idx.T).T  # values[c, idx[n, c]]
        return _renormalised_log(q, self.hparams["eps"])

    def params(self):
        return {"n_bins": int(self.hparams["n_bins"])}

    def _state(self):
        return {"values": self.values}

    def _load_state(self, tensors):
        self.values = tensors["values"].to(torch.float64)


def pav(y: np.ndarray, w: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Pool-adjacent-violators: the non-decreasing fit to ``y`` (weights ``w``) minimising
    weighted squared error. Returns ``(block_starts, block_values)``; block ``k`` covers
    indices ``block_starts[k]`` up to the next start."""
    vals: list[float] = []
    wts: list[float] = []
    starts: list[int] = []
    for i, (v, ww) in enumerate(zip(y.tolist(), w.tolist())):
        s = i
        while vals and vals[-1] >= v:  # pool violators (and equal neighbours: fewer blocks, same fit)
            pv, pw, s = vals.pop(), wts.pop(), starts.pop()
            v = (pv * pw + v * ww) / (pw + ww)
            ww = pw + ww
        vals.append(v)
        wts.append(ww)
        starts.append(s)
    return np.asarray(starts, dtype=np.int64), np.asarray(vals, dtype=np.float64)


def isotonic_fit(x: np.ndarray, y: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Isotonic (non-decreasing) regression of ``y`` on ``x``; returns knots ``(xk, yk)``
    for ``np.interp`` (linear between knots, constant beyond the ends)."""
    ux, inv, counts = np.unique(x, return_inverse=True, return_counts=True)
    ymean = np.bincount(inv, weights=y, minlength=ux.size) / counts
    starts, vals = pav(ymean, counts.astype(np.float64))
    ends = np.append(starts[1:], ux.size) - 1
    xk: list[float] = []
    yk: list[float] = []
    for s, e, v in zip(starts.tolist(), ends.tolist(), vals.tolist()):
        xk.append(ux[s])
        yk.append(v)
        if e != s:
            xk.append(ux[e])
            yk.append(v)
    return np.asarray(xk), np.asarray(yk)


@CALIBRATORS.register("isotonic", accuracy_preserving=False,
                      doc="one-vs-rest isotonic regression (PAV), renormalised (Zadrozny & Elkan 2002)")
class IsotonicCalibration(Calibrator):
    """One-vs-rest isotonic regression (pool-adjacent-violators, implemented here) of the
    class indicator on the class probability; linear interpolation between knots, clipped at
    the ends; renormalised across classes."""

    name = "isotonic"

    def __init__(self, eps: float = 1e-6, **hparams: Any):
        super().__init__(eps=float(eps), **hparams)
        self.knots_x: torch.Tensor | None = None  # [C, M] padded
        self.knots_y: torch.Tensor | None = None
        self.lengths: torch.Tensor | None = None  # [C]

    def _fit(self, z, y):
        p = torch.softmax(z, dim=1).numpy()
        yn = y.numpy()
        c = p.shape[1]
        knots = [isotonic_fit(p[:, k], (yn == k).astype(np.float64)) for k in range(c)]
        m = max(len(xk) for xk, _ in knots)
        kx = np.zeros((c, m))
        ky = np.zeros((c, m))
        for k, (xk, yk) in enumerate(knots):
            kx[k, : len(xk)], ky[k, : len(yk)] = xk, yk
        self.knots_x = torch.from_numpy(kx)
        self.knots_y = torch.from_numpy(ky)
        self.lengths = torch.tensor([len(xk) for xk, _ in knots], dtype=torch.int64)

    def _transform(self, z):
        p = torch.softmax(z, dim=1).numpy()
        q = np.empty_like(p)
        kx, ky = self.knots_x.numpy(), self.knots_y.numpy()
        for k, n in enumerate(self.lengths.tolist()):
            q[:, k] = np.interp(p[:, k], kx[k, :n], ky[k, :n])
        return _renormalised_log(torch.from_numpy(q), self.hparams["eps"])

    def params(self):
        return {"knots_mean": float(self.lengths.double().mean())}

    def _state(self):
        return {"knots_x": self.knots_x, "knots_y": self.knots_y, "lengths": self.lengths}

    def _load_state(self, tensors):
        self.knots_x = tensors["knots_x"].to(torch.float64)
        self.knots_y = tensors["knots_y"].to(torch.float64)
        self.lengths = tensors["lengths"].to(torch.int64)
