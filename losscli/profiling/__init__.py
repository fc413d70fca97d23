"""What a loss costs: timing + memory harness, scaling sweeps, linear+loss comparison, and the
analytic shape of each loss.

- ``profile_losses(...)`` -> ``losscli/profile/v1`` report (``harness.py``), every loss timed
  paired with ce (``paired.py``; timing primitives in ``timing.py``);
- ``compare_linear(...)`` materialised vs row-chunked vs vocabulary-streamed final layer + loss
  (``linear_bench.py``);
- ``analyse_losses(...)`` -> ``losscli/shape/v1`` property checks (``shape.py``);
- ``plot_scaling`` / ``plot_shapes``: PNGs (matplotlib imported inside the functions).

Submodules import torch; import them lazily from the CLI.
"""

from __future__ import annotations

from typing import Any

__all__ = ["profile_losses", "compare_linear", "analyse_losses", "plot_scaling", "plot_shapes", "SCHEMA", "MAX_REPEATS",
           "check_options"]

SCHEMA = "losscli/profile/v1"
#: timed repeats (and warm-up passes) per configuration: the median settles within tens; 10**12 ran for ever
MAX_REPEATS = 100_000


#: what each ``losscli profile`` option is when not given (the CLI's defaults are None, so "given" is known)
DEFAULTS: dict[str, Any] = {"batch": "4096", "classes": "1000", "dtype": "float32", "device": "auto", "compile": False,
                            "repeats": 20, "warmup": 3, "memory": True, "seed": 0, "shape_classes": 4}
#: per mode, the options it does not read and why: given there, they were silently ignored
NOT_READ: dict[str, dict[str, str]] = {
    "--shape": {
        "batch": "the shape analysis draws its own logits",
        "classes": "the shape analysis uses --shape-classes",
        "dtype": "the shape analysis runs in float64",
        "device": "the shape analysis runs on the CPU",
        "compile": "nothing is compiled or timed",
        "repeats": "nothing is timed",
        "warmup": "nothing is timed",
        "trace": "nothing is timed or traced",
        "memory": "no memory is measured",
        "linear_dim": "the shape analysis is of the loss alone; run --linear-dim separately",
    },
    "--linear-dim": {
        "compile": "the linear layer + loss comparison runs uncompiled",
        "trace": "no profiler trace is taken of the linear layer + loss comparison",
        "plot": "the linear layer + loss comparison has no plot; --format csv or json gives its numbers",
    },
}


def _flag(key: str, value: Any) -> str:
    """How the user wrote option ``key``: ``--no-memory``, ``--dtype float16``."""
    name = "--" + key.replace("_", "-")
    if isinstance(value, bool):
        return name if value else "--no-" + name[2:]
    return f"{name} {value}"


def check_options(*, repeats: int | None = None, warmup: int | None = None, linear_dim: int | None = None,
                  chunk_size: int | None = None, shape: bool = False, shape_classes: int | None = None,
                  batch: str | None = None, classes: str | None = None, dtype: str | None = None,
                  device: str | None = None, compile: bool | None = None, trace: str | None = None,
                  plot: str | None = None, memory: bool | None = None, seed: int | None = None,
                  threads: int | None = None) -> dict[str, Any]:
    """One UsageError for profile options out of range or given where the chosen mode does not read them
    (None: not given); returns every option with the defaults filled in (cheap: no torch)."""
    from losscli.config.schema import check_seed
    from losscli.config.validate import MAX_THREADS
    from losscli.errors import UsageError

    given = {"repeats": repeats, "warmup": warmup, "linear_dim": linear_dim, "chunk_size": chunk_size,
             "shape_classes": shape_classes, "batch": batch, "classes": classes, "dtype": dtype, "device": device,
             "compile": compile, "trace": trace, "plot": plot, "memory": memory, "seed": seed, "threads": threads}
    if chunk_size is not None and linear_dim is None:  # silently ignored: no chunked layer without --linear-dim
        raise UsageError(f"--chunk-size {chunk_size} applies only with --linear-dim (the chunked linear layer + loss "
                         "comparison); add --linear-dim D or drop --chunk-size")
    if shape_classes is not None and not shape:
        raise UsageError(f"--shape-classes {shape_classes} applies only with --shape (the analytic shape of each "
                         "loss); add --shape or drop --shape-classes")
    mode = "--shape" if shape else "--linear-dim" if linear_dim is not None else None
    for key, why in NOT_READ.get(mode, {}).items():
        if given[key] is not None:
            raise UsageError(f"{_flag(key, given[key])} does not apply to {mode} ({why}); drop it")
    opts = {k: DEFAULTS[k] if v is None and k in DEFAULTS else v for k, v in given.items()}
    if not 1 <= opts["repeats"] <= MAX_REPEATS:
        raise UsageError(f"--repeats must be in [1, {MAX_REPEATS}] (timed passes per configuration), got {repeats}")
    if not 0 <= opts["warmup"] <= MAX_REPEATS:
        raise UsageError(f"--warmup must be in [0, {MAX_REPEATS}] (untimed passes per configuration), got {warmup}")
    if linear_dim is not None and linear_dim < 1:
        raise UsageError(f"--linear-dim must be >= 1 (the hidden dimension D), got {linear_dim}")
    if threads is not None and not 1 <= threads <= MAX_THREADS:  # a million threads: a segfault in torch's pool
        raise UsageError(f"--threads must be in [1, {MAX_THREADS}], got {threads}")
    check_seed(opts["seed"], "--seed")
    return opts


def __getattr__(name: str) -> Any:  # lazy: keep ``import losscli.profiling`` cheap
    if name == "profile_losses":
        from losscli.profiling.harness import profile_losses

        return profile_losses
    if name == "compare_linear":
        from losscli.profiling.linear_bench import compare_linear

        return compare_linear
    if name in ("analyse_losses", "plot_shapes"):
        from losscli.profiling import shape

        return getattr(shape, name)
    if name == "plot_scaling":
        from losscli.profiling.plot import plot_scaling

        return plot_scaling
    raise AttributeError(name)
