"""A fully resolved description of one training run, and its identity hash.

``RunSpec.resolved()`` is what goes into ``config.yaml``: enough to reproduce the run.
``RunSpec.key()`` hashes it, so ``compare`` can give every run its own directory and
skip runs that already completed.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
from dataclasses import dataclass, field
from typing import Any

from losscli.config import Config, DatasetConfig, ModelConfig, TrainConfig
from losscli.specs import format_loss_spec, parse_loss_spec


@dataclass
class RunSpec:
    loss: str
    loss_params: dict = field(default_factory=dict)
    seed: int = 0
    noise: str = "none"
    imbalance: str = "none"
    dataset: DatasetConfig = field(default_factory=DatasetConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    device: str = "auto"
    compile: bool | None = None
    precision: str = "auto"
    teacher: str | None = None  # run dir of a trained teacher (kd)
    threads: int | None = None  # CPU intra-op threads (None: auto); not part of the run's identity

    @classmethod
    def from_config(cls, cfg: Config, loss_spec: str | None = None, seed: int | None = None,
                    noise: str | None = None, imbalance: str | None = None, teacher: str | None = None) -> "RunSpec":
        name, params = parse_loss_spec(loss_spec or cfg.loss)
        from losscli.errors import UsageError

        noise = noise if noise is not None else _single(cfg.noise_list(), "noise")
        imbalance = imbalance if imbalance is not None else _single(cfg.imbalance_list(), "imbalance")
        if not isinstance(noise, str) or not isinstance(imbalance, str):
            raise UsageError("noise and imbalance must be single settings for one run")
        return cls(
            loss=name, loss_params=params, seed=cfg.seed if seed is None else seed, noise=noise,
            imbalance=imbalance, dataset=cfg.dataset, model=cfg.model, train=cfg.train, device=cfg.device,
            compile=cfg.compile, precision=cfg.precision, teacher=teacher, threads=cfg.threads,
        )

    @property
    def loss_label(self) -> str:
        return format_loss_spec(self.loss, self.loss_params)

    def setting(self) -> dict[str, str]:
        return {"dataset": self.dataset.name, "noise": self.noise, "imbalance": self.imbalance}

    def resolved(self) -> dict[str, Any]:
        return {
            "loss": {"name": self.loss, "params": dict(self.loss_params)},
            "seed": self.seed,
            "dataset": {**dataclasses.asdict(self.dataset), "noise": self.noise, "imbalance": self.imbalance},
            "model": dataclasses.asdict(self.model),
            "train": dataclasses.asdict(self.train),
            "device": self.device,
            "compile": self.compile,
            "precision": self.precision,
            "teacher": self.teacher,
            "threads": self.threads,
        }

    def key(self) -> str:
        """Stable hash of everything that changes the result (device excluded: recorded in env)."""
        data = self.resolved()
        data.pop("device")
        data.pop("threads")
        blob = json.dumps(data, sort_keys=True, default=str).encode()
        return hashlib.sha256(blob).hexdigest()[:12]

    def batch_group(self) -> str:
        """Runs with equal group keys can train together (same data, model, optimizer, budget)."""
        data = self.resolved()
        for k in ("loss", "seed", "teacher"):
            data.pop(k)
        data["dataset"].pop("noise")  # per-run labels are fine; the inputs x are shared
        return hashlib.sha256(json.dumps(data, sort_keys=True, default=str).encode()).hexdigest()[:12]


def _single(values: list[str], what: str) -> str:
    from losscli.errors import UsageError

    if len(values) != 1:
        raise UsageError(f"train takes one {what} setting, got {values}; use compare for grids")
    return values[0]
