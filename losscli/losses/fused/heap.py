"""Keep freed ``[N, C]`` buffers in the process instead of handing them back to the kernel.

Why: torch's CPU tensors come from glibc ``malloc``. With glibc's default (dynamic) settings a
freed buffer of a few MB to 32 MB is returned to the kernel whenever the free space at the top
of the heap exceeds ``M_TRIM_THRESHOLD`` (twice the largest ``mmap``-ed block freed so far, i.e.
about two ``[N, C]`` buffers), and larger blocks are ``mmap``-ed and ``munmap``-ed on every
allocation. The next allocation then page-faults the whole buffer back in, and the kernel zeroes
every page: at N=4096, C=1000 (16 MB) that is ~4,000 faults, 10-30 ms on a VM, where the
``exp``/``log1p`` pass that wrote into it costs 5-10 ms. A loss that frees two or three such
buffers at once (forward and backward of any non-trivial loss) paid this on every step, or not,
depending on where earlier allocations happened to sit on the heap. That is the "log1p / expm1 /
softplus / logsigmoid 10-20x slower until a fractional pow has run" effect noted in
benchmarks/RESULTS.md: the same kernels, slowed by page faults (``ru_minflt`` per call: ~7,600
vs ~0), and order-dependent because the heap layout is (``benchmarks/bench_malloc.py``).

What: one ``mallopt`` call at import (Linux/glibc only) fixes the mmap threshold at glibc's
maximum (32 MB: buffers up to that size come from the heap and are reused) and raises the trim
threshold to 512 MB (freed heap memory is kept for the next step instead of being re-faulted).
The process keeps its peak heap size instead of shrinking after each step (what PyTorch's CUDA
caching allocator does for GPU memory). Set ``LOSSCLI_MALLOC_TUNING=0`` to leave malloc alone;
explicit ``MALLOC_*_THRESHOLD_`` environment variables or glibc tunables are respected.
"""

from __future__ import annotations

import ctypes
import os
import sys

_M_TRIM_THRESHOLD = -1  # <malloc.h>
_M_MMAP_THRESHOLD = -3
MMAP_THRESHOLD = 32 << 20  # glibc's upper limit for M_MMAP_THRESHOLD on 64-bit (HEAP_MAX_SIZE / 2)
TRIM_THRESHOLD = 512 << 20

_state: dict[str, object] = {"applied": None}


def _user_configured() -> bool:
    env = os.environ
    if any(k in env for k in ("MALLOC_TRIM_THRESHOLD_", "MALLOC_MMAP_THRESHOLD_", "MALLOC_TOP_PAD_")):
        return True
    tunables = env.get("GLIBC_TUNABLES", "")
    return "malloc.trim_threshold" in tunables or "malloc.mmap_threshold" in tunables


def keep_freed_buffers() -> bool:
    """Apply the malloc settings above once per process; True when they are in effect."""
    if _state["applied"] is not None:
        return bool(_state["applied"])
    applied = False
    if (os.environ.get("LOSSCLI_MALLOC_TUNING", "1") != "0" and sys.platform.startswith("linux")
            and not _user_configured()):
        try:
            libc = ctypes.CDLL(None)
            libc.gnu_get_libc_version  # noqa: B018 - glibc only (musl's mallopt is a no-op)
            mallopt = libc.mallopt
        except (OSError, AttributeError):
            mallopt = None
        if mallopt is not None:
            mallopt.argtypes = [ctypes.c_int, ctypes.c_int]
            mallopt.restype = ctypes.c_int
            # mallopt returns 1 on success; setting either threshold turns off glibc's dynamic adjustment
            applied = bool(mallopt(_M_MMAP_THRESHOLD, MMAP_THRESHOLD)) and bool(mallopt(_M_TRIM_THRESHOLD, TRIM_THRESHOLD))
    _state["applied"] = applied
    return applied
