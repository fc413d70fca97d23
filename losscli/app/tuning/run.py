"""``compare --tune N``: the same budget of N trials for every loss (baseline included) and setting,
over its hyperparameters and the learning rate, selected on the validation split only.

Optuna's TPE sampler proposes, a successive-halving (or Hyperband) pruner stops hopeless trials on
their per-epoch validation accuracy, and every study lives in SQLite storage in the compare
directory (or ``--storage URL``), so a tuning killed at any moment resumes without repeating
finished trials. Trials run through the compare's executor in waves: one trial per study per wave
(ask in the driver, train in a worker, tell in the driver), so TPE sees each study's results
before proposing its next trial.
"""

from __future__ import annotations

import hashlib
import json
import os
import socket
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Callable

from losscli.app.tuning.space import LR, Dim, search_space, suggest
from losscli.app.tuning.trial import TrialTask, make_pruner
from losscli.config.schema import Config
from losscli.engine.runspec import RunSpec
from losscli.errors import RunFailedError, UsageError

TRIAL_SEED_OFFSET = 10_000  # trials train with seeds the final comparison never uses
FINISHED = ("COMPLETE", "PRUNED", "FAIL")
#: a study whose trials are lost (their worker died) this many times in a row is given up. Lost trials
#: do not use the budget, so a configuration that always kills its worker (out of memory) would be asked
#: again forever; each lost trial already had its executor's retries (pool MAX_ATTEMPTS, Ray MAX_RETRIES),
#: so a few in a row are a pattern, not bad luck.
MAX_LOST_IN_A_ROW = 3


@dataclass
class StudyPlan:
    label: str  # the loss as listed
    base: RunSpec  # the loss at its configured parameters, in this setting
    dims: list[Dim]
    study: Any
    history: list = field(default_factory=list)
    lost_in_a_row: int = 0  # trials lost since one last ended otherwise (counted in this run only)

    @property
    def setting(self) -> str:
        return f"noise {self.base.noise}, imbalance {self.base.imbalance}"


def study_seed(sampler_seed: int, study_name: str) -> int:
    """The sampler seed of one study: one per study (equal seeds would make every study start with the
    same random trials), in [0, 2**32) as Optuna's sampler requires (the plain sum passed it: a
    ValueError, exit 1, for a large ``tune.sampler_seed``)."""
    return (sampler_seed + int(hashlib.sha256(study_name.encode()).hexdigest()[:8], 16)) % 2**32


def default_storage(out_dir: Path) -> str:
    return f"sqlite:///{(Path(out_dir) / 'tuning.db').resolve()}"


def _owner() -> str:
    return f"{socket.gethostname()}:{os.getpid()}"


def _study_name(cfg: Config, base: RunSpec, label: str) -> str:
    """Stable across reruns of the same grid (more trials extend the same study)."""
    data = {k: v for k, v in base.resolved().items() if k not in ("seed", "device", "threads")}
    data["loss"] = label
    data["tune"] = {"pruner": cfg.tune.pruner, "lr_factor": cfg.tune.lr_factor}
    key = hashlib.sha256(json.dumps(data, sort_keys=True, default=str).encode()).hexdigest()[:10]
    return f"losscli-{label}-{base.noise}-{base.imbalance}-{key}"


#: an ownerless RUNNING trial in shared storage older than this is taken to be a killed driver's
#: (a live driver records its owner within milliseconds of asking)
STALE_SECONDS = 300


def _release_stale(study, exclusive: bool) -> None:
    """Fail (and mark lost: not counted) trials a killed driver left RUNNING.

    ``exclusive``: the storage is the compare directory's own SQLite file, and this process holds the
    directory's lock, so no trial can be running anywhere else: every RUNNING trial is stale. In
    shared storage only trials owned by a dead process on this host, or ownerless and old, are.
    """
    import datetime

    import optuna

    host = socket.gethostname()
    now = datetime.datetime.now()
    for t in study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.RUNNING,)):
        owner = str(t.user_attrs.get("owner", ""))
        if exclusive:
            stale = True
        elif owner.startswith(host + ":"):
            stale = not _alive(int(owner.rsplit(":", 1)[1]))
        else:
            stale = not owner and t.datetime_start is not None and \
                (now - t.datetime_start).total_seconds() > STALE_SECONDS
        if stale:
            optuna.trial.Trial(study, t._trial_id).set_user_attr("lost", True)
            study.tell(t.number, state=optuna.trial.TrialState.FAIL)


def _alive(pid: int) -> bool:
    if pid == os.getpid():
        return False  # an earlier, interrupted tuning in this process
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        pass
    return True


def _counted(study) -> int:
    """Trials that used the budget: finished ones (not lost) and ones running elsewhere."""
    n = 0
    for t in study.get_trials(deepcopy=False):
        if t.state.name in FINISHED and not t.user_attrs.get("lost"):
            n += 1
        elif t.state.name == "RUNNING":
            n += 1
    return n


def plan_studies(cfg: Config, storage: str) -> list[StudyPlan]:
    import optuna

    optuna.logging.set_verbosity(optuna.logging.WARNING)

    plans = []
    for loss in cfg.loss_specs():
        for noise in cfg.noise_settings():
            for imbalance in cfg.imbalance_settings():
                base = RunSpec.from_config(cfg, loss, seed=TRIAL_SEED_OFFSET, noise=noise, imbalance=imbalance)
                # a weighted sum's info has no parameters of its own (they belong to its parts): lr only
                dims = search_space(loss.info(), cfg.train.lr, cfg.tune.lr_factor)
                if not dims:
                    continue  # nothing to tune (no parameters and a fixed learning rate)
                name = _study_name(cfg, base, loss.label)
                sampler = optuna.samplers.TPESampler(seed=study_seed(cfg.tune.sampler_seed, name),
                                                     n_startup_trials=max(2, cfg.tune.trials // 3))
                try:
                    study = optuna.create_study(study_name=name, storage=storage, direction="maximize",
                                                sampler=sampler, pruner=make_pruner(cfg.tune.pruner, cfg.train.epochs),
                                                load_if_exists=True)
                except Exception as exc:  # noqa: BLE001 - a bad URL, a missing driver, a locked file
                    raise UsageError(f"cannot open tuning storage {storage!r}: {str(exc).splitlines()[0]}; give a "
                                     "valid --storage URL (e.g. sqlite:///tuning.db or postgresql://...)") from None
                _release_stale(study, exclusive=cfg.tune.storage is None)
                plans.append(StudyPlan(loss.label, base, dims, study))
    return plans


def _trial_spec(plan: StudyPlan, params: dict[str, Any], number: int) -> RunSpec:
    from losscli.losses.resolve import resolve_loss

    loss_params = {k: v for k, v in params.items() if k != LR}
    loss = resolve_loss(plan.base.loss, loss_params, for_engine=True)
    train = replace(plan.base.train, lr=float(params.get(LR, plan.base.train.lr)))
    return replace(plan.base, loss=loss, train=train, seed=TRIAL_SEED_OFFSET + number)


def run_tuning(cfg: Config, out_dir: Path, executor, log: Callable[[str], None] | None = None, *,
               progress: bool = False, slots: int = 1) -> dict[str, Any]:
    """Tune every (loss, setting) to ``cfg.tune.trials`` trials; returns ``{(label, noise, imbalance):
    (tuned LossSpec, tuned lr)}`` under ``"best"`` and the report's ``tuning`` section under ``"report"``.

    ``progress``: done / running / pending / failed trials and an ETA on ``log`` (stderr), as the grid
    shows for its runs; ``slots`` is how many tasks the executor runs at once."""
    from losscli.app.compare.progress import GridProgress

    storage = cfg.tune.storage or default_storage(out_dir)
    plans = plan_studies(cfg, storage)
    budget = cfg.tune.trials
    # the trials still to run (a resumed tuning counts only what is left); a wave asks one per study
    left = sum(max(0, budget - _counted(plan.study)) for plan in plans)
    bar = GridProgress(left, min(slots, len(plans)), progress and left > 0, log, unit="trial")
    try:
        _run_waves(cfg, plans, storage, executor, log, bar)
    finally:
        bar.close()
    given_up = [plan for plan in plans if plan.lost_in_a_row >= MAX_LOST_IN_A_ROW]
    if given_up:  # raised after the other studies used their budget: a rerun has only these left to do
        first = given_up[0]
        others = f" (and {len(given_up) - 1} other loss/setting(s))" if len(given_up) > 1 else ""
        raise RunFailedError(f"tuning {first.label} ({first.setting}){others} stopped: its worker process kept dying "
                             f"({MAX_LOST_IN_A_ROW} trials lost in a row; out of memory?); finished trials are kept in "
                             f"the study storage {redact_storage(storage)}; fix it and rerun the same command to resume")
    return _summary(plans, storage, budget)


def _run_waves(cfg: Config, plans: list[StudyPlan], storage: str, executor, log, bar) -> None:
    """Ask, train and tell in waves until every study has used its budget (or is given up)."""
    import optuna

    budget = cfg.tune.trials
    slots = bar.running  # a wave runs at most this many trials at once
    wave_no = 0
    while True:
        wave = []
        for plan in plans:
            if plan.lost_in_a_row >= MAX_LOST_IN_A_ROW or _counted(plan.study) >= budget:
                continue
            trial = plan.study.ask()
            trial.set_user_attr("owner", _owner())
            params = suggest(trial, plan.dims)
            trial.set_user_attr("values", params)  # as trained (rounded); the sampler keeps its own
            wave.append((plan, trial, TrialTask(_trial_spec(plan, params, trial.number), storage,
                                                plan.study.study_name, trial._trial_id, trial.number,
                                                cfg.tune.pruner, plan.label, plan.setting)))
        if not wave:
            break
        wave_no += 1
        if log:
            log(f"tuning wave {wave_no}: {len(wave)} trial(s)")
        # outcomes may come back from another process (a copy of the task): match by trial id
        by_trial = {task.trial_id: (plan, trial) for plan, trial, task in wave}
        outstanding = len(wave)
        for outcome in executor.run([task for _, _, task in wave]):
            plan, trial = by_trial[outcome.task.trial_id]
            plan.lost_in_a_row = plan.lost_in_a_row + 1 if outcome.status == "lost" else 0
            if outcome.status == "ok":
                plan.study.tell(trial, outcome.value)
            elif outcome.status == "pruned":
                plan.study.tell(trial, state=optuna.trial.TrialState.PRUNED)
            else:  # failed (counts: the combination failed) or lost (the worker died: does not count)
                if outcome.status == "lost":
                    trial.set_user_attr("lost", True)
                    if log:
                        log(f"{outcome.task.describe()} lost, not counted: {outcome.error}")
                trial.set_user_attr("error", outcome.error or "")
                plan.study.tell(trial, state=optuna.trial.TrialState.FAIL)
            outstanding -= 1
            bar.running = min(slots, outstanding)  # the next wave starts only when this one has ended
            if outcome.status != "lost":  # a lost trial is asked again: it stays pending
                failed = outcome.status == "failed"
                bar.finished(int(not failed), int(failed), f"{outcome.task.describe()} {outcome.status}",
                             outcome.error if failed else None)


def _summary(plans: list[StudyPlan], storage: str, budget: int) -> dict[str, Any]:
    best: dict[tuple, tuple] = {}
    report: dict[str, Any] = {}
    for plan in plans:
        trials = [t for t in plan.study.get_trials(deepcopy=False) if not t.user_attrs.get("lost")]
        complete = [t for t in trials if t.state.name == "COMPLETE"]
        entry = report.setdefault(plan.label, {"storage": redact_storage(storage), "n_trials": budget, "best_params": {},
                                               "best_value": {}, "n_complete": {}, "n_pruned": {}, "n_failed": {},
                                               "history": {}, "search_space": {}})
        s = plan.setting
        entry["search_space"][s] = {d.name: d.describe() for d in plan.dims}
        entry["n_complete"][s] = len(complete)
        entry["n_pruned"][s] = sum(t.state.name == "PRUNED" for t in trials)
        entry["n_failed"][s] = sum(t.state.name == "FAIL" for t in trials)
        entry["history"][s] = [t.value if t.state.name == "COMPLETE" else None
                               for t in sorted(trials, key=lambda t: t.number)]
        if complete:
            top = max(complete, key=lambda t: t.value)
            values = dict(top.user_attrs.get("values") or top.params)
            entry["best_params"][s] = values
            entry["best_value"][s] = float(top.value)
            spec = _trial_spec(plan, values, 0)
            best[(plan.label, str(plan.base.noise), str(plan.base.imbalance))] = (spec.loss, spec.train.lr)
    return {"best": best, "report": report}


def redact_storage(url: str) -> str:
    """Storage URLs can carry passwords (postgresql://user:secret@host/db): never write them down."""
    if "@" in url and "://" in url:
        scheme, rest = url.split("://", 1)
        return f"{scheme}://***@{rest.split('@', 1)[1]}"
    return url
