"""ASLP: adaptive stochastic label perturbation (Liu et al., ICCV 2023; LOSSES-2.md §7), multi-class form.

The official method is dense binary (saliency): each training image i has a perturbation level
alpha_i; with probability alpha_i its label becomes ``(1 - 2 beta) y + beta``. losscli's C-class
adaptation (the catalogue's): the perturbed target is ``(1 - C beta) e_y + beta 1`` (the official
form at C = 2), and, since CE is linear in the target, the expected loss over the coin is

    l_i = (1 - alpha_i C beta) CE_i + alpha_i beta H_i,   H_i = sum_c -log p_ic

(label smoothing with strength ``alpha_i C beta``), which is what ``forward`` returns by default
(``sampled=True`` draws the coin per sample instead, as the official code does).

alpha_i is gradient ascent on that expected loss (maximum entropy) under an accuracy constraint,
updated after each training step from the 6th epoch on (official ``epoch > 5``, 1-based):

    alpha_i <- alpha_i + eta [ (H_i - C CE_i) / beta + lbd min((1 - acc_val) - (C - 1) beta alpha_i, 0) ]
    alpha_i <- 0 if alpha_i < 0;  alpha_cap if alpha_i >= 1/(C beta);  alpha_cap = (1 - 0.02 beta) / (C beta)

with CE_i, H_i of the step's detached prediction (probabilities clamped to [1e-7, 1 - 1e-7] as in
the official ``compute_*_individual``) against the CLEAN label, and acc_val the validation accuracy
of the last finished epoch (``on_epoch_end``). See the registry notes for the choices at C > 2.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from losscli.losses.base import Loss, LossInputError, Param, Reference, refuse_under_vmap, register_loss

_P_CLAMP = 1e-7  # official compute_bce_individual / compute_entropy_individual
_START_EPOCH = 5  # 0-based: the official `epoch > 5` with 1-based epochs


def aslp_expected_ce(logits: torch.Tensor, target: torch.Tensor, alpha: torch.Tensor, beta: float) -> torch.Tensor:
    """``[N]`` expected CE over the perturbation coin: ``(1 - alpha C beta) CE + alpha beta sum_c -log p_c``."""
    c = logits.shape[1]
    log_p = F.log_softmax(logits, dim=1)
    ce = -log_p.gather(1, target.unsqueeze(1)).squeeze(1)
    h = -log_p.sum(dim=1)
    return (1.0 - alpha * (c * beta)) * ce + (alpha * beta) * h


@register_loss(
    "aslp",
    aliases=("adaptive_label_perturbation",),
    family="calibration",
    reference=Reference(
        "Model Calibration in Dense Classification with Adaptive Label Perturbation",
        "Liu, Ye, Wang, Cui, Zhang, Zhang & Barnes", 2023, "ICCV", "https://github.com/Carlisle-Liu/ASLP",
    ),
    formula="l_i = (1 - alpha_i C beta) CE_i + alpha_i beta sum_c -log p_ic  (expected CE against the perturbed "
    "label (1 - C beta) e_y + beta 1);  alpha_i <- clip(alpha_i + eta [(H_i - C CE_i)/beta + lbd min(1 - acc - "
    "(C-1) beta alpha_i, 0)]), alpha_i in [0, 1/(C beta))",
    params=(
        Param("beta", 2.0, "perturbation strength beta (official 2.0: perturbed per-step targets leave [0, 1], "
              "only their expectation is a distribution)", low=0.0, high=50.0, low_open=True, high_open=True),
        Param("eta", 0.002, "step size of the alpha update (official 0.002)", low=0.0),
        Param("lbd", 2000.0, "strength lambda of the accuracy constraint (official 2000)", low=0.0),
        Param("sampled", False, "draw the perturbation coin per sample (official, random) instead of the "
              "expected loss (default, deterministic; same expected value and gradient)", kind="bool"),
    ),
    convex=True,
    can_be_negative=True,
    needs=("index",),
    uses=("epoch",),
    notes="Per-sample state alpha_i (float64 buffer `alpha_state`, indexed by forward(..., index=ids), grows to the "
    "largest id; persistent, so it is in state_dict() and the run checkpoint), initialised to 0; written only in "
    "training mode. Updated after each forward from epoch index 5 on (forward's 0-based `epoch`; the official "
    "`epoch > 5` is 1-based) once a validation accuracy is known: the trainer calls on_epoch_end(epoch, "
    "val_accuracy) after each epoch's evaluation; the update uses the value of the last call. Multi-class "
    "choices (medium confidence: the paper is dense-binary; these reduce to the official code at C = 2): "
    "perturbed target (1 - C beta) e_y + beta 1 and update term (H - C CE)/beta are the catalogue's; the "
    "constraint uses the expected target's confidence on the true class, 1 - (C-1) beta alpha, so the paper's "
    "aim (expected target confidence close to accuracy) keeps its meaning at C > 2; the clip follows the "
    "official one (alpha < 0 -> 0; alpha >= the bound 1/(C beta) -> the cap) with the cap (1 - 0.02 beta)/(C beta): "
    "the official 1/(2 beta) - 0.01 at C = 2, and the same largest smoothing C beta alpha = 1 - 0.02 beta (0.96 at "
    "beta = 2) for every C, whereas the catalogue's literal 1/(C beta) - 0.01 is negative for C >= 50 at beta = 2 "
    "(ASLP would switch itself off). The default "
    "deterministic expected loss is label smoothing with eps_i = C beta alpha_i <= 1 (>= 0 and convex); with "
    "sampled=True the per-step targets are the official stochastic ones (with beta = 2 they have negative "
    "entries, so a sampled step's loss can be negative and is not bounded below).",
)
class ASLP(Loss):
    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        # float64, persistent: one alpha per training sample, part of the training checkpoint
        self.register_buffer("alpha_state", torch.zeros(0, dtype=torch.float64))
        # validation accuracy of the last finished epoch (None until on_epoch_end is called); a
        # buffer so that a resumed run keeps it (NaN = unknown)
        self.register_buffer("val_accuracy", torch.tensor(float("nan"), dtype=torch.float64))

    def _load_from_state_dict(self, state_dict, prefix, *args, **kwargs):
        saved = state_dict.get(prefix + "alpha_state")
        if saved is not None:  # the state's size is the number of sample ids seen: adopt the saved one
            self.alpha_state = torch.empty_like(saved, dtype=self.alpha_state.dtype, device=self.alpha_state.device)
        super()._load_from_state_dict(state_dict, prefix, *args, **kwargs)

    def alpha_bound(self, num_classes: int) -> float:
        """``1 / (C beta)``: the largest alpha whose expected target is still a distribution."""
        return 1.0 / (num_classes * self.beta)

    def alpha_cap(self, num_classes: int) -> float:
        """Where an alpha that reaches the bound is put back: ``(1 - 0.02 beta) / (C beta)`` (official 1/(2 beta) - 0.01 at C = 2)."""
        return max(0.0, (1.0 - 0.02 * self.beta) / (num_classes * self.beta))

    def on_epoch_end(self, epoch: int, val_accuracy: float) -> None:
        acc = float(val_accuracy)
        if not 0.0 <= acc <= 1.0:
            raise LossInputError(f"aslp: val_accuracy must be in [0, 1], got {val_accuracy!r}")
        self.val_accuracy.fill_(acc)

    def _state_for(self, index, n: int) -> torch.Tensor:
        refuse_under_vmap("aslp", "it keeps per-sample state (indexed by index=) that each call reads and updates")
        if not isinstance(index, torch.Tensor):
            index = torch.as_tensor(index)
        if index.dim() != 1 or index.shape[0] != n or index.is_floating_point() or index.dtype == torch.bool:
            raise LossInputError(f"aslp: index must be [N={n}] integer sample ids")
        index = index.to(self.alpha_state.device).long()
        if n == 0:
            return index
        if int(index.min()) < 0:
            raise LossInputError("aslp: sample ids must be non-negative")
        hi = int(index.max())
        if hi >= self.alpha_state.numel():
            grown = torch.zeros(max(hi + 1, 2 * self.alpha_state.numel()), dtype=self.alpha_state.dtype,
                                device=self.alpha_state.device)
            grown[: self.alpha_state.numel()] = self.alpha_state
            self.alpha_state = grown
        return index

    def per_sample(self, logits, target, index=None, epoch=None, **context):
        n, c = logits.shape
        idx = self._state_for(index, n)
        alpha = self.alpha_state[idx].to(device=logits.device, dtype=logits.dtype)
        if self.sampled:  # one coin per sample: perturbed with probability alpha_i
            coin = (torch.rand(n, device=logits.device) < alpha).to(logits.dtype)
            loss = aslp_expected_ce(logits, target, coin, self.beta)  # coin = 1: CE against the perturbed label
        else:
            loss = aslp_expected_ce(logits, target, alpha, self.beta)
        if self.training and epoch is not None and int(epoch) >= _START_EPOCH and not torch.isnan(self.val_accuracy):
            self._update(logits.detach(), target, idx, alpha.detach(), c)
        return loss

    @torch.no_grad()
    def _update(self, logits, target, idx, alpha, c: int) -> None:
        p = torch.softmax(logits.double(), dim=1).clamp(_P_CLAMP, 1.0 - _P_CLAMP)
        log_p = torch.log(p)
        ce = -log_p.gather(1, target.unsqueeze(1)).squeeze(1)
        h = -log_p.sum(dim=1)
        a = alpha.double()
        acc = float(self.val_accuracy)
        constraint = torch.clamp_max((1.0 - acc) - (c - 1) * self.beta * a, 0.0)
        new = a + self.eta * ((h - c * ce) / self.beta + self.lbd * constraint)
        # the official clipping: below 0 -> 0, at or above the bound -> the cap (just below it)
        new = torch.where(new >= self.alpha_bound(c), torch.full_like(new, self.alpha_cap(c)), new).clamp_min(0.0)
        self.alpha_state[idx] = new.to(self.alpha_state.device)
