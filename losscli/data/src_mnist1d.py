"""MNIST-1D (Greydanus 2020), generated offline with the ``mnist1d`` package and cached.

Never uses the package's download path. ``make_dataset`` reseeds Python's and NumPy's
global RNGs; their states are saved and restored around it so callers see no change.
The generated arrays are cached as ``<cache>/mnist1d-<hash of args>.npz`` (atomic write).
"""

from __future__ import annotations

import hashlib
import json
import os
import random
from typing import Any

import numpy as np

from losscli.data.bundle import make_bundle
from losscli.data.cache import cache_dir, try_save_cache
from losscli.data.registry import positive_int, register_dataset

_OPTIONS = {
    "num_samples": 5000,
    "train_split": 0.8,
    "template_len": 12,
    "padding": [36, 60],
    "scale_coeff": 0.4,
    "max_translation": 48,
    "corr_noise_scale": 0.25,
    "iid_noise_scale": 0.02,
    "shear_scale": 0.75,
    "shuffle_seq": False,
    "final_seq_length": 40,
    "seed": 42,
}


def _generate(args: dict[str, Any]) -> dict[str, np.ndarray]:
    from mnist1d.data import get_dataset_args, make_dataset

    full = get_dataset_args(as_dict=True)
    full.update(args)
    full.pop("url", None)  # never download
    py_state, np_state = random.getstate(), np.random.get_state()
    try:
        data = make_dataset(_View(full))
    finally:
        random.setstate(py_state)
        np.random.set_state(np_state)
    return {k: np.asarray(data[k]) for k in ("x", "y", "x_test", "y_test")}


class _View:
    def __init__(self, d: dict[str, Any]):
        self.__dict__.update(d)


def cache_path(args: dict[str, Any]) -> str:
    key = hashlib.sha1(json.dumps(args, sort_keys=True).encode()).hexdigest()[:12]
    return os.path.join(cache_dir(), f"mnist1d-{key}.npz")


def load_arrays(args: dict[str, Any]) -> tuple[dict[str, np.ndarray], str, bool]:
    """Arrays for ``args`` from the cache, generating (and caching) them on a miss."""
    path = cache_path(args)
    if os.path.exists(path):
        try:
            with np.load(path) as f:
                return {k: f[k] for k in ("x", "y", "x_test", "y_test")}, path, True
        except Exception:  # a corrupt cache file is regenerated
            pass
    arrays = _generate(args)
    arrays = {"x": arrays["x"].astype(np.float32), "y": arrays["y"].astype(np.int64),
              "x_test": arrays["x_test"].astype(np.float32), "y_test": arrays["y_test"].astype(np.int64)}
    try_save_cache(path, **arrays)
    return arrays, path, False


@register_dataset("mnist1d", options=_OPTIONS, kind="sequence1d",
                  doc="MNIST-1D, generated offline (4000 train / 1000 test by default)")
def load_mnist1d(*, data_dir=None, download=False, val_fraction=0.1, split_seed=0, options=None):
    args = dict(options)
    args["num_samples"] = positive_int(args["num_samples"], "mnist1d: option 'num_samples'", minimum=10)
    args["padding"] = list(args["padding"])
    arrays, path, hit = load_arrays(args)
    return make_bundle(
        "mnist1d", x_train=arrays["x"], y_train=arrays["y"], x_test=arrays["x_test"], y_test=arrays["y_test"],
        kind="sequence1d", num_classes=10, class_names=[str(i) for i in range(10)],
        val_fraction=val_fraction, split_seed=split_seed,
        info={"source": "mnist1d (generated offline)", "cache_file": path, "cache_hit": hit,
              "generator_args": args},
    )
