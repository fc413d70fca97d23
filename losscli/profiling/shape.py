"""Analytic shape of a loss: curves and numeric property checks, compared to the registry.

For each loss (small ``C``, float64):

- curves: the per-sample loss and the norm of its gradient w.r.t. the logits as functions
  of the true-class probability ``p_y`` (logits ``z_y = log p_y``, the other classes share
  ``1 - p_y`` equally) and of the margin ``m = z_y - max_{k != y} z_k`` (logits
  ``[m, 0, ..., 0]`` with ``y = 0``);
- bounded: the largest value over sampled logits — random normal at scales 1 to 1e4 and
  adversarial extremes (``z_y = -s``, others ``+s``; one wrong class at ``+s``). Measured
  bounded when the maximum stops growing with the scale: ``max(s <= 1e4) - max(s <= 1e2)``
  is at most ``BOUND_GROWTH * max(1, |max(s <= 1e2)|)`` (5%), and finite;
- symmetric: spread ``(max - min) / max(1, |mean|)`` over random logits of
  ``sum_k loss(z, k)``; symmetric when below ``1e-3``;
- classification-calibrated: for random class distributions ``q`` (top-2 gap >= 0.1, by construction),
  minimise the expected loss ``sum_k q_k loss(z, k)`` over ``z`` (400 Adam steps, cosine lr); the
  minimiser's argmax must be ``argmax q`` for every ``q``;
- proper: the minimiser's softmax equals ``q``: its largest error, relative to ``q``'s top
  probability, is below 2% (an absolute tolerance would call every loss proper at large C, where
  each probability is small).

Measured ``bounded`` and ``symmetric`` are compared with ``info.bounded`` and
``info.symmetric`` (and the maximum with ``info.upper_bound`` when given); disagreements
are listed per loss. Batch-coupled losses (no per-sample value) and losses needing
teacher logits are skipped with the reason.
"""

from __future__ import annotations

import math
from typing import Any, Callable

import torch

SCHEMA = "losscli/shape/v1"
DTYPE = torch.float64
#: bounded when the max over scales up to 1e4 exceeds the max up to 1e2 by at most this
#: fraction (a loss growing even logarithmically in the logits grows by far more)
BOUND_GROWTH = 0.05
#: proper when the minimiser's largest probability error is below this fraction of q's top probability
PROPER_TOLERANCE = 0.02
#: the minimiser check's target distributions have their top two classes at least this far apart
MODE_GAP = 0.1
TILE_ELEMENTS = 1 << 24  # 128 MB of float64: the largest [rows * C, C] tile one symmetry call builds


class _ShapeSkip(Exception):
    pass


def _per_sample_fn(name: str, c: int, params: dict | None = None) -> tuple[Callable, Any]:
    """``f(logits [M, C], target [M]) -> [M]`` per-sample losses (float64)."""
    from losscli.profiling.cases import build_loss_for_profile, loss_info

    info = loss_info(name)
    if info.batch_coupled:
        raise _ShapeSkip("batch-coupled: no per-sample loss value")
    if info.input != "logits" or info.target != "class":
        raise _ShapeSkip(f"takes {info.input} with {info.target} targets, not logits with class labels")
    if "teacher_logits" in info.needs:
        raise _ShapeSkip("needs teacher logits: its shape depends on the teacher")
    loss = build_loss_for_profile(name, c, 64 * c, params, reduction="none")

    def f(z: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        ctx: dict[str, Any] = {}
        if "index" in info.needs:
            ctx["index"] = torch.arange(z.shape[0])
        if "epoch" in info.needs:
            ctx["epoch"] = 0
        out = loss(z, y, **ctx)
        if out.dim() != 1:
            raise _ShapeSkip(f"reduction='none' returned shape {list(out.shape)}")
        return out

    return f, info


def _value_and_grad_norm(f: Callable, z: torch.Tensor, y: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    z = z.detach().clone().requires_grad_(True)
    v = f(z, y)
    (g,) = torch.autograd.grad(v.sum(), z)
    return v.detach(), g.norm(dim=1)


def curves(f: Callable, c: int, points: int = 121) -> dict[str, list[float]]:
    """Loss and gradient norm against the true-class probability and against the margin."""
    p = torch.logspace(-4, 0, points, dtype=DTYPE).clamp_max(1 - 1e-4)
    zy = p.log()
    zo = ((1 - p) / (c - 1)).log()
    z = zo[:, None].repeat(1, c)
    z[:, 0] = zy
    y = torch.zeros(points, dtype=torch.long)
    v, gn = _value_and_grad_norm(f, z, y)
    m = torch.linspace(-10, 10, points, dtype=DTYPE)
    zm = torch.zeros(points, c, dtype=DTYPE)
    zm[:, 0] = m
    vm, gm = _value_and_grad_norm(f, zm, y)
    return {"p_true": p.tolist(), "loss_vs_p": v.tolist(), "grad_norm_vs_p": gn.tolist(),
            "margin": m.tolist(), "loss_vs_margin": vm.tolist(), "grad_norm_vs_margin": gm.tolist()}


def _max_over_scales(f: Callable, c: int, scales: list[float], gen: torch.Generator, samples: int) -> float:
    best = -math.inf
    for s in scales:
        zs = [torch.randn(samples, c, generator=gen, dtype=DTYPE) * s]
        adv = torch.full((c, c), float(s), dtype=DTYPE)  # row k: class k at -s, others +s
        adv[torch.arange(c), torch.arange(c)] = -float(s)
        zs.append(adv)
        one = torch.zeros(c, c, dtype=DTYPE)  # one wrong class at +s
        one[torch.arange(c), (torch.arange(c) + 1) % c] = float(s)
        zs.append(one)
        for z in zs:
            y = torch.arange(z.shape[0]) % c
            with torch.no_grad():
                v = f(z, y)
            if not torch.isfinite(v).all():
                return math.inf
            best = max(best, float(v.max()))
    return best


def check_bounded(f: Callable, c: int, gen: torch.Generator, samples: int = 256) -> dict[str, Any]:
    low = _max_over_scales(f, c, [1.0, 10.0, 100.0], gen, samples)
    high = max(low, _max_over_scales(f, c, [1e3, 1e4], gen, samples))
    bounded = math.isfinite(high) and (high - low) <= BOUND_GROWTH * max(1.0, abs(low))
    return {"max_value": high, "bounded": bool(bounded)}


def check_symmetric(f: Callable, c: int, gen: torch.Generator, samples: int = 256) -> dict[str, Any]:
    z = torch.cat([torch.randn(samples, c, generator=gen, dtype=DTYPE) * s for s in (0.5, 2.0, 5.0)])
    # all c targets of each row in one call (see minimise_expected), rows in chunks of at most
    # TILE_ELEMENTS tiled logits (768 rows x C^2 would be 6 GB of float64 at C=1000)
    rows = max(1, TILE_ELEMENTS // (c * c))
    with torch.no_grad():
        total = torch.cat([
            f(zc.repeat_interleave(c, dim=0), torch.arange(c).repeat(zc.shape[0])).view(-1, c).sum(dim=1)
            for zc in z.split(rows)
        ])
    if not torch.isfinite(total).all():
        return {"sum_spread": math.inf, "symmetric": False}
    spread = float((total.max() - total.min()) / max(1.0, float(total.mean().abs())))
    return {"sum_spread": spread, "symmetric": bool(spread < 1e-3)}


def minimise_expected(f: Callable, q: torch.Tensor, steps: int = 400, lr: float = 0.1) -> torch.Tensor:
    """argmin_z sum_k q_k loss(z, k), row by row (rows are independent): Adam, cosine-decayed lr."""
    m, c = q.shape
    z = torch.zeros(m, c, dtype=DTYPE, requires_grad=True)
    # One loss call per step on every (row, class) pair, [m*c, c], instead of c calls: the
    # expectation over c targets then costs one vectorised pass, not c Python round trips
    # (400 x c calls made --shape-classes 1000 run for hours).
    targets = torch.arange(c).repeat(m)
    weights = q.reshape(-1)
    opt = torch.optim.Adam([z], lr=lr)
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=steps, eta_min=lr * 1e-3)
    last_good = z.detach().clone()
    for _ in range(steps):
        opt.zero_grad()
        tiled = z[:, None, :].expand(m, c, c).reshape(m * c, c)
        obj = (weights * f(tiled, targets)).sum()
        if not torch.isfinite(obj):
            break
        obj.backward()
        opt.step()
        sched.step()
        if torch.isfinite(z).all():
            last_good = z.detach().clone()
    return last_good


def check_minimiser(f: Callable, c: int, gen: torch.Generator, n_dist: int = 16) -> dict[str, Any]:
    q = torch.stack([_with_clear_mode(_dirichlet(c, gen)) for _ in range(n_dist)])
    z = minimise_expected(f, q)
    p = torch.softmax(z, dim=1)
    calibrated = bool((p.argmax(1) == q.argmax(1)).all())
    gap = (p - q).abs()
    err = float(gap.max())
    rel = float((gap / q.amax(dim=1, keepdim=True)).max())
    return {"calibrated": calibrated, "proper": bool(rel < PROPER_TOLERANCE), "minimiser_max_error": err,
            "minimiser_rel_error": rel}


def _with_clear_mode(q: torch.Tensor, gap: float = MODE_GAP) -> torch.Tensor:
    """``q`` with mass moved onto its top class until the top two differ by at least ``gap``: the
    argmax of the minimiser is then well defined. (Rejecting draws instead never ended for large C:
    the top two of a flat Dirichlet with C = 1000 are ~0.007 and ~0.006.)"""
    top = q.topk(2)
    shortfall = gap - float(top.values[0] - top.values[1])
    if shortfall <= 0:
        return q
    s = shortfall / (1.0 - gap)  # (d + s) / (1 + s) = gap for the top-two difference d
    q = q.clone()
    q[top.indices[0]] += s
    return q / (1.0 + s)


def _dirichlet(c: int, gen: torch.Generator) -> torch.Tensor:
    e = -torch.rand(c, generator=gen, dtype=DTYPE).clamp_min(1e-12).log()  # Exp(1) -> Dirichlet(1,...,1)
    return e / e.sum()


def analyse_loss(name: str, c: int = 4, params: dict | None = None, seed: int = 0, with_curves: bool = True,
                 label: str | None = None) -> dict[str, Any]:
    """One row of the shape table (plus ``curves`` when asked)."""
    f, info = _per_sample_fn(name, c, params)
    gen = torch.Generator().manual_seed(seed)
    row: dict[str, Any] = {"loss": label or info.name, "c": c}
    b = check_bounded(f, c, gen)
    s = check_symmetric(f, c, gen)
    mnm = check_minimiser(f, c, gen)
    upper = None
    if info.upper_bound is not None:
        try:
            from losscli.profiling.cases import build_loss_for_profile

            built = build_loss_for_profile(name, c, 64 * c, params)
            upper = float(info.upper_bound(dict(built.params), c))
        except Exception:  # noqa: BLE001
            upper = None
    row.update({
        "max_value": b["max_value"], "bounded": b["bounded"], "bounded_registry": bool(info.bounded),
        "upper_bound_registry": upper,
        "sum_spread": s["sum_spread"], "symmetric": s["symmetric"], "symmetric_registry": bool(info.symmetric),
        "calibrated": mnm["calibrated"], "proper": mnm["proper"], "minimiser_max_error": mnm["minimiser_max_error"],
        "minimiser_rel_error": mnm["minimiser_rel_error"],
    })
    disagree = []
    if row["bounded"] != row["bounded_registry"]:
        disagree.append("bounded")
    if row["symmetric"] != row["symmetric_registry"]:
        disagree.append("symmetric")
    if upper is not None and math.isfinite(b["max_value"]) and b["max_value"] > upper * (1 + 1e-6) + 1e-6:
        disagree.append("upper_bound")
    row["disagreements"] = disagree
    if with_curves:
        row["curves"] = curves(f, c)
    return row


#: classes of the shape analysis: its work grows as C**2 and more (C=100: ~13 s per loss, C=1000: ~2 min)
MAX_SHAPE_CLASSES = 1000


def analyse_losses(specs: list[str] | None = None, c: int = 4, seed: int = 0, with_curves: bool = True,
                   progress: Callable[[str], None] | None = None) -> dict[str, Any]:
    """``losscli/shape/v1`` report: one row per loss, skipped losses with reasons."""
    from losscli.profiling.cases import resolve_loss_names
    from losscli.environment import environment

    from losscli.config.schema import check_seed
    from losscli.errors import UsageError

    if c < 2:
        raise UsageError("--shape needs at least 2 classes")
    if c > MAX_SHAPE_CLASSES:  # 10**9 skipped every loss (2 TB per curve) and printed "(no rows)", exit 0
        raise UsageError(f"--shape-classes {c} is too many: at most {MAX_SHAPE_CLASSES} (the analysis grows faster "
                         "than C squared: C=1000 takes about 2 minutes per loss); a loss's shape shows at a few classes")
    check_seed(seed, "--seed")
    say = progress or (lambda msg: None)
    rows, skipped = [], []
    for spec, name, params in resolve_loss_names(specs):
        say(f"shape {spec} (C={c})")
        try:
            rows.append(analyse_loss(name, c, params, seed, with_curves, label=spec))
        except _ShapeSkip as exc:
            skipped.append({"loss": spec, "reason": str(exc)})
        except Exception as exc:  # noqa: BLE001
            if params and isinstance(exc, ValueError):
                raise
            skipped.append({"loss": spec, "reason": f"{type(exc).__name__}: {exc}"})
            say(f"  skipped: {exc}")
    return {"schema": SCHEMA, "config": {"losses": [r["loss"] for r in rows] + [s["loss"] for s in skipped],
                                         "classes": c, "seed": seed},
            "env": environment(torch.device("cpu")), "rows": rows, "skipped": skipped}


def plot_shapes(report: dict[str, Any], path: str, per_figure: int = 8) -> list[str]:
    """Loss and gradient norm against p_y and against the margin; several PNGs if many losses."""
    import os

    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = [r for r in report["rows"] if "curves" in r]
    if not rows:
        return []
    stem, ext = os.path.splitext(path)
    ext = ext or ".png"
    written = []
    for i in range(0, len(rows), per_figure):
        group = rows[i:i + per_figure]
        fig, axes = plt.subplots(2, 2, figsize=(12, 8))
        panels = [
            (axes[0, 0], "p_true", "loss_vs_p", "true-class probability p_y", "loss", True),
            (axes[0, 1], "p_true", "grad_norm_vs_p", "true-class probability p_y", "|d loss / d z|", True),
            (axes[1, 0], "margin", "loss_vs_margin", "margin z_y - max_k z_k", "loss", False),
            (axes[1, 1], "margin", "grad_norm_vs_margin", "margin z_y - max_k z_k", "|d loss / d z|", False),
        ]
        for ax, xk, yk, xl, yl, logx in panels:
            for r in group:
                ax.plot(r["curves"][xk], r["curves"][yk], label=r["loss"])
            if logx:
                ax.set_xscale("log")
            # losses span orders of magnitude (circle's gamma=256) and some go negative
            ax.set_yscale("symlog", linthresh=1e-2)
            if yk.startswith("grad"):
                ax.set_ylim(bottom=0)
            ax.set_xlabel(xl)
            ax.set_ylabel(yl)
            ax.grid(True, alpha=0.3)
        axes[0, 0].legend(fontsize=8)
        fig.suptitle(f"loss shape (C={group[0]['c']}; inputs are the loss's logits, cosines for cosine-head losses)")
        fig.tight_layout()
        out = f"{stem}{'' if i == 0 else f'_{i // per_figure + 1}'}{ext}"
        os.makedirs(os.path.dirname(out) or ".", exist_ok=True)
        fig.savefig(out, dpi=100)
        plt.close(fig)
        written.append(out)
    return written
