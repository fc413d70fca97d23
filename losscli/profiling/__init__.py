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

__all__ = ["profile_losses", "compare_linear", "analyse_losses", "plot_scaling", "plot_shapes", "SCHEMA"]

SCHEMA = "losscli/profile/v1"


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
