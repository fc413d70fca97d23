"""The configuration schema: every key a preset, a flag or ``--set`` can set, with its default.

One schema serves every command: ``train`` reads ``loss``/``seed``, ``compare`` reads
``losses``/``seeds``/``noise``/``imbalance``. Typed views (``seed_list``, ``noise_settings``,
``loss_specs``...) turn the raw values into validated, canonical ones; :mod:`.validate` checks
everything at once. No torch here.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any, Optional, Union

from losscli.errors import UsageError
from losscli.lossspec import split_list


@dataclass
class DatasetConfig:
    name: str = "mnist1d"
    data_dir: Optional[str] = None
    download: bool = False
    val_fraction: float = 0.1
    split_seed: int = 0
    # validation labels stay clean under label noise (optimistic: a practitioner's validation labels
    # are as noisy as the training labels, which is the default)
    clean_val: bool = False
    options: dict = field(default_factory=dict)


@dataclass
class ModelConfig:
    name: str = "auto"
    options: dict = field(default_factory=dict)


@dataclass
class TrainConfig:
    epochs: int = 100
    batch_size: int = 128
    optimizer: str = "adamw"  # adamw | sgd
    lr: float = 0.01
    weight_decay: float = 0.0005
    momentum: float = 0.9
    schedule: str = "cosine"  # cosine | onecycle | step | constant
    warmup_epochs: float = 1.0
    step_milestones: list = field(default_factory=lambda: [0.5, 0.75])  # fractions of training, for "step"
    step_gamma: float = 0.1
    grad_clip: Optional[float] = None
    eval_every: int = 1


@dataclass
class StatisticsConfig:
    test: str = "t"  # t (seeds + test-set variance) | t-seeds | signflip
    correction: str = "holm"  # holm | bh | none
    alpha: float = 0.05
    min_effect: float = 1.0  # points, for metrics shown in percent


@dataclass
class TuneConfig:
    trials: int = 0  # per loss and setting; 0: no tuning (registry defaults, the configured lr)
    storage: Optional[str] = None  # Optuna storage URL; None: sqlite in the compare directory
    pruner: str = "halving"  # halving (successive halving) | hyperband | none
    lr_factor: float = 10.0  # the learning rate is searched in [lr / f, lr * f], log scale
    sampler_seed: int = 0


@dataclass
class Config:
    loss: str = "ce"
    losses: list = field(default_factory=lambda: ["ce"])
    baseline: Optional[str] = None
    seed: int = 0
    seeds: Union[int, list] = 3
    noise: Union[str, list] = "none"
    imbalance: Union[str, list] = "none"
    dataset: DatasetConfig = field(default_factory=DatasetConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    statistics: StatisticsConfig = field(default_factory=StatisticsConfig)
    tune: TuneConfig = field(default_factory=TuneConfig)
    device: str = "auto"  # auto | cpu | cuda | cuda:N
    compile: Optional[bool] = None  # None: on for CUDA, off for CPU
    precision: str = "auto"  # auto (bf16 autocast on CUDA) | fp32 | bf16
    # CPU intra-op threads per run: None = auto (1 for small models, which run fastest that way)
    threads: Optional[int] = None
    # compare worker processes: None = auto (one per CPU core on CPU; 1 on CUDA, where runs are batched)
    jobs: Optional[int] = None
    # train compatible runs stacked with torch.func: None = auto (on CUDA, where tiny models are
    # launch-bound; off on CPU, where stacked grouped convolutions measured slower than separate runs)
    batch_runs: Optional[bool] = None
    # where compare's runs execute: local (this process), pool (worker processes), ray (a Ray cluster);
    # None = auto (local for one job, pool for more)
    executor: Optional[str] = None
    # Ray: cluster address ("auto" joins a running cluster; None starts a local instance)
    address: Optional[str] = None
    # Ray: GPUs per run (fractions pack several small runs on one GPU); None = 1 on CUDA, 0 on CPU
    gpus_per_run: Optional[float] = None
    # run directory of a finished run whose logits distilling losses (kd, pld, dhkd) learn from;
    # applied to those losses only (train: --teacher; compare: --teacher or --set teacher=DIR)
    teacher: Optional[str] = None

    # -- typed views -------------------------------------------------------------------
    def seed_list(self) -> list[int]:
        """``seeds: N`` -> ``[0..N-1]``; a list must hold distinct integers."""
        if isinstance(self.seeds, bool):
            raise UsageError(f"config key 'seeds' must be a count or a list of integers, got {self.seeds!r}")
        if isinstance(self.seeds, int):
            if self.seeds < 1:
                raise UsageError(f"config key 'seeds' must be >= 1 (a count) or a non-empty list, got {self.seeds}")
            _check_seed_count(self.seeds)
            return list(range(self.seeds))
        if not self.seeds:
            raise UsageError("config key 'seeds' is an empty list; give a count (--seeds 6) or at least one seed")
        _check_seed_count(len(self.seeds))
        # --set seeds=0,1 is a comma list of texts: its integers are seeds, as in --set seeds=[0,1]
        seeds = [int(s) if isinstance(s, str) and s.strip().isascii() and s.strip().isdigit() else s
                 for s in self.seeds]
        bad = [s for s in seeds if isinstance(s, bool) or not isinstance(s, int)]
        if bad:
            raise UsageError(f"config key 'seeds' must hold integers, got {bad[0]!r}")
        for s in seeds:
            check_seed(s, "config key 'seeds': each seed")
        dupes = sorted({s for s in seeds if seeds.count(s) > 1})
        if dupes:
            raise UsageError(f"config key 'seeds' lists seed {dupes[0]} twice; each seed once")
        return seeds

    def noise_settings(self) -> list:
        """The label-noise settings as typed ``NoiseSpec`` values (``none`` included), each once."""
        from losscli.data.settings import parse_noise_spec

        specs = _distinct([parse_noise_spec(v) for v in _as_list(self.noise, "noise")], "noise")
        clean = [str(s) for s in specs if s.kind == "none" or s.rate == 0]  # a rate of 0 flips no label
        if len(clean) > 1:
            raise UsageError(f"config key 'noise' lists {' and '.join(clean)}: each flips no label, so they are one "
                             "setting (clean data) run twice; list it once")
        return specs

    def imbalance_settings(self) -> list:
        """The imbalance settings as typed ``ImbalanceSpec`` values, each once."""
        from losscli.data.settings import parse_imbalance_spec

        return _distinct([parse_imbalance_spec(v) for v in _as_list(self.imbalance, "imbalance")], "imbalance")

    def single_setting(self) -> tuple:
        """``train``'s one (noise, imbalance) setting; a list of several is an error."""
        return _one(self.noise_settings(), "noise"), _one(self.imbalance_settings(), "imbalance")

    def loss_specs(self) -> list:
        """``losses`` as canonical ``LossSpec`` values (validated; equal configurations once)."""
        from losscli.losses.resolve import resolve_loss

        items = self.losses if isinstance(self.losses, list) else [self.losses]
        if not items:
            raise UsageError("config key 'losses' is empty; list at least one loss (--losses ce,focal,...)")
        specs = []
        for item in items:
            if not isinstance(item, (str, dict)):
                raise UsageError(f"config key 'losses' must hold loss specs such as focal(gamma=2), got {item!r}")
            specs.append(resolve_loss(item, for_engine=True))
        return _distinct(specs, "losses", label=lambda s: s.label)

    def loss_spec(self):
        """``loss`` (the one loss of ``train``) as a canonical ``LossSpec``."""
        from losscli.losses.resolve import resolve_loss

        return resolve_loss(self.loss, for_engine=True)

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)


#: seeds are 32-bit: runs derive further seeds from them (label noise: seed * 1_000_003 + ..., which
#: overflowed torch's 64-bit generator for seeds beyond ~9e12) and Optuna's sampler takes [0, 2**32)
SEED_LIMIT = 2**32


def check_seed(value: Any, what: str) -> int:
    """``value`` as a seed: an integer in [0, 2**32) (see :data:`SEED_LIMIT`)."""
    if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value < SEED_LIMIT:
        raise UsageError(f"{what} must be an integer in [0, {SEED_LIMIT - 1}] (a 32-bit seed), got {value!r}")
    return value


#: seeds per loss and setting: each is a full training run, and the paired tests decide with tens
#: (``--seeds 10000000000`` ran out of memory listing them)
MAX_SEEDS = 10_000


def _check_seed_count(n: int) -> None:
    if n > MAX_SEEDS:
        raise UsageError(f"config key 'seeds' asks for {n} seeds; at most {MAX_SEEDS} (each seed is a training run "
                         "per loss and setting, and the paired tests decide with tens)")


#: config keys that hold comma lists and have a flag of the same name (--losses, --noise, ...)
LIST_FLAGS = ("losses", "noise", "imbalance")


def list_key(key: str) -> str:
    """How an error names a comma list config key: ``config key 'losses' (--losses)``."""
    return f"config key {key!r}" + (f" (--{key})" if key in LIST_FLAGS else "")


def _as_list(value: Any, key: str) -> list:
    if isinstance(value, str):
        items = split_list(value, list_key(key))
        if not items:
            raise UsageError(f"config key {key!r} is empty ({value!r}); write none for no {key}")
        return items
    if isinstance(value, list):
        if not value:
            raise UsageError(f"config key {key!r} is an empty list; use [none] for no {key}")
        return value
    raise UsageError(f"config key {key!r} must be a setting or a list of settings, got {value!r}")


def _one(values: list, key: str):
    if len(values) != 1:
        raise UsageError(f"train takes one {key} setting, got {', '.join(map(str, values))}; use compare for grids")
    return values[0]


def _distinct(values: list, key: str, label=str) -> list:
    seen = set()
    for v in values:
        if label(v) in seen:
            raise UsageError(f"config key {key!r} lists {label(v)} twice (after canonicalising); list each once")
        seen.add(label(v))
    return values
