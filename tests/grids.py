"""The tiny compare grid several test modules train: a separable synthetic dataset, an MLP, 2 seeds."""

from __future__ import annotations

from typing import Any

from losscli.config import build_config

SYNTH = {"name": "synthetic", "options": {"classes": 3, "dim": 6, "n_train": 150, "n_test": 60, "separation": 2.5}}


def tiny_config(**over: Any):
    """ce and gce x 2 seeds, clean, 2 epochs on CPU; keyword arguments replace top-level keys."""
    data = {"losses": ["ce", "gce"], "seeds": 2, "noise": ["none"], "imbalance": ["none"], "dataset": SYNTH,
            "model": {"name": "mlp"}, "train": {"epochs": 2, "batch_size": 32, "lr": 0.01}, "device": "cpu"}
    data.update(over)
    return build_config(None, data)
