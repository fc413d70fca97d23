"""Datasets for losscli: sources, splits, label noise and class imbalance.

>>> from losscli.data import load_dataset, apply_imbalance, apply_noise
>>> base = load_dataset("synthetic", options={"n_train": 500})
>>> noisy = apply_noise(apply_imbalance(base, "exp:10"), "sym:0.4", seed=0)

Sources register themselves in ``DATASETS`` (one module each); ``hf:<name-or-path>`` and
paths ending in ``.npz``/``.pt`` are resolved by :func:`load_dataset`.

Attributes are imported lazily (PEP 562) so that ``losscli.data.settings`` and
``losscli.data.registry`` can be used without importing torch.
"""

from __future__ import annotations

import importlib
from typing import Any

_EXPORTS = {
    "DataBundle": "bundle", "carve_split": "bundle", "make_bundle": "bundle",
    "apply_imbalance": "imbalance", "load_dataset": "loading", "resolve_name": "loading",
    "apply_noise": "noise", "transition_matrix": "noise", "CLASS_MAPS": "noise",
    "register_dataset": "registry",
    "parse_noise_spec": "settings", "parse_imbalance_spec": "settings", "NoiseSpec": "settings", "ImbalanceSpec": "settings",
}

__all__ = sorted([*_EXPORTS, "DATASETS", "register_sources"])


def register_sources() -> None:
    """Import every ``src_*`` module of this package (each registers its sources; idempotent):
    adding a source is one ``src_<name>.py`` file with ``@register_dataset``."""
    import pkgutil

    for mod in pkgutil.iter_modules(__path__):
        if mod.name.startswith("src_"):
            importlib.import_module(f"{__name__}.{mod.name}")


def __getattr__(name: str) -> Any:
    if name == "DATASETS":
        register_sources()
        from losscli.data.registry import DATASETS

        return DATASETS
    if name in _EXPORTS:
        value = getattr(importlib.import_module(f"{__name__}.{_EXPORTS[name]}"), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def __dir__() -> list[str]:
    return __all__
