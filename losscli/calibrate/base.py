"""Calibrator base class and registry.

Contract: ``fit(val_logits, val_labels) -> self`` (validation split only);
``transform(logits) -> [N, C]`` float64 calibrated *logits*: ``softmax(transform(z))`` are the
calibrated probabilities (methods that produce probabilities return their logarithm);
``state_dict()`` / ``load_state_dict()`` hold only tensors, strings, ints and floats, so a
saved calibrator loads with ``torch.load(weights_only=True)``; ``params()`` is a small
YAML-safe summary for reports (e.g. ``{"temperature": 1.7}``).

Adding a calibrator: subclass :class:`Calibrator`, implement ``_fit``, ``_transform``,
``_state``/``_load_state`` and ``params``, and decorate with ``@CALIBRATORS.register("name")``.
"""

from __future__ import annotations

import contextlib
from typing import Any, Iterator

import torch

from losscli.errors import UsageError
from losscli.metrics.functional import check_labels, check_scores, looks_like_probabilities
from losscli.registry import Registry

CALIBRATORS: Registry[type["Calibrator"]] = Registry("calibrator")

PROBS_MESSAGE = (
    "these look like probabilities, pass logits (or log-probabilities): every row is non-negative and sums to 1"
)


def check_logits(logits: Any, name: str = "logits") -> torch.Tensor:
    """Validate ``[N, C]`` logits, reject probability inputs, return float64."""
    z = check_scores(logits, name)
    if looks_like_probabilities(z):
        raise UsageError(f"{name}: {PROBS_MESSAGE}")
    return z


@contextlib.contextmanager
def small_problem_threads(numel: int, limit: int = 4_000_000) -> Iterator[None]:
    """Run tiny fits single-threaded (restored afterwards): for a few thousand rows the
    intra-op thread hand-off costs more than the arithmetic, badly so on a loaded machine."""
    if numel >= limit or torch.get_num_threads() == 1:
        yield
        return
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(before)


class Calibrator:
    """Base class of post-hoc calibrators (see the module docstring for the contract)."""

    name: str = "base"
    accuracy_preserving: bool = False

    def __init__(self, **hparams: Any):
        self.hparams: dict[str, Any] = dict(hparams)
        self.n_classes: int | None = None

    # -- public API -------------------------------------------------------------------
    @property
    def fitted(self) -> bool:
        return self.n_classes is not None

    def fit(self, val_logits: Any, val_labels: Any) -> "Calibrator":
        z = check_logits(val_logits, "val_logits")
        y = check_labels(val_labels, z.shape[0], z.shape[1], "val_labels")
        with small_problem_threads(z.numel()):
            self._fit(z, y)
        self.n_classes = int(z.shape[1])
        return self

    def transform(self, logits: Any) -> torch.Tensor:
        """Calibrated logits ``[N, C]`` (float64); softmax gives calibrated probabilities."""
        if not self.fitted:
            raise UsageError(f"calibrator {self.name!r} is not fitted; call fit() or load_state_dict() first")
        z = check_logits(logits)
        if z.shape[1] != self.n_classes:
            raise UsageError(f"calibrator {self.name!r} was fitted on {self.n_classes} classes, got {z.shape[1]}")
        return self._transform(z)

    __call__ = transform

    def predict_proba(self, logits: Any) -> torch.Tensor:
        return torch.softmax(self.transform(logits), dim=1)

    def params(self) -> dict[str, Any]:
        return {}

    def state_dict(self) -> dict[str, Any]:
        if not self.fitted:
            raise UsageError(f"calibrator {self.name!r} is not fitted")
        return {
            "method": self.name,
            "n_classes": int(self.n_classes),
            "hparams": dict(self.hparams),
            "tensors": {k: v.detach().cpu() for k, v in self._state().items()},
        }

    def load_state_dict(self, state: dict[str, Any]) -> "Calibrator":
        try:
            method = state["method"]
            n_classes = int(state["n_classes"])
            tensors = state["tensors"]
        except (KeyError, TypeError) as exc:
            raise UsageError(f"not a calibrator state dict (missing {exc})") from None
        if method != self.name:
            raise UsageError(f"state dict is for calibrator {method!r}, not {self.name!r}")
        self.hparams.update(state.get("hparams", {}))
        self._load_state(tensors)
        self.n_classes = n_classes
        return self

    def __repr__(self) -> str:
        extra = ", ".join(f"{k}={v!r}" for k, v in (self.params() if self.fitted else self.hparams).items())
        return f"{type(self).__name__}({extra})"

    # -- to implement -----------------------------------------------------------------
    def _fit(self, z: torch.Tensor, y: torch.Tensor) -> None:
        raise NotImplementedError

    def _transform(self, z: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def _state(self) -> dict[str, torch.Tensor]:
        raise NotImplementedError

    def _load_state(self, tensors: dict[str, torch.Tensor]) -> None:
        raise NotImplementedError


def build_calibrator(name: str, **hparams: Any) -> Calibrator:
    """A fresh (unfitted) calibrator by registered name or alias."""
    return CALIBRATORS.get(name)(**hparams)
