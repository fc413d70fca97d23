"""LegendreTron: a learned proper canonical link as a head (Lam et al., AISTATS 2023; LOSSES-2.md §4).

The head (official ``lib/models.py`` + ``lib/icnn.py``, khflam/legendretron) is

    u = Linear(d -> C-1)(x)
    v = u;  for each block b: v = grad_v [softplus(w1_b) ICNN_b(v) + softplus(w0_b) ||v||^2 / 2]
    log p = log_softmax([v_1, ..., v_{C-1}, 0])          # "softmax+": the last class has logit 0

Each block is the gradient of a strictly convex potential (an input-convex network ICNN3 plus a
positive quadratic), i.e. a monotone invertible map playing the inverse canonical link, so the
composite loss, NLL of ``log p``, is proper. The gradient is taken with
``autograd.grad(create_graph=True)``, also at evaluation: the head switches grad mode on inside,
and returns a detached result when the caller runs without gradients (the engine's
``torch.no_grad()`` prediction). The global default dtype is left alone (the official code sets
float64 globally at import); the link runs in at least float32, outside autocast.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from losscli.errors import UsageError
from losscli.losses.base import Loss, Param, Reference, register_loss
from losscli.losses.eager import eager_under_compile

_SCALING_MIN = 0.001  # official ActNorm: scale = exp(logs) + 0.001


class ActNorm(nn.Module):
    """``(x + b) * (exp(logs) + 0.001)`` per feature, initialised from the first batch it sees
    (mean 0, unit variance). ``initialized`` is a persistent buffer, so a loaded checkpoint is not
    re-initialised by its next batch (the official flag is a plain attribute)."""

    def __init__(self, num_features: int, learn_bias: bool = True):
        super().__init__()
        self.b = nn.Parameter(torch.zeros(num_features), requires_grad=learn_bias)
        self.logs = nn.Parameter(torch.zeros(num_features))
        self.register_buffer("initialized", torch.tensor(False))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not bool(self.initialized):
            with torch.no_grad():
                b = -x.mean(dim=0)
                std = (x + b).square().mean(dim=0).sqrt()
                self.b.copy_(b)
                self.logs.copy_(torch.log(1.0 / (std + 1e-6)))
                self.initialized.fill_(True)
        return (x + self.b) * (torch.exp(self.logs) + _SCALING_MIN)


class PosLinear(nn.Linear):
    """``(softplus(W) x + b) / in_features``: non-negative weights keep the network convex in its input."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.linear(x, F.softplus(self.weight), self.bias) / self.in_features


class ICNN3(nn.Module):
    """The official ``ICNN3(dim, dimh, num_hidden_layers=depth)``: a scalar potential convex in ``x``."""

    def __init__(self, dim: int, dimh: int, depth: int):
        super().__init__()
        half = dimh // 2
        self.wz = nn.ModuleList([nn.Linear(dim, dimh)] + [PosLinear(dimh, half) for _ in range(depth - 1)]
                                + [PosLinear(dimh, 1, bias=False)])
        self.wx = nn.ModuleList([nn.Linear(dim, half) for _ in range(depth - 1)] + [nn.Linear(dim, 1, bias=False)])
        self.wx2 = nn.ModuleList([nn.Linear(dim, half) for _ in range(depth - 1)])
        self.actnorms = nn.ModuleList([ActNorm(half) for _ in range(depth - 1)] + [ActNorm(1, learn_bias=False)])

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        z = F.softplus(self.wz[0](x))
        for wz, wx, wx2, norm in zip(self.wz[1:-1], self.wx[:-1], self.wx2, self.actnorms[:-1]):
            z = F.softplus(norm(wz(z) + wx(x)))
            z = torch.cat([z, F.softplus(wx2(x))], dim=1)
        return self.actnorms[-1](self.wz[-1](z) + self.wx[-1](x))


class ConvexFlowBlock(nn.Module):
    """The official ``DeepConvexFlow`` (identity diagonal): ``v -> grad [softplus(w1) ICNN(v) + softplus(w0) ||v||^2/2]``."""

    def __init__(self, dim: int, dimh: int, depth: int):
        super().__init__()
        self.icnn = ICNN3(dim, dimh, depth)
        self.w1 = nn.Parameter(torch.randn(1))
        self.w0 = nn.Parameter(torch.randn(1))

    def potential(self, v: torch.Tensor) -> torch.Tensor:
        return F.softplus(self.w1) * self.icnn(v) + F.softplus(self.w0) * v.square().sum(dim=1, keepdim=True) / 2

    def forward(self, v: torch.Tensor, create_graph: bool = True) -> torch.Tensor:
        with torch.enable_grad():
            if not v.requires_grad:
                v = v.detach().requires_grad_(True)
            return torch.autograd.grad(self.potential(v).sum(), v, create_graph=create_graph)[0]


class LegendreHead(nn.Module):
    """``Linear(d -> C-1)``, then the monotone link blocks, then softmax+: returns ``log p`` ``[N, C]``."""

    def __init__(self, in_features: int, num_classes: int, dimh: int = 4, depth: int = 4, blocks: int = 1):
        super().__init__()
        if num_classes < 2:
            raise ValueError("LegendreHead needs num_classes >= 2")
        self.in_features, self.num_classes = int(in_features), int(num_classes)
        self.linear = nn.Linear(self.in_features, self.num_classes - 1)
        self.blocks = nn.ModuleList([ConvexFlowBlock(self.num_classes - 1, dimh, depth) for _ in range(blocks)])

    # torch.compile cannot trace the link (autograd.grad inside forward, ActNorm's data-dependent
    # initialisation writes to parameters): it runs eagerly, the rest of the model stays compiled
    @eager_under_compile
    def link(self, u: torch.Tensor) -> torch.Tensor:
        """The learned monotone map ``R^{C-1} -> R^{C-1}`` (before softmax+)."""
        graph = torch.is_grad_enabled()  # False under the engine's no_grad prediction: detach at the end
        with torch.autocast(device_type=u.device.type, enabled=False):
            v = u.float() if u.dtype in (torch.float16, torch.bfloat16) else u
            for block in self.blocks:
                v = block(v, create_graph=graph)
        return v if graph else v.detach()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        v = self.link(self.linear(x))
        zero = torch.zeros(v.shape[0], 1, dtype=v.dtype, device=v.device)
        # log_softmax over all C entries (the max includes the fixed 0): no overflow when every v << 0
        return F.log_softmax(torch.cat([v, zero], dim=1), dim=1)


@register_loss(
    "legendretron",
    family="standard",
    reference=Reference(
        "LegendreTron: Uprising Proper Multiclass Loss Learning", "Lam, Walder, Penev & Nock", 2023, "AISTATS",
        "https://github.com/khflam/legendretron",
    ),
    formula="u = W x + b in R^(C-1);  v = grad Phi_B(... grad Phi_1(u)), Phi_b = softplus(w1) ICNN_b + "
    "softplus(w0) ||.||^2/2;  log p = log_softmax([v, 0]);  l = -log p_y",
    params=(
        Param("dimh", 4, "hidden width of each ICNN potential (even; official MNIST script 4, LIBSVM 2)", kind="int", low=2, search=False),
        Param("depth", 4, "ICNN depth (official scripts 4)", kind="int", low=2, search=False),
        Param("blocks", 1, "number of convex-potential gradient blocks in the link (MNIST script 1, LIBSVM 2)",
              kind="int", low=1, search=False),
    ),
    convex=True,
    supports_weight=True,
    head="legendre",
    notes="Needs its head: the engine installs make_head(in_features, num_classes), a LegendreHead (Linear(d -> C-1), "
    "the link blocks, softmax+ with a zero last logit) with its own parameters, and feeds the head's output, the "
    "log-probabilities [N, C], to the loss, which is their NLL (computed as CE: log_softmax of log-probabilities is "
    "the identity); prediction_logits is the identity (the log-probabilities). Defaults are the official MNIST-family "
    "script's (dimh 4, depth 4, 1 block; it also trains with Adam lr 1e-3, StepLR 0.7 every 4 epochs and an L2 "
    "penalty 0.5 * 1e-3 * sum ||theta||^2 over the linear layer and the link: optimizer settings, not part of the "
    "loss). The link uses autograd.grad(create_graph=True) also at evaluation (double backward in training: costly); "
    "the head turns grad mode on inside and detaches its output under no_grad. ActNorm layers initialise from the "
    "first batch they see (the last one's bias frozen); their 'initialized' flag is checkpointed. The official code "
    "runs in float64 (set globally at import); losscli leaves the default dtype alone and runs the link in at least "
    "float32, outside autocast. Convex in the head's output.",
)
class LegendreTron(Loss):
    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        if self.dimh % 2:
            raise UsageError(f"legendretron: dimh must be even (the ICNN splits it in halves), got {self.dimh}")

    def per_sample(self, logits, target, **context):
        return F.cross_entropy(logits, target, reduction="none")

    def make_head(self, in_features, num_classes):
        return LegendreHead(in_features, num_classes, dimh=self.dimh, depth=self.depth, blocks=self.blocks)
