"""``validate(config)``: every value checked once, at the boundary, with the key named.

Commands call this before anything is created or loaded, so bad input is one line and exit 2
instead of a failure minutes into a run. The typed views of :class:`~losscli.config.schema.Config`
do the parsing (seeds, noise, imbalance, losses); this module adds the range checks.
"""

from __future__ import annotations

import math
from typing import Any

from losscli.config.schema import Config, TrainConfig, check_seed
from losscli.errors import UsageError

OPTIMIZERS = ("adamw", "sgd")
SCHEDULES = ("cosine", "onecycle", "step", "constant")
PRECISIONS = ("auto", "fp32", "bf16")
PRUNERS = ("halving", "hyperband", "none")
#: dataset/model options are hashed into run keys: plain, small values only
MAX_OPTION_CHARS = 10_000
#: a peak learning rate above this cannot be meant (near 1e37 torch's float32 optimizer update overflows)
MAX_LR = 1e6
#: the tuned learning rate spans [lr / f, lr * f]: wider than 12 decades cannot be meant
MAX_LR_FACTOR = 1e6
#: CPU threads per run: no machine has more cores, and torch's thread pool dies creating millions
MAX_THREADS = 1024
#: epochs per run: days of training at a few ms per epoch; 10**12 was accepted and ran for ever
MAX_EPOCHS = 100_000
#: examples per training step: beyond any dataset in memory; 10**30 was accepted (one full batch)
MAX_BATCH_SIZE = 10**7
#: tuning trials per loss and setting (each is a training run); the samplers settle within hundreds
MAX_TRIALS = 100_000


def validate(cfg: Config, command: str = "compare") -> Config:
    """Check ``cfg`` for ``command`` (``train`` or ``compare``); returns it unchanged."""
    validate_train(cfg.train)
    check_seed(cfg.seed, "config key 'seed'")
    check_seed(cfg.dataset.split_seed, "config key 'dataset.split_seed'")
    check_seed(cfg.tune.sampler_seed, "config key 'tune.sampler_seed'")
    _check(0.0 <= cfg.dataset.val_fraction < 1.0, "dataset.val_fraction", "must be in [0, 1)", cfg.dataset.val_fraction)
    _check(isinstance(cfg.dataset.name, str) and cfg.dataset.name.strip() != "", "dataset.name",
           "must name a dataset (see README, Data)", cfg.dataset.name)
    for section, options in (("dataset.options", cfg.dataset.options), ("model.options", cfg.model.options)):
        _check_plain(options, section)
    _check(cfg.precision in PRECISIONS, "precision", f"must be one of {', '.join(PRECISIONS)}", cfg.precision)
    _check(isinstance(cfg.device, str) and cfg.device.strip() != "", "device", "must be auto, cpu, cuda or cuda:N",
           cfg.device)
    _check(cfg.threads is None or 1 <= cfg.threads <= MAX_THREADS, "threads",
           f"must be in [1, {MAX_THREADS}] (CPU threads per run)", cfg.threads)
    _check(cfg.jobs is None or cfg.jobs >= 1, "jobs", "must be >= 1 (worker processes)", cfg.jobs)
    st, tu = cfg.statistics, cfg.tune
    from losscli.stats import CORRECTIONS, TESTS

    _check(st.test in TESTS, "statistics.test", f"must be one of {', '.join(TESTS)}", st.test)
    _check(st.correction in CORRECTIONS, "statistics.correction", f"must be one of {', '.join(CORRECTIONS)}",
           st.correction)
    _check(0 < st.alpha < 1, "statistics.alpha", "must be in (0, 1)", st.alpha)
    # points of a metric shown in percent: a difference of 100 points or more cannot happen
    _check(0 <= st.min_effect < 100, "statistics.min_effect", "must be in [0, 100) (points)", st.min_effect)
    _check(0 <= tu.trials <= MAX_TRIALS, "tune.trials", f"must be in [0, {MAX_TRIALS}] (--tune: trials per loss and "
           "setting, each a training run)", tu.trials)
    _check(tu.pruner in PRUNERS, "tune.pruner", f"must be one of {', '.join(PRUNERS)}", tu.pruner)
    _check(1 <= tu.lr_factor <= MAX_LR_FACTOR, "tune.lr_factor",
           f"must be in [1, {MAX_LR_FACTOR:g}] (the learning rate is searched in [lr / f, lr * f])", tu.lr_factor)
    _check(cfg.executor is None or isinstance(cfg.executor, str), "executor", "must be local, pool or ray",
           cfg.executor)
    _check(cfg.gpus_per_run is None or cfg.gpus_per_run > 0, "gpus_per_run", "must be > 0", cfg.gpus_per_run)
    # options only one executor (or tuning) reads: given elsewhere they were silently ignored
    for key, value in (("address", cfg.address), ("gpus_per_run", cfg.gpus_per_run)):
        if value is not None and str(cfg.executor).strip().lower() != "ray":  # the registry ignores case
            raise UsageError(f"config key {key!r} (--{key.replace('_', '-')}) is for --executor ray, but the "
                             f"executor is {cfg.executor or 'auto (local or pool)'}; add --executor ray or drop it")
    if cfg.jobs is not None and cfg.jobs > 1 and str(cfg.executor).strip().lower() == "local":
        # the local executor runs one task at a time in this process: --jobs was silently ignored
        raise UsageError(f"config key 'jobs' (--jobs {cfg.jobs}) runs tasks in parallel, but --executor local runs "
                         "them one at a time; use --executor pool (or ray), or drop --executor (pool is the default "
                         "for --jobs > 1)")
    if tu.storage is not None and not tu.trials:
        raise UsageError("config key 'tune.storage' (--storage) is the study storage of --tune, but no tuning was "
                         "asked for; add --tune N or drop --storage")
    _check_utf8(cfg.to_dict(), "")
    if command == "train":
        cfg.loss_spec()
        cfg.single_setting()
    else:
        cfg.loss_specs()
        cfg.seed_list()
        cfg.noise_settings()
        cfg.imbalance_settings()
    return cfg


def validate_train(t: TrainConfig) -> None:
    """Ranges of the training keys (also used by trainers given a hand-built config)."""
    _check(1 <= t.epochs <= MAX_EPOCHS, "train.epochs", f"must be in [1, {MAX_EPOCHS}] (training epochs)", t.epochs)
    _check(1 <= t.batch_size <= MAX_BATCH_SIZE, "train.batch_size", f"must be in [1, {MAX_BATCH_SIZE}] (examples per "
           "step; a batch larger than the training set is the whole set)", t.batch_size)
    _check(1 <= t.eval_every <= MAX_EPOCHS, "train.eval_every", f"must be in [1, {MAX_EPOCHS}] (evaluate every N "
           "epochs; the last epoch is always evaluated)", t.eval_every)
    _check(_number(t.lr) and 0 < t.lr <= MAX_LR, "train.lr", f"must be a finite number in (0, {MAX_LR:g}]", t.lr)
    _check(_number(t.weight_decay) and t.weight_decay >= 0, "train.weight_decay", "must be a finite number >= 0",
           t.weight_decay)
    _check(_number(t.momentum) and 0 <= t.momentum < 1, "train.momentum", "must be in [0, 1)", t.momentum)
    # 1e308 overflowed to an infinite step count (exit 1); 10**12 trained at a learning rate of ~0
    _check(_number(t.warmup_epochs) and 0 <= t.warmup_epochs <= MAX_EPOCHS, "train.warmup_epochs",
           f"must be in [0, {MAX_EPOCHS}] (epochs of linear learning-rate warm-up)", t.warmup_epochs)
    # a warm-up longer than training never reaches the peak rate and skips the schedule: a typo, not a choice
    _check(t.warmup_epochs <= t.epochs, "train.warmup_epochs", f"must be at most train.epochs ({t.epochs}: "
           "lower it, e.g. --set train.warmup_epochs=0)", t.warmup_epochs)
    _check(_number(t.step_gamma) and 0 < t.step_gamma <= 1, "train.step_gamma", "must be in (0, 1]", t.step_gamma)
    _check(t.grad_clip is None or (_number(t.grad_clip) and t.grad_clip > 0), "train.grad_clip",
           "must be a finite number > 0 (or null)", t.grad_clip)
    _check(t.optimizer in OPTIMIZERS, "train.optimizer", f"must be one of {', '.join(OPTIMIZERS)}", t.optimizer)
    _check(t.schedule in SCHEDULES, "train.schedule", f"must be one of {', '.join(SCHEDULES)}", t.schedule)
    ms = t.step_milestones
    ok = isinstance(ms, list) and all(_number(m) and 0 < m < 1 for m in ms) and list(ms) == sorted(ms)
    _check(ok, "train.step_milestones", "must be an increasing list of fractions of training in (0, 1), "
           "e.g. [0.5, 0.75]", ms)


def _check(ok: bool, key: str, what: str, value: Any) -> None:
    if not ok:
        raise UsageError(f"config key {key!r} {what}, got {value!r}")


def _number(v: Any) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)


def _check_utf8(value: Any, key: str) -> None:
    """Every text value is written to config.yaml and the reports: one that is not UTF-8 (a file name
    in another encoding reaches Python as lone surrogates) failed that write after training, exit 1."""
    if isinstance(value, dict):
        for k, v in value.items():
            _check_utf8(v, f"{key}.{k}" if key else str(k))
    elif isinstance(value, list):
        for v in value:
            _check_utf8(v, key)
    elif isinstance(value, str):
        try:
            value.encode("utf-8")
        except UnicodeEncodeError:
            raise UsageError(f"config key {key!r} is not valid UTF-8 text ({value!r}); losscli records it in "
                             "YAML reports: rename the file or directory to a UTF-8 name") from None


def _check_plain(options: Any, section: str) -> None:
    """Options are hashed into run keys and passed to sources/models: plain YAML values only."""
    def plain(v: Any, depth: int = 0) -> bool:
        if depth > 8:
            return False
        if v is None or isinstance(v, (bool, int, str)):
            return True
        if isinstance(v, float):
            return math.isfinite(v)
        if isinstance(v, list):
            return all(plain(x, depth + 1) for x in v)
        if isinstance(v, dict):
            return all(isinstance(k, str) and plain(x, depth + 1) for k, x in v.items())
        return False

    if not isinstance(options, dict):
        raise UsageError(f"config key {section!r} must be a mapping of option names to values, got {options!r}")
    for k, v in options.items():
        if not plain(v):
            raise UsageError(f"config key '{section}.{k}' must be a plain value (number, text, list), got {v!r}")
    if len(repr(options)) > MAX_OPTION_CHARS:
        raise UsageError(f"config key {section!r} is too large ({len(repr(options))} characters)")
