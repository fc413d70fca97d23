"""A run's end-of-epoch checkpoint, so a killed or preempted ``train`` continues exactly where it stopped.

``RUN_DIR/checkpoint.pt`` is rewritten atomically after every epoch (a kill mid-write leaves the
previous one) and removed when the run finishes. It holds everything the rest of the run depends
on: model and loss state (buffers of stateful losses included), optimizer and learning-rate
schedule, every random stream (the data order and OKO's set generators, torch's global CPU and
CUDA generators used by dropout and stochastic losses, Python's and numpy's), and the recorder's
history, best epoch and timing. Restored, the remaining epochs compute the same numbers an
uninterrupted run computes (on the same device and thread count; a test checks it on CPU).
The run's key is stored too: a checkpoint is only ever resumed by the configuration that wrote it.
"""

from __future__ import annotations

import random
from pathlib import Path
from typing import Any

import numpy as np
import torch

from losscli.atomic import atomic_torch_save
from losscli.errors import UsageError

CHECKPOINT = "checkpoint.pt"
SCHEMA = "losscli/checkpoint/v1"


def path(run_dir: Path) -> Path:
    return Path(run_dir) / CHECKPOINT


def _rng_state() -> dict[str, Any]:
    kind, keys, pos, has_gauss, cached = np.random.get_state()
    state: dict[str, Any] = {
        "torch": torch.get_rng_state(),
        "python": random.getstate(),
        "numpy": {"keys": torch.from_numpy(np.asarray(keys, dtype=np.int64)), "pos": int(pos),
                  "has_gauss": int(has_gauss), "cached": float(cached)},
    }
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def _set_rng_state(state: dict[str, Any]) -> None:
    torch.set_rng_state(state["torch"])
    random.setstate(_tuples(state["python"]))
    n = state["numpy"]
    np.random.set_state(("MT19937", n["keys"].numpy().astype(np.uint32), n["pos"], n["has_gauss"], n["cached"]))
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def _tuples(x: Any) -> Any:
    """``random.setstate`` wants the tuples ``getstate`` gave (the loader may hand back lists)."""
    return tuple(_tuples(v) for v in x) if isinstance(x, (list, tuple)) else x


def save(run_dir: Path, *, key: str, epoch: int, model: torch.nn.Module, loss_fn: torch.nn.Module,
         optimizer: torch.optim.Optimizer, scheduler: Any, generators: dict[str, torch.Generator],
         recorder: dict[str, Any]) -> None:
    """Write the state after ``epoch`` (1-based) atomically."""
    state = {
        "schema": SCHEMA, "run_key": key, "epoch": int(epoch),
        "model": {k: v.detach().cpu() for k, v in model.state_dict().items()},
        "loss": {k: v.detach().cpu() for k, v in loss_fn.state_dict().items()},
        "optimizer": optimizer.state_dict(), "scheduler": scheduler.state_dict(),
        "generators": {k: g.get_state() for k, g in generators.items()},
        "rng": _rng_state(), "recorder": recorder,
    }
    atomic_torch_save(state, path(run_dir))


def load(run_dir: Path, key: str) -> dict[str, Any] | None:
    """The checkpoint in ``run_dir`` (None when there is none); one line when it cannot be used."""
    from losscli.safeload import load_torch

    p = path(run_dir)
    if not p.is_file():
        return None
    try:
        state = load_torch(p, "the run's checkpoint")
    except UsageError as exc:
        raise UsageError(f"{exc}; delete it to start the run again (or pass --overwrite)") from None
    if not isinstance(state, dict) or state.get("schema") != SCHEMA:
        raise UsageError(f"{p} is not a losscli checkpoint; delete it to start the run again (or pass --overwrite)")
    if state.get("run_key") != key:
        raise UsageError(f"{p} belongs to another configuration of this run (key {state.get('run_key')}, now {key}); "
                         "give the options it was started with, or --overwrite to start again")
    return state


def restore(state: dict[str, Any], *, model: torch.nn.Module, loss_fn: torch.nn.Module,
            optimizer: torch.optim.Optimizer, scheduler: Any, generators: dict[str, torch.Generator]) -> int:
    """Load ``state`` into the run's objects (moved to their devices); returns the epoch it was taken after."""
    model.load_state_dict(state["model"])
    if state["loss"]:
        loss_fn.load_state_dict(state["loss"], strict=False)
    optimizer.load_state_dict(state["optimizer"])
    scheduler.load_state_dict(state["scheduler"])
    for name, g in generators.items():
        g.set_state(state["generators"][name])
    _set_rng_state(state["rng"])
    return int(state["epoch"])


def remove(run_dir: Path) -> None:
    path(run_dir).unlink(missing_ok=True)
