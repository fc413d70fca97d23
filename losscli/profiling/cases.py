"""Build any registered loss, with plausible inputs, for profiling.

The registry is used generically: whatever a loss declares it needs is synthesised here,
so a newly registered loss is profiled with no edits:

- ``needs_class_counts``: uniform synthetic counts (``max(1, N // C)`` per class);
- ``needs``: the contract's own context builder (``losscli.losses.cases.make_context``): random
  normal teacher logits of the student's shape (scale 3 here), ``index`` ``arange(N)``, ``epoch`` 0,
  ``embeddings`` for a sum with a metric-learning part;
- ``head="cosine"``: the head's output is cosine similarities, so inputs lie in [-1, 1];
  ``head="distance"``: squared distances, so inputs are non-negative;
- multi-label losses get ``[N, C]`` multi-hot targets (about 10% positives);
- ``info.test_params`` (e.g. a harmonic ``n``) are passed to the constructor;
- input kinds: ``head="dual"`` outputs ``[N, 2C]``; ``input="embeddings"`` gets ``[N, C]``
  features; ``input="sets"`` gets ``[N, k+2, C]`` set logits whose member labels come from the
  loss's own ``sample_sets``; ``target="regression"`` gets float targets over ``[vmin, vmax]``
  and ``C`` = ``num_bins``;
- weighted sums (``"ce + 0.1*logz_penalty"``): built as written (each part keeps its own
  parameters), metadata derived from the parts.

A loss that cannot be built or fails a trial forward/backward is reported as skipped
with the reason (``SkipLoss``) rather than crashing a whole sweep.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable

import torch

from losscli.errors import UsageError
from losscli.losses import cases as loss_cases


class SkipLoss(Exception):
    """This loss cannot be profiled in this configuration; ``str(exc)`` says why."""


@dataclass
class ProfileCase:
    """A built loss and a factory of fresh inputs for it."""

    name: str
    spec: str
    loss: torch.nn.Module
    n: int
    c: int
    dtype: torch.dtype
    device: torch.device
    make_inputs: Callable[[], tuple[torch.Tensor, torch.Tensor, dict]] = field(repr=False)


def split_profile_spec(spec: str) -> tuple[str, dict]:
    """``"focal(gamma=3)"`` -> ``("focal", {"gamma": 3})``; a weighted sum ``"ce+0.1*logz_penalty"``
    is its own name, canonical and validated (``("ce + 0.1*logz_penalty", {})``): its parts carry
    their parameters."""
    from losscli.losses.resolve import parse_spec
    from losscli.lossspec import split_composite

    if split_composite(spec) is not None:
        from losscli.losses import resolve_loss

        return resolve_loss(spec).label, {}
    return parse_spec(spec)


def is_composite(name: str) -> bool:
    from losscli.lossspec import split_composite

    return split_composite(name) is not None


def loss_info(name: str):
    """The LossInfo of a registered (or plugin) name, or of a weighted sum (derived from its parts)."""
    from losscli.losses import LOSSES, resolve_loss

    return resolve_loss(name).info() if is_composite(name) else LOSSES.get(name).info


def resolve_loss_names(specs: list[str] | None) -> list[tuple[str, str, dict]]:
    """``["ce", "focal(gamma=3)"]`` -> ``[(spec, canonical name, params)]``; unknown names raise.
    A weighted sum is its own canonical name (see ``split_profile_spec``).

    ``None`` or an empty list means every registered loss.
    """
    from losscli.losses import LOSSES

    if not specs:
        return [(n, n, {}) for n in LOSSES.names()]
    from losscli.errors import UsageError
    from losscli.losses.base import validate_params

    out, seen = [], {}
    for spec in specs:
        name, params = split_profile_spec(spec)
        if is_composite(name):
            key, row = name, (name, name, {})
        else:
            canonical = LOSSES.canonical(name)  # UnknownNameError (UsageError) with "did you mean"
            # every parameter, defaults included: focal, FOCAL and focal(gamma=2.0) are one configuration
            full = validate_params(LOSSES.get(canonical).info, params)  # bad values: one line before anything runs
            key, row = repr((canonical, sorted(full.items()))), (canonical if not params else spec.strip(), canonical,
                                                                params)
        if key in seen:  # measured twice under two labels before (compare refuses the same)
            raise UsageError(f"--losses lists one configuration twice ({seen[key]!r} and {spec.strip()!r}); "
                             "list each once")
        seen[key] = spec.strip()
        out.append(row)
    return out


def synthetic_class_counts(n: int, c: int) -> list[float]:
    return [float(max(1, n // c))] * c


def build_loss_for_profile(name: str, c: int, n: int, params: dict | None = None, **kwargs: Any) -> torch.nn.Module:
    """``build_loss`` with the registry's test parameters and synthetic class counts."""
    from losscli.losses import build_loss

    info = loss_info(name)
    if is_composite(name):  # the parts keep the parameters written in the spec
        counts = {"class_counts": synthetic_class_counts(n, c)} if info.needs_class_counts else {}
        return build_loss(name, **counts, **kwargs)
    merged = dict(info.test_params)
    merged.update(params or {})
    merged.update(kwargs)
    if info.needs_class_counts and "class_counts" not in merged:
        merged["class_counts"] = synthetic_class_counts(n, c)
    if info.target == "regression" and "num_bins" not in merged:
        merged["num_bins"] = c  # the C columns are the bins
    return build_loss(info.name, **merged)


def make_logits(info, n: int, c: int, dtype: torch.dtype, device: torch.device, generator: torch.Generator,
                scale: float = 3.0) -> torch.Tensor:
    """Random logits shaped as the loss's head produces them, as a leaf requiring grad."""
    if info.head == "cosine":
        x = torch.rand(n, c, generator=generator, device=device, dtype=torch.float32) * 2 - 1
    elif info.head == "distance":
        x = torch.rand(n, c, generator=generator, device=device, dtype=torch.float32) * scale + 0.1
    else:
        x = torch.randn(n, c, generator=generator, device=device, dtype=torch.float32) * scale
    return x.to(dtype).requires_grad_(True)


def input_shape(info, loss, n: int, c: int) -> tuple[int, ...]:
    """The shape of the loss's first argument for ``n`` rows (or sets) and ``c`` classes."""
    if info.input == "sets":
        return (n, int(loss.k) + 2, c)
    if info.head == "dual":  # main and auxiliary heads side by side
        return (n, 2 * c)
    return (n, c)


def make_kind_target(info, loss, n: int, c: int, device: torch.device, generator: torch.Generator) -> torch.Tensor:
    """Targets of the loss's declared kind (class labels, set member labels or regression values)."""
    if info.input == "sets":
        pool = torch.randint(0, c, (max(4 * c, n),), generator=generator, device=device).cpu()
        pool[: 2 * c] = torch.arange(c).repeat(2)  # every class twice: each can be a pair class
        seed = int(torch.randint(0, 2**31 - 1, (1,), generator=generator, device=device))
        sets = loss.sample_sets(pool, torch.Generator().manual_seed(seed), num_sets=n)  # the sampler runs on CPU
        return pool[sets].to(device)
    if info.target == "regression":
        lo, hi = float(loss.vmin), float(loss.vmax)
        return lo + (hi - lo) * torch.rand(n, generator=generator, device=device)
    return make_target(info, n, c, device, generator)


def make_target(info, n: int, c: int, device: torch.device, generator: torch.Generator) -> torch.Tensor:
    if info.multilabel:
        y = (torch.rand(n, c, generator=generator, device=device) < 0.1).float()
        y[torch.arange(n, device=device), torch.randint(0, c, (n,), generator=generator, device=device)] = 1.0
        return y
    return loss_cases.class_labels(n, c, generator, device)


def make_case(spec: str, name: str, params: dict, n: int, c: int, dtype: torch.dtype, device: torch.device,
              seed: int = 0, check: bool = True) -> ProfileCase:
    """Build the loss and an input factory; raise ``SkipLoss`` with a reason if it cannot run.

    ``check`` runs one forward/backward on a tiny batch first, so a failure is a clean skip.
    """
    info = loss_info(name)
    try:
        loss = build_loss_for_profile(name, c, n, params).to(device)
    except UsageError as exc:
        if params:  # the user's own parameters are wrong: that is a usage error, not a skip
            raise
        raise SkipLoss(f"cannot build: {exc}") from None
    except Exception as exc:  # noqa: BLE001
        raise SkipLoss(f"cannot build: {type(exc).__name__}: {exc}") from None

    def make_inputs(seed_offset: int = 0, n_rows: int = n):
        g = torch.Generator(device=device)
        g.manual_seed(1000 * seed + seed_offset + 17)
        shape = input_shape(info, loss, n_rows, c)
        logits = make_logits(info, shape[0], c, dtype, device, g) if len(shape) == 2 and shape[1] == c else \
            (torch.randn(shape, generator=g, device=device, dtype=torch.float32) * 3).to(dtype).requires_grad_(True)
        target = make_kind_target(info, loss, n_rows, c, device, g)
        ctx = loss_cases.make_context(info, logits, generator=g, teacher_scale=3.0)
        return logits, target, ctx

    if check:
        try:
            small = min(n, max(8, 2 * c)) if c <= 64 else min(n, 8)
            try:
                trial_loss = build_loss_for_profile(name, c, small, params).to(device)
            except Exception:  # noqa: BLE001
                trial_loss = loss
            logits, target, ctx = make_inputs(seed_offset=99, n_rows=small)
            out = trial_loss(logits, target, **ctx)
            if out.dim() != 0:
                raise SkipLoss(f"loss returned shape {list(out.shape)} with reduction='mean'")
            out.backward()
        except SkipLoss:
            raise
        except Exception as exc:  # noqa: BLE001
            raise SkipLoss(f"trial forward/backward failed: {type(exc).__name__}: {exc}") from None
    return ProfileCase(name, spec, loss, n, c, dtype, device, make_inputs)
