"""Materialised vs row-chunked vs vocabulary-streamed final linear layer + loss: time and peak memory.

Materialised: ``logits = hidden @ W.T`` then the registry loss (full ``[N, C]`` logits and
gradient). Row-chunked: ``linear_loss(..., stream=False)``. Streamed: ``linear_loss`` over
vocabulary blocks (only for the losses that stream; ``stream_terms.streaming_support``).
All run forward + backward with gradients for ``hidden`` and ``W``, timed interleaved pass by
pass (materialised, chunked, streamed, materialised, ...) so background load hits every method
alike; times are medians with p20/p80 and ratios are against the materialised path of the same run.

Memory is measured as in ``memory.py`` with the inputs (hidden, W, target) as the base; ``extra``
is the peak beyond the inputs and their gradients (hidden, W, grad_hidden, grad_W: what every
method must hold), the memory a method actually adds.
"""

from __future__ import annotations

import gc
from typing import Any, Callable

import torch

from losscli.profiling import memory as mem
from losscli.profiling.harness import _free, _is_oom, dtype_name
from losscli.profiling.timing import summarise, time_callable

METHODS = ("materialised", "chunked", "streamed", "torch")
#: method -> the prefix of its ratio keys (materialised is the reference)
RATIO_TAGS = {"chunked": "", "streamed": "stream_", "torch": "torch_"}


def _torch_native(loss: str, params: dict):
    """``torch.nn.functional.linear_cross_entropy`` on its chunked path (torch >= 2.13), the field's
    own fused linear + CE, for plain ``ce`` (its chunked path refuses label smoothing and falls back
    to materialising); None for other losses or an older torch."""
    import torch.nn.functional as F

    from losscli.losses import resolve_loss

    options = getattr(torch.nn, "LinearCrossEntropyOptions", None)
    if options is None or not hasattr(F, "linear_cross_entropy"):
        return None
    spec = resolve_loss(loss, params)
    if spec.name != "ce" or spec.options:
        return None

    def run(hidden, weight, target):
        return F.linear_cross_entropy(hidden, weight, target, options=options())

    return run


def compare_linear(loss: str = "ce", *, n: int, c: int, d: int, dtype: torch.dtype = torch.float32,
                   device: torch.device = torch.device("cpu"), repeats: int = 5, warmup: int = 1,
                   chunk_size: int | None = None, memory: bool = True, check_grads: bool = True,
                   seed: int = 0, params: dict | None = None, vocab_block: int | None = None) -> dict[str, Any]:
    """One row: each method's time (ms), peak and extra memory (MB), and their ratios to materialised."""
    row = _compare(loss, n=n, c=c, d=d, dtype=dtype, device=device, repeats=repeats, warmup=warmup,
                   chunk_size=chunk_size, memory=memory, check_grads=check_grads, seed=seed, params=params,
                   vocab_block=vocab_block)
    gc.collect()  # the inputs and gradients died with _compare's frame: hand their memory back
    _free(device)
    return row


def _compare(loss, *, n, c, d, dtype, device, repeats, warmup, chunk_size, memory, check_grads, seed, params,
             vocab_block) -> dict[str, Any]:
    from losscli.losses.linear import default_chunk_size, linear_loss, materialised_linear_loss, streams

    params = dict(params or {})
    g = torch.Generator(device=device).manual_seed(seed + 5)
    hidden = torch.randn(n, d, generator=g, device=device, dtype=torch.float32).to(dtype).requires_grad_(True)
    weight = (torch.randn(c, d, generator=g, device=device, dtype=torch.float32) / d ** 0.5).to(dtype).requires_grad_(True)
    target = torch.randint(0, c, (n,), generator=g, device=device)
    cs = chunk_size or default_chunk_size(n, c)
    base = mem.tensor_bytes(hidden, weight, target)
    grad_bytes = base - mem.tensor_bytes(target)  # grad_hidden and grad_W are as large as hidden and W

    def clear():
        hidden.grad = None
        weight.grad = None

    variants: dict[str, Callable[[], torch.Tensor]] = {
        "materialised": lambda: materialised_linear_loss(hidden, weight, target, loss, **params),
        "chunked": lambda: linear_loss(hidden, weight, target, loss, chunk_size=cs, stream=False, **params),
    }
    streamed = streams(loss, **params)
    if streamed:
        variants["streamed"] = lambda: linear_loss(hidden, weight, target, loss, chunk_size=chunk_size,
                                                   vocab_block=vocab_block, stream=True, **params)
    native = _torch_native(loss, params)
    if native is not None:
        variants["torch"] = lambda: native(hidden, weight, target)
    row: dict[str, Any] = {"loss": loss, "n": n, "c": c, "d": d, "dtype": dtype_name(dtype), "device": device.type,
                           "chunk_size": cs, "streams": streamed, "threads": torch.get_num_threads()}
    times: dict[str, list[float]] = {k: [] for k in variants}
    grads = {}
    for name, fwd in list(variants.items()):  # warm-up, memory and gradients, one method at a time
        try:
            for _ in range(warmup):
                clear()
                fwd().backward()
            if memory:
                clear()
                m = mem.measure_peak(lambda: fwd().backward(), device, base_bytes=base)
                row[f"{name}_peak_mb"] = m["peak_mb"]
                row[f"{name}_peak_delta_mb"] = m["peak_delta_mb"]
                row[f"{name}_extra_mb"] = max(0.0, m["peak_delta_mb"] - grad_bytes / mem.MB)
            if check_grads:
                clear()
                fwd().backward()
                grads[name] = (hidden.grad.detach().clone(), weight.grad.detach().clone())
            clear()
        except Exception as exc:  # noqa: BLE001
            if not _is_oom(exc):
                raise
            row[f"{name}_error"] = "out of memory"
            del variants[name]
            clear()
            _free(device)
    for _ in range(repeats):  # interleaved timed passes
        for name, fwd in variants.items():
            times[name].append(time_callable(fwd, clear, device, 1, 0)["total_ms"])
    for name in METHODS:
        t = summarise(times[name]) if times.get(name) else None
        row[f"{name}_ms"] = t["median"] if t else None
        row[f"{name}_ms_p20"] = t["p20"] if t else None
        row[f"{name}_ms_p80"] = t["p80"] if t else None
    ref_ms = row["materialised_ms"]
    for name, tag in RATIO_TAGS.items():
        ms = row.get(f"{name}_ms")
        row[f"{tag}time_ratio"] = ms / ref_ms if (ms and ref_ms) else None
        ok = memory and row.get("materialised_peak_mb") and row.get(f"{name}_peak_mb")
        row[f"{tag}memory_ratio"] = row[f"{name}_peak_mb"] / row["materialised_peak_mb"] if ok else None
        row[f"{tag}memory_delta_ratio"] = (row[f"{name}_peak_delta_mb"] / row["materialised_peak_delta_mb"]
                                           if ok and row["materialised_peak_delta_mb"] else None)
        row[f"{tag}extra_ratio"] = (row[f"{name}_extra_mb"] / row["materialised_extra_mb"]
                                    if ok and row["materialised_extra_mb"] else None)
        row[f"{tag}grad_max_rel_err"] = _grad_err(grads, name)
    return row


def linear_min_bytes(n: int, c: int, d: int, dtype: torch.dtype) -> int:
    """A lower bound on one comparison's memory: hidden ``[n, d]`` and W ``[c, d]``, their gradients, and
    the gradients kept from the materialised and chunked paths (every loss runs both)."""
    return 4 * (n + c) * d * dtype.itemsize


def _check_fits(batches, classes, dims, dtypes, device: torch.device) -> None:
    """One line before anything is allocated when no configuration fits the device: ``--linear-dim
    100000000`` was killed by the kernel's out-of-memory killer (exit 137, no message) after minutes."""
    from losscli.errors import UsageError
    from losscli.profiling.harness import device_memory_bytes

    capacity = device_memory_bytes(device)
    configs = [(n, c, d, dt) for n in batches for c in classes for d in dims for dt in dtypes]
    if not capacity or not configs or any(linear_min_bytes(*k) <= capacity for k in configs):
        return
    n, c, d, dt = min(configs, key=lambda k: linear_min_bytes(*k))
    raise UsageError(f"every configuration needs more memory than {device.type} has: the smallest, N={n} x C={c} x "
                     f"D={d} {dtype_name(dt)}, needs at least {linear_min_bytes(n, c, d, dt) / 2**30:.3g} GiB of "
                     f"{capacity / 2**30:.3g} GiB; lower --batch, --classes or --linear-dim")


def _grad_err(grads: dict, name: str) -> float | None:
    """Largest |difference| of a method's gradients from the materialised ones, relative to their max."""
    if "materialised" not in grads or name not in grads:
        return None
    errs = []
    for a, b in zip(grads["materialised"], grads[name]):
        scale = b.abs().max().clamp_min(1e-30)
        errs.append(float(((a.float() - b.float()).abs().max() / scale.float())))
    return max(errs)


def compare_linear_losses(losses: list[str], *, batches, classes, dims, dtypes, device: torch.device,
                          repeats: int, warmup: int, chunk_size: int | None = None, memory: bool = True,
                          seed: int = 0, progress: Callable[[str], None] | None = None) -> tuple[list[dict], list[dict]]:
    """``compare_linear`` for every (loss, dtype, N, C, D); unsupported losses go to ``skipped``."""
    from losscli.config.schema import check_seed
    from losscli.losses import LOSSES
    from losscli.losses.resolve import parse_spec
    from losscli.losses.stream_terms import unsupported_reason

    if chunk_size is not None and chunk_size < 1:  # was caught per loss: every loss "skipped", exit 1
        from losscli.errors import UsageError

        raise UsageError(f"--chunk-size must be >= 1 (rows per chunk), got {chunk_size}")
    check_seed(seed, "--seed")  # 2**70 failed every row: every loss "skipped", exit 1
    _check_fits(batches, classes, dims, dtypes, device)
    say = progress or (lambda msg: None)
    rows, skipped = [], []
    for spec in losses:
        name, params = parse_spec(spec)
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
                                                       chunk_size=chunk_size, memory=memory, seed=seed))
                        except Exception as exc:  # noqa: BLE001
                            skipped.append({"loss": spec, "n": n, "c": c, "d": d, "dtype": dtype_name(dt),
                                            "reason": f"linear: {type(exc).__name__}: {exc}"})
                            say(f"  skipped: {exc}")
    return rows, skipped
