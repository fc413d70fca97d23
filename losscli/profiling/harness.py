"""Timing + memory harness: what a loss costs per (N, C, dtype, compile) configuration.

Method (see also ``memory.py``):

- every configuration gets fresh inputs (logits as a leaf requiring grad, targets and
  any context the loss needs) and, with ``compile=True``, a fresh ``torch.compile`` of the
  loss (``dynamic=False``, dynamo reset first) whose first forward+backward is timed
  separately as ``compile_s``; every shape is then warmed up ``warmup`` times;
- one repeat = ``logits.grad = None``; forward; backward. Forward, backward and total are
  timed with CUDA events (read after one ``synchronize``) on GPU, ``time.perf_counter``
  around synchronous CPU work on CPU (``threads = torch.get_num_threads()`` recorded);
- reported: median and p20/p80 over ``repeats``;
- peak memory in a separate, untimed pass (``memory.measure_peak``);
- ``ce`` is always measured at every shape, in the same run, and ``overhead_vs_ce`` is
  ``total_ms / ce total_ms`` at the same (N, C, dtype, compiled);
- on GPU, ``bandwidth_gbs`` is the memory-bound lower bound on traffic (read the logits
  once, write their gradient once: ``2 * N * C * itemsize`` bytes) over the median total
  time, and ``bandwidth_frac`` its fraction of the device's peak DRAM bandwidth.
"""

from __future__ import annotations

import gc
import math
import os
import time
from typing import Any, Callable, Iterable, Sequence

import torch

from losscli.errors import UsageError
from losscli.profiling import memory as mem
from losscli.profiling.cases import ProfileCase, SkipLoss, make_case, resolve_loss_names
from losscli.environment import environment, peak_bandwidth_gbs

SCHEMA = "losscli/profile/v1"
BASELINE = "ce"

_DTYPES = {
    "float32": torch.float32, "fp32": torch.float32, "float": torch.float32,
    "bfloat16": torch.bfloat16, "bf16": torch.bfloat16,
    "float16": torch.float16, "fp16": torch.float16, "half": torch.float16,
    "float64": torch.float64, "fp64": torch.float64, "double": torch.float64,
}


def parse_dtype(name: str) -> torch.dtype:
    key = str(name).strip().lower().replace("torch.", "")
    if key not in _DTYPES:
        raise UsageError(f"unknown dtype {name!r}; use float32, bfloat16, float16 or float64")
    return _DTYPES[key]


def dtype_name(dtype: torch.dtype) -> str:
    return str(dtype).replace("torch.", "")


def percentile(values: Sequence[float], q: float) -> float:
    """Linear-interpolated percentile (q in [0, 100]) of a non-empty sequence."""
    xs = sorted(values)
    if not xs:
        return float("nan")
    pos = (len(xs) - 1) * q / 100.0
    lo, hi = math.floor(pos), math.ceil(pos)
    return xs[lo] + (xs[hi] - xs[lo]) * (pos - lo)


def summarise(values: Sequence[float]) -> dict[str, float]:
    return {"median": percentile(values, 50), "p20": percentile(values, 20), "p80": percentile(values, 80)}


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def time_callable(forward: Callable[[], torch.Tensor], clear: Callable[[], None], device: torch.device,
                  repeats: int, warmup: int) -> dict[str, Any]:
    """Median/p20/p80 of forward, backward and total ms of ``forward().backward()``.

    ``clear()`` runs before every pass (set the inputs' ``.grad`` to None), outside the timed region.
    """
    for _ in range(warmup):
        clear()
        forward().backward()
    _sync(device)
    fwd, bwd, tot = [], [], []
    if device.type == "cuda":
        events = []
        for _ in range(repeats):
            e0, e1, e2 = (torch.cuda.Event(enable_timing=True) for _ in range(3))
            clear()
            e0.record()
            out = forward()
            e1.record()
            out.backward()
            e2.record()
            events.append((e0, e1, e2))
            del out
        torch.cuda.synchronize(device)
        for e0, e1, e2 in events:
            fwd.append(e0.elapsed_time(e1))
            bwd.append(e1.elapsed_time(e2))
            tot.append(e0.elapsed_time(e2))
    else:
        clock = time.perf_counter
        for _ in range(repeats):
            clear()
            t0 = clock()
            out = forward()
            t1 = clock()
            out.backward()
            t2 = clock()
            del out
            fwd.append((t1 - t0) * 1e3)
            bwd.append((t2 - t1) * 1e3)
            tot.append((t2 - t0) * 1e3)
    clear()
    f, b, t = summarise(fwd), summarise(bwd), summarise(tot)
    return {
        "forward_ms": f["median"], "backward_ms": b["median"], "total_ms": t["median"],
        "forward_ms_p20": f["p20"], "forward_ms_p80": f["p80"],
        "backward_ms_p20": b["p20"], "backward_ms_p80": b["p80"],
        "total_ms_p20": t["p20"], "total_ms_p80": t["p80"],
    }


def time_fwd_bwd(fn: Callable, logits: torch.Tensor, target: torch.Tensor, ctx: dict, device: torch.device,
                 repeats: int, warmup: int) -> dict[str, Any]:
    """``time_callable`` for ``fn(logits, target, **ctx)`` with ``logits.grad`` cleared between repeats."""

    def clear():
        logits.grad = None

    return time_callable(lambda: fn(logits, target, **ctx), clear, device, repeats, warmup)


def compile_loss(loss: torch.nn.Module) -> Callable:
    import torch._dynamo

    torch._dynamo.reset()
    return torch.compile(loss, dynamic=False)


def top_kernels(prof, device: torch.device, limit: int = 10) -> list[dict[str, Any]]:
    """The ops/kernels with the most self time in a finished ``torch.profiler`` run."""
    rows = []
    for avg in prof.key_averages():
        if device.type == "cuda":
            self_us = getattr(avg, "self_device_time_total", None)
            if self_us is None:
                self_us = getattr(avg, "self_cuda_time_total", 0.0)
        else:
            self_us = avg.self_cpu_time_total
        if self_us and self_us > 0 and avg.key != "[memory]":
            rows.append({"name": avg.key, "calls": int(avg.count), "self_ms": self_us / 1e3})
    rows.sort(key=lambda r: -r["self_ms"])
    return rows[:limit]


def trace_case(fn: Callable, logits, target, ctx, device: torch.device, path: str, steps: int = 3) -> list[dict]:
    """Write a chrome trace of ``steps`` forward+backward passes to ``path``; return the top kernels."""
    from torch.profiler import ProfilerActivity, profile

    acts = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if device.type == "cuda" else [])
    with mem.quiet_stderr_fd():
        with profile(activities=acts, record_shapes=True) as prof:
            for _ in range(steps):
                logits.grad = None
                fn(logits, target, **ctx).backward()
            _sync(device)
    os.makedirs(os.path.dirname(path) or ".", exist_ok=True)
    prof.export_chrome_trace(path)
    return top_kernels(prof, device)


def _is_oom(exc: BaseException) -> bool:
    if isinstance(exc, MemoryError):
        return True
    oom = getattr(torch.cuda, "OutOfMemoryError", None)
    if oom is not None and isinstance(exc, oom):
        return True
    text = str(exc).lower()
    return "out of memory" in text or "can't allocate memory" in text or "not enough memory" in text


def _free(device: torch.device) -> None:
    gc.collect()
    if device.type == "cuda":
        torch.cuda.empty_cache()


def measure_case(case: ProfileCase, *, repeats: int, warmup: int, compiled: bool, measure_memory: bool = True,
                 trace_dir: str | None = None) -> dict[str, Any]:
    """Time (and measure) one built case; returns one report row (without ``overhead_vs_ce``)."""
    device = case.device
    logits, target, ctx = case.make_inputs()
    fn: Callable = case.loss
    row: dict[str, Any] = {
        "loss": case.spec, "n": case.n, "c": case.c, "dtype": dtype_name(case.dtype), "device": device.type,
        "compiled": bool(compiled),
    }
    compile_s = None
    if compiled:
        try:
            fn = compile_loss(case.loss)
            t0 = time.perf_counter()
            logits.grad = None
            fn(logits, target, **ctx).backward()
            _sync(device)
            compile_s = time.perf_counter() - t0
        except Exception as exc:  # noqa: BLE001
            if _is_oom(exc):
                raise
            raise SkipLoss(f"torch.compile failed: {type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}") from None
    timing = time_fwd_bwd(fn, logits, target, ctx, device, repeats, warmup)
    row.update(timing)
    row["compile_s"] = compile_s
    if measure_memory:
        base = mem.tensor_bytes(logits, target, ctx, case.loss)

        def once():
            logits.grad = None
            fn(logits, target, **ctx).backward()

        logits.grad = None
        m = mem.measure_peak(once, device, base_bytes=base)
        row["peak_mb"] = m["peak_mb"]
        row["peak_delta_mb"] = m["peak_delta_mb"]
    else:
        row["peak_mb"] = row["peak_delta_mb"] = None
    row["overhead_vs_ce"] = None
    row["threads"] = torch.get_num_threads()
    min_bytes = 2 * logits.numel() * logits.element_size()
    row["min_bytes_mb"] = min_bytes / mem.MB
    if device.type == "cuda" and row["total_ms"] > 0:
        gbs = min_bytes / (row["total_ms"] / 1e3) / 1e9
        peak = peak_bandwidth_gbs(device)
        row["bandwidth_gbs"] = gbs
        row["bandwidth_frac"] = gbs / peak if peak else None
    else:
        row["bandwidth_gbs"] = None
        row["bandwidth_frac"] = None
    if trace_dir:
        safe = case.spec.replace("(", "_").replace(")", "").replace(",", "_").replace("=", "").replace(" ", "")
        path = os.path.join(trace_dir, f"{safe}_n{case.n}_c{case.c}_{row['dtype']}{'_compiled' if compiled else ''}.json")
        row["trace"] = path
        row["top_kernels"] = trace_case(fn, logits, target, ctx, device, path)
    logits.grad = None
    return row


def _process_warmup(device: torch.device, n: int, c: int, dtype: torch.dtype, seed: int) -> None:
    """Untimed passes before anything is measured: thread pools, kernels and caches start
    lazily, and the first configuration of a run must not pay for that.

    The fractional ``pow`` matters on some CPU builds: until a vectorised ``pow`` has run in
    the process, ``log1p``/``expm1``/``softplus``/``logsigmoid`` over large tensors were
    measured 10-20x slower (same kernel; cause unknown). Running one first puts every loss in
    the same state, so ratios do not depend on which losses ran earlier."""
    torch.rand(64).pow(0.7)
    try:
        case = make_case(BASELINE, BASELINE, {}, n, c, dtype, device, seed=seed, check=False)
        logits, target, ctx = case.make_inputs()
        for _ in range(5):
            logits.grad = None
            case.loss(logits, target, **ctx).backward()
        _sync(device)
    except Exception:  # noqa: BLE001 - the real pass reports any problem
        pass


def _as_list(x: Any) -> list:
    if x is None:
        return []
    if isinstance(x, (list, tuple)):
        return list(x)
    return [x]


def profile_losses(
    losses: Iterable[str] | None = None,
    *,
    batches: Iterable[int] = (4096,),
    classes: Iterable[int] = (1000,),
    dtypes: Iterable[str] = ("float32",),
    device: str | torch.device = "auto",
    compile: bool = False,
    repeats: int = 20,
    warmup: int = 3,
    memory: bool = True,
    trace_dir: str | None = None,
    seed: int = 0,
    progress: Callable[[str], None] | None = None,
) -> dict[str, Any]:
    """Profile losses over every (dtype, N, C); returns a ``losscli/profile/v1`` report dict.

    ``losses``: loss names or specs (``"focal(gamma=3)"``); None = every registered loss.
    ``ce`` is always measured at every configuration as the baseline.
    """
    from losscli.device import resolve_device

    dev = device if isinstance(device, torch.device) else resolve_device(str(device))
    batches, classes = [int(b) for b in _as_list(batches)], [int(c) for c in _as_list(classes)]
    dts = [parse_dtype(d) if not isinstance(d, torch.dtype) else d for d in _as_list(dtypes)]
    if not batches or not classes or not dts:
        raise UsageError("need at least one batch size, one class count and one dtype")
    if any(b < 1 for b in batches) or any(c < 2 for c in classes):
        raise UsageError("batch sizes must be >= 1 and class counts >= 2")
    if repeats < 1 or warmup < 0:
        raise UsageError("repeats must be >= 1 and warmup >= 0")
    requested = resolve_loss_names(list(losses) if losses is not None else None)
    specs = [r[0] for r in requested]
    # the baseline first, so every other loss at the same configuration can be compared to it
    plan = [(BASELINE, BASELINE, {})] + [r for r in requested if r[0] != BASELINE]
    say = progress or (lambda msg: None)

    _process_warmup(dev, batches[0], classes[0], dts[0], seed)
    rows: list[dict] = []
    skipped: list[dict] = []
    total = len(plan) * len(batches) * len(classes) * len(dts)
    k = 0
    for dt in dts:
        for n in batches:
            for c in classes:
                baseline_ms = None
                for spec, name, params in plan:
                    k += 1
                    say(f"[{k}/{total}] {spec} n={n} c={c} {dtype_name(dt)}{' compiled' if compile else ''}")
                    try:
                        case = make_case(spec, name, params, n, c, dt, dev, seed=seed)
                        row = measure_case(case, repeats=repeats, warmup=warmup, compiled=compile,
                                           measure_memory=memory, trace_dir=trace_dir)
                    except SkipLoss as exc:
                        skipped.append({"loss": spec, "n": n, "c": c, "dtype": dtype_name(dt), "reason": str(exc)})
                        say(f"  skipped: {exc}")
                        continue
                    except UsageError:
                        raise
                    except Exception as exc:  # noqa: BLE001
                        reason = "out of memory" if _is_oom(exc) else f"{type(exc).__name__}: {exc}"
                        skipped.append({"loss": spec, "n": n, "c": c, "dtype": dtype_name(dt), "reason": reason})
                        say(f"  skipped: {reason}")
                        _free(dev)
                        continue
                    finally:
                        case = None  # noqa: F841 - release the inputs before the next configuration
                    if spec == BASELINE:
                        baseline_ms = row["total_ms"]
                    row["overhead_vs_ce"] = (row["total_ms"] / baseline_ms) if baseline_ms else None
                    row["baseline"] = spec == BASELINE and BASELINE not in specs
                    if row.get("top_kernels"):
                        say(f"  top kernels ({row['trace']}):")
                        for kr in row["top_kernels"]:
                            say(f"    {kr['self_ms']:10.3f} ms  x{kr['calls']:<4d} {kr['name']}")
                    rows.append(row)
                    _free(dev)
    env = environment(dev)
    env.update({"compiled": bool(compile), "memory_method": mem.method_for(dev),
                "timer": "cuda events" if dev.type == "cuda" else "time.perf_counter"})
    return {
        "schema": SCHEMA,
        "config": {
            "losses": specs, "batch": batches, "classes": classes, "dtype": [dtype_name(d) for d in dts],
            "device": dev.type, "compile": bool(compile), "repeats": repeats, "warmup": warmup,
            "baseline": BASELINE, "seed": seed, "trace_dir": trace_dir,
        },
        "env": env,
        "rows": rows,
        "skipped": skipped,
    }
