"""Materialised vs chunked final linear layer + loss: time and peak memory.

Materialised: ``logits = hidden @ W.T`` then the registry loss (full ``[N, C]`` logits and
gradient). Chunked: ``losscli.losses.linear.linear_loss``. Both run forward + backward
with gradients for ``hidden`` and ``W``; memory is measured as in ``memory.py`` with the
inputs (hidden, W, target) as the base.
"""

from __future__ import annotations

import gc
from typing import Any, Callable

import torch

from losscli.profiling import memory as mem
from losscli.profiling.harness import _free, _is_oom, dtype_name, time_callable


def compare_linear(loss: str = "ce", *, n: int, c: int, d: int, dtype: torch.dtype = torch.float32,
                   device: torch.device = torch.device("cpu"), repeats: int = 5, warmup: int = 1,
                   chunk_size: int | None = None, memory: bool = True, check_grads: bool = True,
                   seed: int = 0, params: dict | None = None) -> dict[str, Any]:
    """One row: materialised and chunked times (ms), peaks (MB) and their ratios."""
    from losscli.losses.linear import default_chunk_size, linear_loss, materialised_linear_loss

    params = dict(params or {})
    g = torch.Generator(device=device).manual_seed(seed + 5)
    hidden = torch.randn(n, d, generator=g, device=device, dtype=torch.float32).to(dtype).requires_grad_(True)
    weight = (torch.randn(c, d, generator=g, device=device, dtype=torch.float32) / d ** 0.5).to(dtype).requires_grad_(True)
    target = torch.randint(0, c, (n,), generator=g, device=device)
    cs = chunk_size or default_chunk_size(n, c)
    base = mem.tensor_bytes(hidden, weight, target)

    def clear():
        hidden.grad = None
        weight.grad = None

    variants: dict[str, Callable[[], torch.Tensor]] = {
        "materialised": lambda: materialised_linear_loss(hidden, weight, target, loss, **params),
        "chunked": lambda: linear_loss(hidden, weight, target, loss, chunk_size=cs, **params),
    }
    row: dict[str, Any] = {"loss": loss, "n": n, "c": c, "d": d, "dtype": dtype_name(dtype), "device": device.type,
                           "chunk_size": cs, "threads": torch.get_num_threads()}
    grads = {}
    for name, fwd in variants.items():
        try:
            t = time_callable(fwd, clear, device, repeats, warmup)
            row[f"{name}_ms"] = t["total_ms"]
            row[f"{name}_ms_p20"] = t["total_ms_p20"]
            row[f"{name}_ms_p80"] = t["total_ms_p80"]
            if memory:
                clear()
                m = mem.measure_peak(lambda: fwd().backward(), device, base_bytes=base)
                row[f"{name}_peak_mb"] = m["peak_mb"]
                row[f"{name}_peak_delta_mb"] = m["peak_delta_mb"]
            if check_grads:
                clear()
                fwd().backward()
                grads[name] = (hidden.grad.detach().clone(), weight.grad.detach().clone())
            clear()
        except Exception as exc:  # noqa: BLE001
            if not _is_oom(exc):
                raise
            row[f"{name}_ms"] = None
            row[f"{name}_error"] = "out of memory"
            clear()
            _free(device)
    if row.get("materialised_ms") and row.get("chunked_ms"):
        row["time_ratio"] = row["chunked_ms"] / row["materialised_ms"]
    else:
        row["time_ratio"] = None
    if memory and row.get("materialised_peak_mb") and row.get("chunked_peak_mb"):
        row["memory_ratio"] = row["chunked_peak_mb"] / row["materialised_peak_mb"]
        row["memory_delta_ratio"] = (row["chunked_peak_delta_mb"] / row["materialised_peak_delta_mb"]
                                     if row["materialised_peak_delta_mb"] else None)
    else:
        row["memory_ratio"] = row["memory_delta_ratio"] = None
    if len(grads) == 2:
        errs = []
        for a, b in zip(grads["materialised"], grads["chunked"]):
            scale = b.abs().max().clamp_min(1e-30)
            errs.append(float(((a.float() - b.float()).abs().max() / scale.float())))
        row["grad_max_rel_err"] = max(errs)
    else:
        row["grad_max_rel_err"] = None
    del hidden, weight, target, grads
    gc.collect()
    _free(device)
    return row


def compare_linear_losses(losses: list[str], *, batches, classes, dims, dtypes, device: torch.device,
                          repeats: int, warmup: int, chunk_size: int | None = None, memory: bool = True,
                          progress: Callable[[str], None] | None = None) -> tuple[list[dict], list[dict]]:
    """``compare_linear`` for every (loss, dtype, N, C, D); unsupported losses go to ``skipped``."""
    from losscli.losses import LOSSES
    from losscli.losses.linear import unsupported_reason
    from losscli.lossspec import parse_loss_spec

    say = progress or (lambda msg: None)
    rows, skipped = [], []
    for spec in losses:
        name, params = parse_loss_spec(spec)
        info = LOSSES.get(name).info
        reason = unsupported_reason(info)
        if reason is not None:
            skipped.append({"loss": spec, "reason": f"linear_loss: {reason}"})
            continue
        for dt in dtypes:
            for n in batches:
                for c in classes:
                    for d in dims:
                        say(f"linear {spec} n={n} c={c} d={d} {dtype_name(dt)}")
                        try:
                            rows.append(compare_linear(info.name if not params else spec, n=n, c=c, d=d, dtype=dt,
                                                       device=device, repeats=repeats, warmup=warmup,
                                                       chunk_size=chunk_size, memory=memory))
                        except Exception as exc:  # noqa: BLE001
                            skipped.append({"loss": spec, "n": n, "c": c, "d": d, "dtype": dtype_name(dt),
                                            "reason": f"linear: {type(exc).__name__}: {exc}"})
                            say(f"  skipped: {exc}")
    return rows, skipped
