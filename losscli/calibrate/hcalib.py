"""h-calibration (Huang et al., TPAMI 2025; LOSSES-2.md §9): post-hoc recalibration with a
probabilistic, error-bounded objective (official ``loss/hCalib.py``, WenjianHuang93/h-Calibration).

Objective, for calibrated probabilities ``p [N, C]`` and labels ``y``: for each left-out class c
(``IsIter=True``) keep the rows with ``y != c`` and flatten them to events ``p_e = p[n, k]`` with
outcomes ``o_e = 1[y_n = k]``; sort the events by ``p``; take the centred moving average over
``veclen + 1`` events (zero-padded, always divided by ``veclen + 1``) of ``p_e (1 - o_e)`` and of
``(1 - p_e) o_e``; the event error is ``relu(|MA_a - MA_b| - epsilon)``; average it (unweighted, or
cluster-weighted), average over c, times ``lossweight``.

Determinism: the official default weighting ('cluaceweighted') runs faiss k-means (random
initialisation) on the event probabilities at every step. losscli's default is the catalogue's
deterministic ``weighting='unweighted'`` (mean over events); ``weighting='cluster'`` keeps the
official cluster weighting (15 clusters, mean of the per-cluster mean errors) with a DETERMINISTIC
1-D k-means (quantile initialisation, 25 Lloyd iterations, faiss's default count).

Maps (the paper grids over several and picks one per task): ``map='temperature'`` (default): one
inverse temperature ``softmax(b z)``, fitted by a deterministic 1-D search (log grid + golden
section) over b in [0.01, 100]; ``map='ensemble'``: the official ``linear`` map (ensemble
temperature scaling ``sum_m w_m softmax(|tau_m| log_softmax(z))``, ``w = |w| / sum |w|``, Kaiming-
uniform init from a seeded generator), fitted by full-batch Adam (lr 0.005, the official setting),
keeping the parameters with the lowest objective. Both preserve each row's order (accuracy).
"""

from __future__ import annotations

import math
from typing import Any

import torch
import torch.nn.functional as F

from losscli.calibrate.base import CALIBRATORS, Calibrator
from losscli.calibrate.correctness import minimise_log_scalar
from losscli.errors import UsageError

N_CLUSTERS = 15  # official cluaceweighted
KMEANS_ITERS = 25


def _moving_average(x: torch.Tensor, veclen: int) -> torch.Tensor:
    """Centred sum over ``veclen + 1`` entries (``veclen / 2`` each side, zeros beyond the ends) / (veclen + 1)."""
    h = veclen // 2
    cs = torch.cat([x.new_zeros(1), torch.cumsum(x, 0)])
    n = x.shape[0]
    idx = torch.arange(n, device=x.device)
    hi = (idx + h + 1).clamp_max(n)
    lo = (idx - h).clamp_min(0)
    return (cs[hi] - cs[lo]) / (veclen + 1)


def kmeans_1d(values: torch.Tensor, k: int = N_CLUSTERS, iters: int = KMEANS_ITERS) -> torch.Tensor:
    """Deterministic 1-D k-means: ``[n]`` cluster ids. Centroids start at the (j + 1/2)/k quantiles of
    ``values``; Lloyd steps assign each value to its nearest centroid (empty clusters keep theirs)."""
    v = values.detach().to(torch.float64)
    s = torch.sort(v).values
    centroids = s[((torch.arange(k, dtype=torch.float64) + 0.5) / k * v.numel()).long().clamp_max(v.numel() - 1)]
    ids = torch.zeros_like(v, dtype=torch.long)
    for _ in range(iters):
        centroids = torch.sort(centroids).values
        mids = 0.5 * (centroids[1:] + centroids[:-1])
        new_ids = torch.searchsorted(mids, v)
        sums = torch.zeros(k, dtype=torch.float64).index_add_(0, new_ids, v)
        counts = torch.zeros(k, dtype=torch.float64).index_add_(0, new_ids, torch.ones_like(v))
        centroids = torch.where(counts > 0, sums / counts.clamp_min(1), centroids)
        if torch.equal(new_ids, ids):
            break
        ids = new_ids
    return ids


def _event_errors(probs: torch.Tensor, onehot: torch.Tensor, veclen: int, epsilon: float, weighting: str) -> torch.Tensor:
    p, o = probs.reshape(-1), onehot.reshape(-1)
    order = torch.sort(torch.log(p.detach() + 1e-20), stable=True).indices
    p, o = p[order], o[order]
    gap = (_moving_average(p * (1.0 - o), veclen) - _moving_average((1.0 - p) * o, veclen)).abs()
    err = F.relu(gap - epsilon)
    if weighting == "unweighted":
        return err.mean()
    ids = kmeans_1d(p)
    ind = F.one_hot(ids, N_CLUSTERS).to(err.dtype)  # [E, K]
    per_cluster = (err.unsqueeze(1) * ind).sum(0) / (ind.sum(0) + 1e-5)  # official: empty clusters give 0
    return per_cluster.mean()


def h_calibration_loss(probs: torch.Tensor, labels: torch.Tensor, veclen: int = 200, epsilon: float = 1e-20,
                       weighting: str = "unweighted", leave_one_out: bool = True, lossweight: float = 1e5) -> torch.Tensor:
    """The h-calibration objective of calibrated probabilities ``[N, C]`` (differentiable in ``probs``)."""
    c = probs.shape[1]
    onehot = F.one_hot(labels, c).to(probs.dtype)
    if not leave_one_out:
        return _event_errors(probs, onehot, veclen, epsilon, weighting) * lossweight
    losses = []
    for left_out in range(c):
        keep = labels != left_out
        if bool(keep.any()):  # the official code averages a NaN here (mean of nothing): skip it
            losses.append(_event_errors(probs[keep], onehot[keep], veclen, epsilon, weighting))
    return torch.stack(losses).mean() * lossweight


@CALIBRATORS.register("h_calibration", aliases=("hcalib",), accuracy_preserving=True,
                      doc="temperature (or ensemble TS) fitted with the h-calibration objective (Huang et al. 2025)")
class HCalibration(Calibrator):
    """Post-hoc recalibration by minimising the h-calibration objective (module docstring).

    hparams: ``map`` ('temperature' | 'ensemble'), ``weighting`` ('unweighted' | 'cluster'),
    ``veclen`` (200), ``epsilon`` (1e-20), ``lossweight`` (1e5); ensemble only: ``temp_num`` (128),
    ``max_iter`` (500), ``lr`` (0.005), ``seed`` (0).
    """

    name = "h_calibration"
    accuracy_preserving = True
    defaults: dict[str, Any] = {"map": "temperature", "weighting": "unweighted", "veclen": 200, "epsilon": 1e-20,
                                "lossweight": 1e5, "temp_num": 128, "max_iter": 500, "lr": 0.005, "seed": 0}

    def __init__(self, **hparams: Any):
        unknown = sorted(set(hparams) - set(self.defaults))
        if unknown:
            raise UsageError(f"h_calibration: unknown hparam(s) {unknown}; known: {sorted(self.defaults)}")
        merged = {**self.defaults, **hparams}
        if merged["map"] not in ("temperature", "ensemble") or merged["weighting"] not in ("unweighted", "cluster"):
            raise UsageError("h_calibration: map must be 'temperature' or 'ensemble', weighting 'unweighted' or 'cluster'")
        if int(merged["veclen"]) < 0 or int(merged["veclen"]) % 2:
            raise UsageError(f"h_calibration: veclen must be an even number >= 0, got {merged['veclen']!r}")
        super().__init__(**merged)
        self.inverse_temperature = 1.0
        self.taus: torch.Tensor | None = None
        self.weights: torch.Tensor | None = None
        self.objective: float = float("nan")

    def _loss(self, probs, y):
        h = self.hparams
        return h_calibration_loss(probs, y, int(h["veclen"]), float(h["epsilon"]), h["weighting"],
                                  lossweight=float(h["lossweight"]))

    def _fit(self, z, y):
        z = z.to(torch.float64)
        if self.hparams["map"] == "temperature":
            def objective(b: float) -> float:
                return float(self._loss(torch.softmax(z * b, dim=1), y))

            self.inverse_temperature = minimise_log_scalar(objective, 1e-2, 1e2, grid=61, iters=40)
            self.objective = objective(self.inverse_temperature)
            return
        m = int(self.hparams["temp_num"])
        g = torch.Generator().manual_seed(int(self.hparams["seed"]))
        bound = 1.0 / math.sqrt(m)  # kaiming_uniform_(a=sqrt(5)) of the official (1, 1, M) parameters
        taus = ((torch.rand(m, generator=g, dtype=torch.float64) * 2 - 1) * bound).requires_grad_(True)
        weights = ((torch.rand(m, generator=g, dtype=torch.float64) * 2 - 1) * bound).requires_grad_(True)
        opt = torch.optim.Adam([taus, weights], lr=float(self.hparams["lr"]))
        x = F.log_softmax(z, dim=1)
        best = (float("inf"), taus.detach().clone(), weights.detach().clone())
        for _ in range(int(self.hparams["max_iter"])):
            opt.zero_grad()
            loss = self._loss(torch.exp(self._ensemble_log_probs(x, taus, weights)), y)
            value = float(loss.detach())
            if value < best[0]:
                best = (value, taus.detach().clone(), weights.detach().clone())
            loss.backward()
            opt.step()
        self.objective, self.taus, self.weights = best

    @staticmethod
    def _ensemble_log_probs(x, taus, weights):
        """``log sum_m w_m softmax(|tau_m| x)`` with ``w = |w| / sum |w|``, as a logsumexp (no log 0)."""
        log_w = torch.log(weights.abs() / weights.abs().sum())
        comps = F.log_softmax(x.unsqueeze(2) * taus.abs(), dim=1)  # [N, C, M]
        return torch.logsumexp(comps + log_w, dim=2)

    def _transform(self, z):
        if self.hparams["map"] == "temperature":
            return z * self.inverse_temperature
        return self._ensemble_log_probs(F.log_softmax(z.to(torch.float64), dim=1), self.taus, self.weights)

    def params(self):
        out: dict[str, Any] = {"map": str(self.hparams["map"]), "weighting": str(self.hparams["weighting"]),
                               "objective": float(self.objective)}
        if self.hparams["map"] == "temperature":
            out["temperature"] = float(1.0 / self.inverse_temperature)
        else:
            w = self.weights.abs() / self.weights.abs().sum()
            out["mean_temperature"] = float((w / self.taus.abs().clamp_min(1e-12)).sum())
        return out

    def _state(self):
        if self.hparams["map"] == "temperature":
            return {"inverse_temperature": torch.tensor(self.inverse_temperature, dtype=torch.float64),
                    "objective": torch.tensor(self.objective, dtype=torch.float64)}
        return {"taus": self.taus, "weights": self.weights, "objective": torch.tensor(self.objective, dtype=torch.float64)}

    def _load_state(self, tensors):
        self.objective = float(tensors.get("objective", torch.tensor(float("nan"))))
        if "inverse_temperature" in tensors:
            self.inverse_temperature = float(tensors["inverse_temperature"])
        else:
            self.taus = tensors["taus"].to(torch.float64)
            self.weights = tensors["weights"].to(torch.float64)
