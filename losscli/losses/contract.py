"""The loss contract: what every loss promises, as checks that any loss spec can be run through.

One implementation serves ``losscli check-loss SPEC`` (registered losses, composites, plugins) and
the registry's own parametrised tests (``tests/test_losses_registry.py``), so both test the same
things. Each check builds fresh losses of the spec on inputs of its declared kind
(:mod:`losscli.losses.cases`) and ends as ``pass``, ``fail`` (with the reason) or ``skip`` (with why
it does not apply: a property the loss does not claim, an input kind without class labels):

==============  ======================================================================================
builds          builds with its defaults and takes the trainer's epoch-end call
reductions      mean is a finite scalar, none is ``[N]``, sum = the sum of none (a batch-level loss
                refuses sum and none with a LossInputError)
mean            mean = sum / N
permutation     permuting the rows permutes reduction none and leaves the mean unchanged (context
                such as sample indices follows its rows)
finite_float32  finite loss and gradients at logits of magnitude 1e2 and 1e4, float32
finite_bf16     finite loss and gradients in bfloat16 at random logits (scale 20) and at magnitude 1e4;
                the gradient stays bfloat16
gradcheck       float64 ``torch.autograd.gradcheck`` (skipped when ``exact_gradient=False`` is declared)
bounded         where claimed with a bound: values never exceed ``info.upper_bound``
symmetric       where claimed: ``sum_k l(z, k)`` is the same for every z
soft_targets    where claimed: probability targets give a finite loss; one-hot ones equal class indices
ignore_index    where claimed: a row whose target is ignore_index counts as absent (0 under reduction none)
weight          where claimed: uniform weights change nothing; mean = sum_i w_{y_i} l_i / sum_i w_{y_i};
                reduction none is w_{y_i} l_i (unless the loss applies weights itself)
bad_inputs      wrong shapes raise a LossInputError (one clear line), nothing else
func_grad       ``torch.func.grad`` equals autograd's gradient (float64)
func_vmap       ``torch.func.vmap`` over two stacked batches equals one call per batch; per-sample
                gradients (``vmap(grad(...))``) equal the rows of the batch gradient (skipped, with
                the reason, for a loss that raises VmapUnsupported)
==============  ======================================================================================

Tolerances are relative and absolute 1e-5 (float32 inputs).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import torch

from losscli.errors import UsageError
from losscli.losses.base import LossInputError
from losscli.losses.resolve import LossSpec, resolve_loss
from losscli.plugins import describe_exception
from losscli.losses.contract_case import C, MAX_CLASSES, N, TOL, Case, Skip, assert_close, assert_finite
from losscli.losses.contract_func import check_func_grad, check_func_vmap


@dataclass(frozen=True)
class CheckResult:
    check: str
    status: str  # "pass" | "fail" | "skip"
    detail: str = ""

    @property
    def failed(self) -> bool:
        return self.status == "fail"

    def to_dict(self) -> dict[str, str]:
        return {"check": self.check, "what": CHECKS[self.check][0], "status": self.status, "detail": self.detail}


# --------------------------------------------------------------------------- the checks
def _builds(case: Case) -> str:
    fn = case.loss()
    fn.on_epoch_end(0, 0.5)  # every loss takes the trainer's epoch-end call
    return type(fn).__name__


def _reductions(case: Case) -> str:
    logits, target = case.inputs()
    mean = case.loss()(logits, target, **case.context(logits))
    if mean.dim() != 0 or not bool(torch.isfinite(mean)):
        raise AssertionError(f"reduction='mean' gave {mean.detach().tolist()}, not a finite scalar")
    if case.info.batch_coupled:
        for reduction in ("sum", "none"):
            try:
                case.loss(reduction=reduction)(logits, target, **case.context(logits))
            except LossInputError:
                continue
            raise AssertionError(f"a batch-level loss must refuse reduction={reduction!r} with a LossInputError")
        return "batch-level loss: mean only (sum and none refused)"
    none = case.loss(reduction="none")(logits, target, **case.context(logits))
    total = case.loss(reduction="sum")(logits, target, **case.context(logits))
    if tuple(none.shape) != (case.n,):
        raise AssertionError(f"reduction='none' gave shape {list(none.shape)}, expected [{case.n}]")
    assert_close(total, none.sum(), "reduction='sum' vs the sum of reduction='none'")
    return f"mean: scalar; none: [{case.n}]; sum = sum of none"


def _mean(case: Case) -> str:
    if case.info.batch_coupled:
        raise Skip("batch-level loss: no per-sample decomposition")
    logits, target = case.inputs()
    mean = case.loss()(logits, target, **case.context(logits))
    total = case.loss(reduction="sum")(logits, target, **case.context(logits))
    assert_close(mean, total / case.n, "mean vs sum / N")
    return f"{mean.item():.6g} = {total.item():.6g} / {case.n}"


def _permutation(case: Case) -> str:
    if not case.info.deterministic:
        raise Skip("random by design (deterministic=False)")
    logits, target = case.inputs(seed=1)
    perm = torch.randperm(case.n, generator=torch.Generator().manual_seed(3))
    ctx = case.context(logits)
    ctx_p = case.rows(ctx, perm, case.n)  # per-sample context (indices, teacher) follows its sample
    assert_close(case.loss()(logits[perm], target[perm], **ctx_p), case.loss()(logits, target, **ctx),
           "mean of permuted rows vs mean")
    if case.info.batch_coupled:
        return "mean invariant (batch-level loss)"
    none = case.loss(reduction="none")(logits, target, **ctx)
    assert_close(case.loss(reduction="none")(logits[perm], target[perm], **ctx_p), none[perm],
           "reduction='none' of permuted rows vs permuted reduction='none'")
    return "none equivariant, mean invariant"


def _finite_float32(case: Case) -> str:
    for magnitude in (1e2, 1e4):
        logits, target = case.inputs(seed=2)
        logits = (logits.sign() * magnitude).float().requires_grad_(True)
        loss = case.loss()(logits, target, **case.context(logits.detach()))
        loss.backward()
        assert_finite(loss, logits.grad, f"|z| = {magnitude:g} (float32)")
    return "|z| = 1e2, 1e4"


def _finite_bf16(case: Case) -> str:
    for where, (logits, target) in (("random logits, scale 20", case.inputs(seed=4, scale=20.0)),
                                    ("|z| = 1e4", case.inputs(seed=2))):
        if where.startswith("|z|"):
            logits = logits.sign() * 1e4
        logits = logits.bfloat16().requires_grad_(True)
        loss = case.loss()(logits, target, **case.context(logits.detach().float()))
        loss.backward()
        assert_finite(loss, logits.grad, f"{where} (bfloat16)")
        if logits.grad.dtype != torch.bfloat16:
            raise AssertionError(f"the gradient of bfloat16 logits is {logits.grad.dtype}, not bfloat16")
    return "scale 20 and |z| = 1e4"


def _gradcheck(case: Case) -> str:
    if not case.info.exact_gradient:
        raise Skip("defines its gradient with stop-gradients or random derivatives (exact_gradient=False)")
    logits, target = case.inputs(dtype=torch.float64, seed=5, scale=1.5, n=6, c=4)
    logits.requires_grad_(True)
    fn, ctx = case.loss(c=4), case.context(logits.detach())
    # points where a loss has a kink (clamps, max, hinge) are measure-zero at random inputs
    torch.autograd.gradcheck(lambda z: fn(z, target, **ctx), (logits,), eps=1e-6, atol=1e-5, rtol=1e-4)
    return "float64, 6 x 4"


def _bounded(case: Case) -> str:
    if not case.info.bounded:
        raise Skip("not claimed")
    if case.info.upper_bound is None:
        raise Skip("bounded is claimed but no upper_bound is stated to test against")
    fn = case.loss() if case.info.batch_coupled else case.loss(reduction="none")
    bound = case.info.upper_bound(fn.params, case.c)
    worst = -float("inf")
    for seed in range(5):
        logits, target = case.inputs(seed=seed, scale=30.0)
        worst = max(worst, float(fn(logits, target, **case.context(logits)).max()))
    if worst > bound * (1 + TOL) + 1e-6:
        raise AssertionError(f"value {worst:.6g} exceeds the stated bound {bound:.6g}")
    return f"max {worst:.4g} <= bound {bound:.4g}"


def _symmetric(case: Case) -> str:
    if not case.info.symmetric:
        raise Skip("not claimed")
    fn = case.loss(reduction="none")
    totals = []
    for seed in range(4):
        logits, _ = case.inputs(seed=seed, n=3)
        ctx = case.context(logits)
        totals.append(sum(fn(logits, torch.full((3,), k), **ctx) for k in range(case.c)))
    spread = (torch.cat(totals).max() - torch.cat(totals).min()).abs().item()
    if spread >= 1e-4 * max(1.0, torch.cat(totals).abs().max().item()):
        raise AssertionError(f"sum over classes varies by {spread:.3g} across inputs")
    return f"sum over classes constant (spread {spread:.1g})"


def _class_labels(case: Case, what: str) -> None:
    info = case.info
    if info.input == "sets" or info.target == "regression":
        raise Skip(f"{what} applies to class-label targets; this loss takes {info.input} / {info.target} targets")


def _soft_targets(case: Case) -> str:
    if not case.info.soft_targets or case.info.multilabel:
        raise Skip("not claimed" if not case.info.soft_targets else "multi-label: [N, C] targets are multi-hot")
    _class_labels(case, "soft targets")
    logits, target = case.inputs(seed=6)
    ctx = case.context(logits)
    probs = torch.softmax(torch.randn(logits.shape[0], case.c, generator=torch.Generator().manual_seed(7)), 1)
    soft = case.loss()(logits, probs, **ctx)
    if not bool(torch.isfinite(soft)):
        raise AssertionError(f"probability targets gave {soft.item()}")
    onehot = torch.nn.functional.one_hot(target, case.c).float()
    assert_close(case.loss()(logits, onehot, **ctx), case.loss()(logits, target, **ctx), "one-hot targets vs class indices")
    return "finite on probabilities; one-hot = class indices"


def _ignore_index(case: Case) -> str:
    if not case.info.supports_ignore_index:
        raise Skip("not claimed (supports_ignore_index=False)")
    _class_labels(case, "ignore_index")
    logits, target = case.inputs(seed=9)
    ctx = case.context(logits)
    ignored = target.clone()
    ignored[2] = -100
    keep = torch.arange(case.n) != 2
    ctx_k = case.rows(ctx, keep, case.n)
    assert_close(case.loss()(logits, ignored, **ctx), case.loss()(logits[keep], target[keep], **ctx_k),
           "mean with row 2 ignored vs mean without row 2")
    if case.info.batch_coupled:
        return "ignored row = absent row (mean)"
    per = case.loss(reduction="none")(logits, ignored, **ctx)
    if per[2].item() != 0:
        raise AssertionError(f"reduction='none' gives {per[2].item():.6g} for the ignored row, not 0")
    assert_close(per[keep], case.loss(reduction="none")(logits[keep], target[keep], **ctx_k),
           "reduction='none' of the other rows with row 2 ignored vs without it")
    return "ignored row = absent row; 0 under reduction none"


def _weight(case: Case) -> str:
    if not case.info.supports_weight:
        raise Skip("not claimed (supports_weight=False)")
    _class_labels(case, "per-class weight")
    if case.info.multilabel:
        raise Skip("multi-label: weights apply per class column, not per row (tested in the loss's own module)")
    logits, target = case.inputs(seed=10)
    ctx = case.context(logits)
    assert_close(case.loss(weight=[2.0] * case.c)(logits, target, **ctx), case.loss()(logits, target, **ctx),
           "mean with uniform weights 2 vs without weights")
    if case.info.batch_coupled:
        return "uniform weights change nothing"
    w = torch.rand(case.c, generator=torch.Generator().manual_seed(11), dtype=torch.float64) + 0.5
    none_w = case.loss(weight=w.tolist(), reduction="none")(logits, target, **ctx)
    wy = w[target].to(none_w.dtype)
    assert_close(case.loss(weight=w.tolist())(logits, target, **ctx), none_w.sum() / wy.sum(),
           "weighted mean vs sum_i w_{y_i} l_i / sum_i w_{y_i}")
    fn = case.loss(reduction="none")
    if getattr(fn, "handles_weight", False):
        return "uniform weights change nothing; weighted mean normalised by sum of w_{y_i}"
    assert_close(none_w, wy * fn(logits, target, **ctx), "weighted reduction='none' vs w_{y_i} * l_i")
    return "uniform weights change nothing; none = w_{y_i} l_i; mean = sum w l / sum w"


def _bad_inputs(case: Case) -> str:
    fn = case.loss()
    logits, target = case.inputs()
    ctx = case.context(logits)
    for what, args in (("logits without the batch dimension", (logits[0], target)),
                       ("one target fewer than rows", (logits, target[:-1]))):
        try:
            fn(*args, **ctx)
        except LossInputError:
            continue
        except Exception as exc:  # noqa: BLE001 - the point of the check: which error it raises
            raise AssertionError(f"{what} raised {describe_exception(exc)}, not a LossInputError") from None
        raise AssertionError(f"{what} was accepted")
    return "wrong shapes raise LossInputError"


#: name -> (what it checks, function); the order of the report
CHECKS: dict[str, tuple[str, Callable[[Case], str]]] = {
    "builds": ("builds with its defaults; takes the epoch-end call", _builds),
    "reductions": ("mean is a finite scalar; none is [N]; sum = sum of none", _reductions),
    "mean": ("mean = sum / N", _mean),
    "permutation": ("permuting rows permutes none, leaves mean unchanged", _permutation),
    "finite_float32": ("finite loss and gradients at |z| = 1e2, 1e4 (float32)", _finite_float32),
    "finite_bf16": ("finite loss and gradients in bfloat16 (|z| up to 1e4)", _finite_bf16),
    "gradcheck": ("float64 gradcheck", _gradcheck),
    "bounded": ("claimed bound holds", _bounded),
    "symmetric": ("claimed symmetry: sum over classes is constant", _symmetric),
    "soft_targets": ("claimed soft targets: finite; one-hot = class indices", _soft_targets),
    "ignore_index": ("an ignored row counts as absent", _ignore_index),
    "weight": ("claimed per-class weight semantics (torch's)", _weight),
    "bad_inputs": ("wrong shapes raise LossInputError", _bad_inputs),
    "func_grad": ("torch.func.grad equals autograd (float64)", check_func_grad),
    "func_vmap": ("torch.func.vmap over batches; per-sample gradients", check_func_vmap),
}


def contract_case(spec: "str | LossSpec | dict", num_classes: int = C, n: int = N) -> Case:
    """The :class:`Case` of ``spec``; a bad spec is a UsageError. The checks choose weight and
    ignore_index themselves, so a spec that sets them is refused."""
    if isinstance(num_classes, bool) or not isinstance(num_classes, int) or not 2 <= num_classes <= MAX_CLASSES:
        raise UsageError(f"the contract checks take 2 to {MAX_CLASSES} classes, got {num_classes!r}")
    resolved = spec if isinstance(spec, LossSpec) else resolve_loss(spec)
    if resolved.options:
        key = next(iter(resolved.options))
        raise UsageError(f"{resolved.label}: remove {key}=...; the checks set weight and ignore_index themselves")
    return Case(resolved, num_classes, max(n, num_classes))  # every class present in a batch


def run_check(case: "Case | str | LossSpec", check: str) -> CheckResult:
    """Run one check; its exceptions become a ``fail`` with the reason (one line)."""
    if check not in CHECKS:
        raise UsageError(f"unknown check {check!r}; checks: {', '.join(CHECKS)}")
    import warnings

    case = case if isinstance(case, Case) else contract_case(case)
    # the loss's own warnings (a plugin's torch broadcasting warning: two lines per check on stderr)
    # go into the check's detail, where the report shows them
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        try:
            detail = CHECKS[check][1](case)
        except Skip as exc:
            return CheckResult(check, "skip", str(exc))
        except AssertionError as exc:
            return CheckResult(check, "fail", _with_warning(_one_line(str(exc)) or "assertion failed", caught))
        except Exception as exc:  # noqa: BLE001 - a loss that raises fails the check, with the reason
            return CheckResult(check, "fail", _with_warning(_one_line(describe_exception(exc)), caught))
    return CheckResult(check, "pass", _with_warning(detail, caught))


def _with_warning(detail: str, caught: list) -> str:
    """``detail`` plus the first warning the check raised, if any (one line)."""
    if not caught:
        return detail
    first = caught[0]
    return _one_line(f"{detail} (warning: {first.category.__name__}: {first.message})")


def check_loss(spec: "Case | str | LossSpec | dict", checks: list[str] | None = None,
               num_classes: int = C) -> list[CheckResult]:
    """Run ``checks`` (default: all, in order) on ``spec`` (or a built :class:`Case`); when the loss
    does not build, the other checks are skipped."""
    names = list(CHECKS) if not checks else list(dict.fromkeys(checks))
    for name in names:
        if name not in CHECKS:
            import difflib

            close = difflib.get_close_matches(name, CHECKS, n=1)
            hint = f" Did you mean {close[0]!r}?" if close else ""
            raise UsageError(f"unknown check {name!r}.{hint} Checks: {', '.join(CHECKS)}.")
    case = spec if isinstance(spec, Case) else contract_case(spec, num_classes)
    built = run_check(case, "builds")
    results = [built] if "builds" in names else []
    for name in names:
        if name == "builds":
            continue
        results.append(run_check(case, name) if not built.failed else CheckResult(name, "skip", "the loss does not build"))
    return results


def _one_line(text: str, limit: int = 240) -> str:
    line = " ".join(text.split())
    return line if len(line) <= limit else line[: limit - 3] + "..."
