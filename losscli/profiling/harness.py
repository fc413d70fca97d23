"""Timing + memory harness: what a loss costs per (N, C, dtype, compile) configuration.

Method (see also ``memory.py``):

- every configuration gets fresh inputs (logits as a leaf requiring grad, targets and
  any context the loss needs) and, with ``compile=True``, a fresh ``torch.compile`` of the
  loss (``dynamic=False``, dynamo reset first) whose first forward+backward is timed
  separately as ``compile_s``;
- one pass = ``logits.grad = None``; forward; backward. Forward, backward and total are
  timed with CUDA events on GPU, ``time.perf_counter`` around synchronous CPU work on CPU
  (``threads = torch.get_num_threads()`` recorded: the CLI and the benchmark use 1 unless told);
- ``ce`` is measured at every shape as the baseline, and every other loss is timed *paired*
  with it (``paired.measure_paired``: both warmed up, then ce, loss, ce, loss, ... passes):
  ``overhead_vs_ce`` is the median of the per-pass ratios, with ``overhead_p20``/``_p80``,
  ``ratio_spread`` and ``ratio_trusted`` (False when the machine was too noisy to trust it);
- reported times: median and p20/p80 over ``repeats``;
- peak memory in a separate, untimed pass (``memory.measure_peak``); ``memory_vs_ce`` is the
  peak over ce's at the same shape;
- on GPU, ``bandwidth_gbs`` is the memory-bound lower bound on traffic (read the logits
  once, write their gradient once: ``2 * N * C * itemsize`` bytes) over the median total
  time, and ``bandwidth_frac`` its fraction of the device's peak DRAM bandwidth.
"""

from __future__ import annotations

import gc
import os
import time
from typing import Any, Callable, Iterable

import torch

from losscli.errors import UsageError
from losscli.profiling import memory as mem
from losscli.profiling.cases import ProfileCase, SkipLoss, make_case, resolve_loss_names
from losscli.profiling.paired import Timed, measure_paired, spread_warning
from losscli.profiling.timing import sync as _sync, time_callable
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


def min_bytes(n: int, c: int, dtype: torch.dtype) -> int:
    """A lower bound on any loss's memory at ``[n, c]``: the logits, their gradient and one saved
    ``[n, c]`` buffer (cross-entropy's own minimum)."""
    return 3 * n * c * dtype.itemsize


def device_memory_bytes(device: torch.device) -> int | None:
    """Total memory of ``device`` (for the CPU: physical RAM, or a container's lower limit), None where unknown."""
    if device.type == "cuda":
        return int(torch.cuda.get_device_properties(device).total_memory)
    if device.type == "cpu":
        from losscli.device import memory_bytes

        return memory_bytes()
    return None


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


class Prepared:
    """A case's inputs and the callable to time (compiled when asked; ``compile_s`` = first pass)."""

    def __init__(self, case: ProfileCase, compiled: bool):
        self.case = case
        self.logits, self.target, self.ctx = case.make_inputs()
        self.fn: Callable = case.loss
        self.compile_s = None
        if compiled:
            try:
                self.fn = compile_loss(case.loss)
                t0 = time.perf_counter()
                self.pass_once()
                _sync(case.device)
                self.compile_s = time.perf_counter() - t0
            except Exception as exc:  # noqa: BLE001
                if _is_oom(exc):
                    raise
                first = str(exc).splitlines()[0] if str(exc) else ""
                raise SkipLoss(f"torch.compile failed: {type(exc).__name__}: {first}") from None

    def clear(self) -> None:
        self.logits.grad = None

    def forward(self) -> torch.Tensor:
        return self.fn(self.logits, self.target, **self.ctx)

    def pass_once(self) -> None:
        self.clear()
        self.forward().backward()

    def timed(self) -> Timed:
        return Timed(self.forward, self.clear)


def measure_case(case: ProfileCase, *, repeats: int, warmup: int, compiled: bool, measure_memory: bool = True,
                 trace_dir: str | None = None, baseline: Timed | None = None,
                 prepared: Prepared | None = None) -> dict[str, Any]:
    """Time (and measure) one built case; returns one report row.

    With a ``baseline``, the case is timed paired against it (``paired.measure_paired``) and the
    row has the ratio fields; without, it is timed alone and ``overhead_vs_ce`` is None.
    """
    device = case.device
    prep = prepared or Prepared(case, compiled)
    row: dict[str, Any] = {
        "loss": case.spec, "n": case.n, "c": case.c, "dtype": dtype_name(case.dtype), "device": device.type,
        "compiled": bool(compiled),
    }
    if baseline is not None:
        timing = measure_paired(baseline, prep.timed(), device, repeats, warmup)
        row.update({k: timing[k] for k in ("forward_ms", "backward_ms", "total_ms", "total_ms_p20", "total_ms_p80")})
        row.update({"ce_ms": timing["baseline_ms"], "overhead_vs_ce": timing["ratio"],
                    "overhead_p20": timing["ratio_p20"], "overhead_p80": timing["ratio_p80"],
                    "overhead_min": timing["ratio_min"], "ratio_spread": timing["ratio_spread"],
                    "ratio_trusted": timing["trusted"], "passes": timing["passes"]})
    else:
        row.update(time_callable(prep.forward, prep.clear, device, repeats, warmup))
        row["overhead_vs_ce"] = None
    row["compile_s"] = prep.compile_s
    if measure_memory:
        base = mem.tensor_bytes(prep.logits, prep.target, prep.ctx, case.loss)
        prep.clear()
        m = mem.measure_peak(prep.pass_once, device, base_bytes=base)
        row["peak_mb"] = m["peak_mb"]
        row["peak_delta_mb"] = m["peak_delta_mb"]
    else:
        row["peak_mb"] = row["peak_delta_mb"] = None
    row["threads"] = torch.get_num_threads()
    min_bytes = 2 * prep.logits.numel() * prep.logits.element_size()
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
        row["top_kernels"] = trace_case(prep.fn, prep.logits, prep.target, prep.ctx, device, path)
    prep.clear()
    return row


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
    from losscli.config.schema import check_seed

    check_seed(seed, "--seed")  # inputs are drawn with 1000 * seed + ...: 2**70 failed every configuration
    capacity = device_memory_bytes(dev)
    if capacity and all(min_bytes(n, c, dt) > capacity for n in batches for c in classes for dt in dts):
        n, c, dt = min(((n, c, dt) for n in batches for c in classes for dt in dts), key=lambda k: min_bytes(*k))
        raise UsageError(f"every configuration needs more memory than {dev.type} has: the smallest, N={n} x C={c} "
                         f"{dtype_name(dt)}, needs at least {min_bytes(n, c, dt) / 2**30:.3g} GiB of "
                         f"{capacity / 2**30:.3g} GiB; lower --batch or --classes")
    requested = resolve_loss_names(list(losses) if losses is not None else None)
    specs = [r[0] for r in requested]
    # the baseline first, so every other loss at the same configuration can be compared to it
    plan = [(BASELINE, BASELINE, {})] + [r for r in requested if r[0] != BASELINE]
    say = progress or (lambda msg: None)

    rows: list[dict] = []
    skipped: list[dict] = []
    total = len(plan) * len(batches) * len(classes) * len(dts)
    k = 0
    for dt in dts:
        for n in batches:
            for c in classes:
                base: Prepared | None = None
                base_row: dict | None = None
                for spec, name, params in plan:
                    k += 1
                    say(f"[{k}/{total}] {spec} n={n} c={c} {dtype_name(dt)}{' compiled' if compile else ''}")
                    try:
                        if capacity and min_bytes(n, c, dt) > capacity:
                            raise SkipLoss(f"needs at least {min_bytes(n, c, dt) / 2**30:.3g} GiB; {dev.type} has "
                                           f"{capacity / 2**30:.3g} GiB")
                        case = make_case(spec, name, params, n, c, dt, dev, seed=seed)
                        if spec == BASELINE:
                            base = Prepared(case, compile)  # kept: every other loss is timed paired with it
                            row = measure_case(case, repeats=repeats, warmup=warmup, compiled=compile,
                                               measure_memory=memory, trace_dir=trace_dir, prepared=base)
                            base_row = row
                        elif base is None:
                            raise SkipLoss("the ce baseline failed at this configuration, so no ratio can be measured")
                        else:
                            row = measure_case(case, repeats=repeats, warmup=warmup, compiled=compile,
                                               measure_memory=memory, trace_dir=trace_dir, baseline=base.timed())
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
                        row.update({"overhead_vs_ce": 1.0, "ce_ms": row["total_ms"], "ratio_trusted": True})
                    ce_peak = base_row.get("peak_mb") if base_row else None
                    row["memory_vs_ce"] = row["peak_mb"] / ce_peak if (ce_peak and row.get("peak_mb")) else None
                    row["baseline"] = spec == BASELINE and BASELINE not in specs
                    if row.get("top_kernels"):
                        say(f"  top kernels ({row['trace']}):")
                        for kr in row["top_kernels"]:
                            say(f"    {kr['self_ms']:10.3f} ms  x{kr['calls']:<4d} {kr['name']}")
                    rows.append(row)
                    _free(dev)
                base = None
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
        "warnings": [w for w in [spread_warning([r for r in rows if r["loss"] != BASELINE])] if w],
    }
