"""Synthetic Gaussian mixture: fast, offline, for tests and demos.

Class means are random directions scaled to norm ``separation``; samples are the mean
plus standard normal noise. Everything comes from one ``torch.Generator`` seeded with
option ``seed`` (default: ``split_seed``), so the data are identical for identical seeds.
"""

from __future__ import annotations

import math

import torch

from losscli.data.bundle import make_bundle
from losscli.data.registry import positive_int, register_dataset
from losscli.errors import UsageError

#: most generated values (n_train + n_test) x dim: 2**30 float32 values are 4 GB
MAX_VALUES = 2**30


@register_dataset("synthetic", options={"classes": 10, "dim": 20, "separation": 3.0, "n_train": 2000,
                                        "n_test": 1000, "seed": None},
                  kind="vector", doc="Gaussian mixture; options classes, dim, separation, n_train, n_test")
def load_synthetic(*, data_dir=None, download=False, val_fraction=0.1, split_seed=0, options=None):
    classes = positive_int(options["classes"], "synthetic: option 'classes'", minimum=2)
    dim = positive_int(options["dim"], "synthetic: option 'dim'")
    n_train = positive_int(options["n_train"], "synthetic: option 'n_train'", minimum=classes)
    n_test = positive_int(options["n_test"], "synthetic: option 'n_test'")
    if (n_train + n_test) * dim > MAX_VALUES:
        raise UsageError(f"synthetic: (n_train + n_test) x dim = {(n_train + n_test) * dim} values is too many (at most "
                         f"{MAX_VALUES}, {MAX_VALUES * 4 // 2**30} GB); lower n_train, n_test or dim")
    try:
        separation = float(options["separation"])
    except (TypeError, ValueError):
        separation = math.nan
    if not (math.isfinite(separation) and separation >= 0):
        raise UsageError(f"synthetic: option 'separation' must be a finite number >= 0, got {options['separation']!r}")
    seed = split_seed if options["seed"] is None else options["seed"]
    if isinstance(seed, bool) or not isinstance(seed, int) or not -2**63 <= seed < 2**64:
        raise UsageError(f"synthetic: option 'seed' must be a 64-bit integer, got {seed!r}")
    g = torch.Generator().manual_seed(int(seed))
    directions = torch.randn(classes, dim, generator=g)
    means = separation * directions / directions.norm(dim=1, keepdim=True).clamp_min(1e-12)

    def sample(n: int) -> tuple[torch.Tensor, torch.Tensor]:
        y = torch.arange(n) % classes
        y = y[torch.randperm(n, generator=g)]
        x = means[y] + torch.randn(n, dim, generator=g)
        return x, y

    x_train, y_train = sample(n_train)
    x_test, y_test = sample(n_test)
    return make_bundle(
        "synthetic", x_train=x_train, y_train=y_train, x_test=x_test, y_test=y_test, kind="vector",
        num_classes=classes, val_fraction=val_fraction, split_seed=split_seed,
        info={"source": "synthetic gaussian mixture",
              "options": {"classes": classes, "dim": dim, "separation": separation,
                          "n_train": n_train, "n_test": n_test, "seed": seed}},
    )
