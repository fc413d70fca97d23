"""A fully resolved, typed description of one training run, and its identity hash.

Values are canonical from the start (canonicalised at the boundary by the config's typed views):
the loss is a :class:`~losscli.losses.resolve.LossSpec` (validated parameters, canonical label),
noise and imbalance are typed settings. ``resolved()`` is what goes into ``config.yaml`` and
``from_resolved()`` reads it back, so the run-directory format round-trips without losing fields.
``key()`` hashes everything that changes the result, so ``compare`` can give every run its own
directory, skip runs that already completed and never train equal configurations twice.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
from dataclasses import dataclass, field
from typing import Any

from losscli.config.schema import Config, DatasetConfig, ModelConfig, TrainConfig
from losscli.data.settings import ImbalanceSpec, NoiseSpec, parse_imbalance_spec, parse_noise_spec
from losscli.errors import UsageError
from losscli.losses.resolve import LossSpec, resolve_loss


@dataclass
class RunSpec:
    loss: LossSpec
    seed: int = 0
    noise: NoiseSpec = NoiseSpec("none", 0.0)
    imbalance: ImbalanceSpec = ImbalanceSpec("none", 1.0)
    dataset: DatasetConfig = field(default_factory=DatasetConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    device: str = "auto"
    compile: bool | None = None
    precision: str = "auto"
    teacher: str | None = None  # run dir of a trained teacher (kd)
    threads: int | None = None  # CPU intra-op threads (None: auto); not part of the run's identity

    @classmethod
    def from_config(cls, cfg: Config, loss: LossSpec | None = None, *, seed: int | None = None,
                    noise: NoiseSpec | None = None, imbalance: ImbalanceSpec | None = None,
                    teacher: str | None = None) -> "RunSpec":
        """One run of ``cfg``: ``train`` gives no overrides (one loss, noise and imbalance setting);
        ``compare`` passes the grid point."""
        if noise is None or imbalance is None:
            one_noise, one_imbalance = cfg.single_setting()
            noise = one_noise if noise is None else noise
            imbalance = one_imbalance if imbalance is None else imbalance
        loss = loss if loss is not None else cfg.loss_spec()
        if teacher is None and "teacher_logits" in loss.info().needs:
            # the config's teacher goes to distilling losses only: the other runs' keys stay as they were
            teacher = cfg.teacher
        return cls(
            loss=loss, seed=cfg.seed if seed is None else int(seed),
            noise=noise, imbalance=imbalance, dataset=cfg.dataset, model=cfg.model, train=cfg.train,
            device=cfg.device, compile=cfg.compile, precision=cfg.precision, teacher=teacher, threads=cfg.threads,
        )

    @classmethod
    def from_resolved(cls, data: dict[str, Any], where: str = "config.yaml") -> "RunSpec":
        """Inverse of :meth:`resolved` (reads a run's ``config.yaml``); one UsageError naming ``where``
        when a key is missing or malformed."""
        try:
            ds = dict(data["dataset"])
            noise, imbalance = parse_noise_spec(ds.pop("noise")), parse_imbalance_spec(ds.pop("imbalance"))
            model = dict(data["model"])
            model.pop("resolved_name", None)
            return cls(
                loss=resolve_loss(data["loss"]), seed=int(data["seed"]), noise=noise, imbalance=imbalance,
                dataset=DatasetConfig(**ds), model=ModelConfig(**model), train=TrainConfig(**data["train"]),
                device=data.get("device", "auto"), compile=data.get("compile"), precision=data.get("precision", "auto"),
                teacher=data.get("teacher"), threads=data.get("threads"),
            )
        except UsageError as exc:
            raise UsageError(f"{where}: {exc}") from None
        except (KeyError, TypeError, ValueError, AttributeError) as exc:
            raise UsageError(f"{where} is not a losscli run config ({type(exc).__name__}: {exc}); "
                             "retrain the run or delete its directory") from None

    @property
    def loss_label(self) -> str:
        return self.loss.label

    def setting(self) -> dict[str, str]:
        return {"dataset": self.dataset.name, "noise": str(self.noise), "imbalance": str(self.imbalance)}

    def describe(self) -> str:
        return f"{self.loss.label} seed {self.seed} noise {self.noise} imbalance {self.imbalance}"

    def resolved(self) -> dict[str, Any]:
        return {
            "loss": self.loss.resolved(),
            "seed": self.seed,
            "dataset": {**dataclasses.asdict(self.dataset), "noise": str(self.noise), "imbalance": str(self.imbalance)},
            "model": dataclasses.asdict(self.model),
            "train": dataclasses.asdict(self.train),
            "device": self.device,
            "compile": self.compile,
            "precision": self.precision,
            "teacher": self.teacher,
            "threads": self.threads,
        }

    def key(self) -> str:
        """Stable hash of everything that changes the result (device and threads excluded: recorded in env)."""
        data = self.resolved()
        data.pop("device")
        data.pop("threads")
        return _hash(data)

    def batch_group(self) -> str:
        """Runs with equal group keys can train together (same data, model, optimizer, budget)."""
        data = self.resolved()
        for k in ("loss", "seed", "teacher", "threads"):
            data.pop(k)
        data["dataset"].pop("noise")  # per-run labels are fine; the inputs x are shared
        return _hash(data)


def _hash(data: dict) -> str:
    return hashlib.sha256(json.dumps(data, sort_keys=True, default=str).encode()).hexdigest()[:12]

