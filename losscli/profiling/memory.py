"""Peak memory of a piece of work (a loss's forward + backward), on CUDA and on CPU.

CUDA
    ``torch.cuda.reset_peak_memory_stats`` then ``max_memory_allocated`` after the work:
    the absolute peak of bytes held by tensors in the process (inputs included), and the
    delta over what was allocated just before the work started (the inputs).

CPU
    There is no allocator peak counter on CPU, so losscli records every allocation and
    free made by c10's CPU allocator during the work with
    ``torch.profiler.profile(profile_memory=True)`` and takes the maximum of the running
    sum of those events (ordered by timestamp). This really measures allocations: every
    intermediate a kernel or autograd makes, the saved tensors and the gradient, and
    nothing else. Why not peak RSS: RSS includes the Python heap, libraries and pages the
    libc allocator keeps, moves by whole pages and only ever grows within a process, so it
    needs a fresh subprocess per measurement (seconds of torch import each) and is still
    blurred by allocator caching. The profiler's events are exact to the byte and cheap
    enough for every row. ``absolute`` on CPU is the inputs' bytes (counted by the caller)
    plus that delta: the CPU allocator has no global "allocated now" counter to add.
    The measurement runs in its own pass, never inside a timed repeat (the profiler adds
    overhead).
"""

from __future__ import annotations

import contextlib
import gc
import os
import sys
from typing import Any, Callable

import torch

CPU_METHOD = ("torch.profiler(profile_memory=True): max of the running sum of CPU allocator "
              "alloc/free events during forward+backward; absolute = inputs + that delta")
CUDA_METHOD = "torch.cuda.max_memory_allocated after reset_peak_memory_stats; delta over memory_allocated before"

MB = 2.0 ** 20


def method_for(device: torch.device) -> str:
    return CUDA_METHOD if device.type == "cuda" else CPU_METHOD


@contextlib.contextmanager
def quiet_stderr_fd():
    """Silence the C++ profiler's own log lines (kineto writes them straight to fd 2)."""
    if os.environ.get("LOSSCLI_DEBUG", "") not in ("", "0"):
        yield
        return
    try:
        sys.stderr.flush()
        saved = os.dup(2)
    except (OSError, ValueError):  # no real fd 2 (e.g. captured by a test runner)
        yield
        return
    devnull = os.open(os.devnull, os.O_WRONLY)
    try:
        os.dup2(devnull, 2)
        yield
    finally:
        os.dup2(saved, 2)
        os.close(saved)
        os.close(devnull)


def tensor_bytes(*objs: Any) -> int:
    """Bytes of the tensors in ``objs`` (nested dicts/lists allowed; shared storage counted once)."""
    seen: set[int] = set()
    total = 0

    def visit(o: Any) -> None:
        nonlocal total
        if isinstance(o, torch.Tensor):
            st = o.untyped_storage()
            key = st.data_ptr()
            if key not in seen:
                seen.add(key)
                total += st.nbytes()
        elif isinstance(o, dict):
            for v in o.values():
                visit(v)
        elif isinstance(o, (list, tuple)):
            for v in o:
                visit(v)
        elif isinstance(o, torch.nn.Module):
            for t in list(o.parameters()) + list(o.buffers()):
                visit(t)

    for obj in objs:
        visit(obj)
    return total


def cpu_peak_delta_bytes(fn: Callable[[], Any]) -> int:
    """Peak of (bytes allocated - bytes freed) by the CPU allocator while ``fn`` runs."""
    from torch.profiler import ProfilerActivity, profile

    with quiet_stderr_fd():
        with profile(activities=[ProfilerActivity.CPU], profile_memory=True, record_shapes=False) as prof:
            fn()
    events = []
    for ev in prof.profiler.kineto_results.events():
        if ev.name() == "[memory]" and ev.device_type() == torch.autograd.DeviceType.CPU:
            events.append((ev.start_ns(), ev.nbytes()))
    events.sort(key=lambda e: e[0])
    running = peak = 0
    for _, nbytes in events:
        running += nbytes
        peak = max(peak, running)
    return int(peak)


def measure_peak(fn: Callable[[], Any], device: torch.device, base_bytes: int | None = None) -> dict[str, float]:
    """Run ``fn`` once and return ``{"peak_mb", "peak_delta_mb", "memory_method"}``.

    ``base_bytes``: bytes already held by the inputs (CPU: added to the delta to give the
    absolute peak; CUDA: ignored, the allocator knows).
    """
    gc.collect()
    if device.type == "cuda":
        torch.cuda.synchronize(device)
        torch.cuda.reset_peak_memory_stats(device)
        before = torch.cuda.memory_allocated(device)
        fn()
        torch.cuda.synchronize(device)
        peak = torch.cuda.max_memory_allocated(device)
        return {"peak_mb": peak / MB, "peak_delta_mb": (peak - before) / MB, "memory_method": CUDA_METHOD}
    delta = cpu_peak_delta_bytes(fn)
    base = int(base_bytes or 0)
    return {"peak_mb": (base + delta) / MB, "peak_delta_mb": delta / MB, "memory_method": CPU_METHOD}
