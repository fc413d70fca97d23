"""One tuning trial as an executor task: train on the training split, score on the validation
split (the test split is removed before training: ``engine.trainer.train_trial``), report each
epoch's validation accuracy to the Optuna study so its pruner can stop a hopeless trial early."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

from losscli.engine.runspec import RunSpec


@dataclass
class TrialOutcome:
    task: "TrialTask"
    status: str  # ok | pruned | failed | lost (the worker died: not the trial's fault)
    value: float | None = None  # the objective: last-epoch validation accuracy
    error: str | None = None


def make_pruner(kind: str, epochs: int):
    import optuna

    if kind == "halving":
        return optuna.pruners.SuccessiveHalvingPruner(min_resource=max(1, epochs // 10), reduction_factor=3)
    if kind == "hyperband":
        return optuna.pruners.HyperbandPruner(min_resource=max(1, epochs // 10), max_resource=epochs,
                                              reduction_factor=3)
    return optuna.pruners.NopPruner()


@dataclass
class TrialTask:
    spec: RunSpec  # the loss with this trial's parameters, the trial's learning rate and seed
    storage: str
    study_name: str
    trial_id: int
    trial_number: int
    pruner: str  # halving | hyperband | none
    label: str  # the loss as listed (for progress and the report)
    setting: str

    @property
    def size(self) -> int:
        return 1

    def describe(self) -> str:
        return f"tuning {self.label} {self.setting} trial {self.trial_number}"

    def execute(self, data_cache: dict | None = None, log: Callable[[str], None] | None = None) -> TrialOutcome:
        import optuna

        from losscli.engine.trainer import StopRun, train_trial

        optuna.logging.set_verbosity(optuna.logging.WARNING)
        study = optuna.load_study(study_name=self.study_name, storage=self.storage,
                                  pruner=make_pruner(self.pruner, self.spec.train.epochs))
        trial = optuna.trial.Trial(study, self.trial_id)

        def on_epoch(epoch: int, val_accuracy: float) -> None:
            trial.report(val_accuracy, step=epoch)
            if trial.should_prune():
                raise StopRun

        try:
            result = train_trial(self.spec, data_cache=data_cache, on_epoch=on_epoch)
        except OSError:
            raise
        except Exception as exc:  # noqa: BLE001 - the trial's own failure (a bad combination): recorded
            return TrialOutcome(self, "failed", error=f"{type(exc).__name__}: {exc}")
        if result["status"] == "pruned":
            return TrialOutcome(self, "pruned")
        if result["status"] != "ok" or not result["history"]:
            return TrialOutcome(self, "failed", error=result.get("error") or "no epoch finished")
        return TrialOutcome(self, "ok", value=float(result["history"][-1]["val_accuracy"]))

    def lost(self, reason: str) -> TrialOutcome:
        return TrialOutcome(self, "lost", error=reason)

