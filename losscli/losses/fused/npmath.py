"""In-place ``log1p`` and ``expm1`` through NumPy's SIMD kernels where they are faster than torch's.

On x86 CPUs torch's float ``log1p`` and ``expm1`` are several times slower than its ``exp`` and
``log`` (one [4096, 1000] float32 pass, one thread, AVX-512 Xeon: ``log1p`` 7.5 ms, ``expm1`` 5.8 ms,
``exp`` 1.6 ms), while NumPy's vectorised ones run at about ``exp``'s speed (3.1 ms and 1.6 ms),
equally accurate (within an ulp of each other). dhkd's log cosh calls ``log1p_`` on a CPU
(``benchmarks/bench_npmath.py`` measures both; the sigmoid-family kernels now take torch's
one-pass ``softplus`` instead).

NumPy works on the tensor's own memory (``Tensor.numpy()`` shares it), so this is only done where
that is safe and pays: a plain, contiguous CPU float32/float64 tensor that autograd does not track, outside
``torch.compile`` tracing and ``torch.func`` transforms (their tensors are wrappers), with at most
``NUMPY_MAX_THREADS`` torch threads (NumPy's kernels are single-threaded: with more threads torch's
parallel loop wins). Everything else takes torch's own op, with the same result to rounding.
"""

from __future__ import annotations

import numpy as np
import torch

from losscli.losses.fused.transforms import transforms_active

#: torch thread counts up to which one NumPy thread beats torch's parallel log1p/expm1 (measured:
#: 2.5x faster on one thread, still faster than torch on two)
NUMPY_MAX_THREADS = 2
_NUMPY_DTYPES = (torch.float32, torch.float64)


def _numpy_view(x: torch.Tensor) -> np.ndarray | None:
    """``x``'s memory as an array when NumPy may work on it in place, else None."""
    if (type(x) is not torch.Tensor or x.device.type != "cpu" or x.dtype not in _NUMPY_DTYPES
            or x.requires_grad or not x.is_contiguous() or x.is_conj() or x.is_neg()):
        return None
    if torch.get_num_threads() > NUMPY_MAX_THREADS or torch.compiler.is_compiling() or transforms_active():
        return None
    return x.numpy()


def _in_place(torch_op: str, numpy_op: str):
    def op(x: torch.Tensor) -> torch.Tensor:
        a = _numpy_view(x)
        if a is None:
            return getattr(x, torch_op)()
        getattr(np, numpy_op)(a, out=a)
        return x

    op.__name__ = op.__qualname__ = torch_op
    op.__doc__ = f"``x.{torch_op}()``, through NumPy where it is faster (see the module docstring)."
    return op


log1p_ = _in_place("log1p_", "log1p")
expm1_ = _in_place("expm1_", "expm1")
