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


def check_options(*, repeats: int, warmup: int, linear_dim: int | None, chunk_size: int | None) -> None:
    """One UsageError for profile options out of range or given where nothing reads them (cheap: no torch)."""
    from losscli.errors import UsageError

    if not 1 <= repeats <= MAX_REPEATS:
        raise UsageError(f"--repeats must be in [1, {MAX_REPEATS}] (timed passes per configuration), got {repeats}")
    if not 0 <= warmup <= MAX_REPEATS:
        raise UsageError(f"--warmup must be in [0, {MAX_REPEATS}] (untimed passes per configuration), got {warmup}")
    if chunk_size is not None and linear_dim is None:  # silently ignored: no chunked layer without --linear-dim
        raise UsageError(f"--chunk-size {chunk_size} applies only with --linear-dim (the chunked linear layer + loss "
                         "comparison); add --linear-dim D or drop --chunk-size")


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
