"""What ``compare --tune`` searches for a loss: its registered hyperparameters and the learning rate.

From each ``Param``: its ``search`` override when the registry gives one, else a range derived from
the default and the valid range: a finite range as is (log scale when it spans two decades or
more), a half-open one as [default / 10, default * 10] on a log scale (clipped to the valid range),
integers likewise. Parameters that are not numbers (modes, lists) or have no default are not tuned.
The learning rate: [lr / f, lr * f], log scale.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

LR = "lr"  # the search dimension of the learning rate (a loss parameter of that name would clash)


@dataclass(frozen=True)
class Dim:
    name: str
    kind: str  # float | int | categorical
    low: float = 0.0
    high: float = 0.0
    log: bool = False
    choices: tuple = ()

    def describe(self) -> str:
        if self.kind == "categorical":
            return "{" + ", ".join(map(str, self.choices)) + "}"
        return f"[{self.low:g}, {self.high:g}]" + (" log" if self.log else "")


def _clip(value: float, p) -> float:
    if p.low is not None and value < p.low:
        value = p.low
    if p.high is not None and value > p.high:
        value = p.high
    return value


def _param_dim(p) -> Dim | None:
    if p.search is False or p.kind not in ("float", "int") or p.default is None:
        return None
    if isinstance(p.search, list):
        return Dim(p.name, "categorical", choices=tuple(p.search))
    if isinstance(p.search, tuple):
        low, high = float(p.search[0]), float(p.search[1])
        return Dim(p.name, p.kind, low, high, log=len(p.search) > 2 and p.search[2] == "log")
    default = float(p.default)
    if p.low is not None and p.high is not None:
        low, high = float(p.low), float(p.high)
    elif default > 0:
        low, high = _clip(default / 10, p), _clip(default * 10, p)
    else:
        return None  # a zero or negative default with an open range: no scale to search on
    log = low > 0 and high / low >= 100  # spans two decades (judged on the declared range)
    if p.low_open and low == p.low:  # open bounds: stay strictly inside
        low = low + 1e-3 * (high - low)
    if p.high_open and high == p.high:
        high = high - 1e-3 * (high - low)
    if p.kind == "int":
        low, high = math.ceil(low), math.floor(high)
    if not high > low:
        return None
    return Dim(p.name, p.kind, low, high, log)


def search_space(info, lr: float, lr_factor: float) -> list[Dim]:
    """The dimensions tuned for the loss described by ``info`` (a ``LossInfo``), learning rate last."""
    dims = [d for d in (_param_dim(p) for p in info.params) if d is not None]
    if lr_factor > 1:
        from losscli.config.validate import MAX_LR

        # within train.lr's own range: a trial above it would be refused by the trainer's validation
        dims.append(Dim(LR, "float", lr / lr_factor, min(lr * lr_factor, MAX_LR), log=True))
    return dims


def suggest(trial, dims: list[Dim]) -> dict[str, Any]:
    """Ask an Optuna trial for a value of every dimension."""
    out: dict[str, Any] = {}
    for d in dims:
        if d.kind == "categorical":
            out[d.name] = trial.suggest_categorical(d.name, list(d.choices))
        elif d.kind == "int":
            out[d.name] = trial.suggest_int(d.name, int(d.low), int(d.high), log=d.log)
        else:  # 4 significant digits: readable labels, and finer steps do not matter to a loss
            out[d.name] = min(max(float(f"{trial.suggest_float(d.name, d.low, d.high, log=d.log):.4g}"), d.low), d.high)
    return out
