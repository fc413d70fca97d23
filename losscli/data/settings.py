"""Parse ``--noise`` and ``--imbalance`` specs. Standard library only (no torch).

Noise specs: ``none``, ``sym:RATE``, ``asym:RATE``, ``pair:RATE``, ``instance:RATE`` with
``0 <= RATE <= 1``. Imbalance specs: ``none``, ``exp:RATIO``, ``step:RATIO`` with
``RATIO >= 1`` (largest class / smallest class).
"""

from __future__ import annotations

import math
from typing import NamedTuple

from losscli.errors import UsageError

NOISE_KINDS = ("sym", "asym", "pair", "instance")
IMBALANCE_KINDS = ("exp", "step")

NOISE_FORMS = "none, sym:RATE, asym:RATE, pair:RATE or instance:RATE with 0 <= RATE <= 1 (e.g. sym:0.4)"
IMBALANCE_FORMS = "none, exp:RATIO or step:RATIO with RATIO >= 1 (e.g. exp:100)"


class NoiseSpec(NamedTuple):
    kind: str  # "none" | "sym" | "asym" | "pair" | "instance"
    rate: float

    def __str__(self) -> str:
        return "none" if self.kind == "none" else f"{self.kind}:{self.rate:g}"


class ImbalanceSpec(NamedTuple):
    kind: str  # "none" | "exp" | "step"
    ratio: float

    def __str__(self) -> str:
        return "none" if self.kind == "none" else f"{self.kind}:{self.ratio:g}"


def _split(spec: object, what: str, forms: str) -> tuple[str, str | None]:
    if isinstance(spec, (NoiseSpec, ImbalanceSpec)):
        spec = str(spec)
    if spec is None:
        return "none", None
    if not isinstance(spec, str):
        raise UsageError(f"bad {what} spec {spec!r}; valid forms: {forms}")
    text = spec.strip().lower()
    if text in ("", "none", "clean"):
        return "none", None
    if ":" not in text:
        raise UsageError(f"bad {what} spec {spec!r}; valid forms: {forms}")
    kind, _, value = text.partition(":")
    return kind.strip(), value.strip()


def _number(value: str, spec: object, what: str, forms: str) -> float:
    try:
        x = float(value)
    except ValueError:
        raise UsageError(f"bad {what} spec {spec!r}: {value!r} is not a number; valid forms: {forms}") from None
    if math.isnan(x) or math.isinf(x):
        raise UsageError(f"bad {what} spec {spec!r}: {value!r} is not finite; valid forms: {forms}")
    return x


def parse_noise_spec(spec: str | None) -> NoiseSpec:
    """``"sym:0.4"`` -> ``NoiseSpec("sym", 0.4)``; ``"none"`` -> ``NoiseSpec("none", 0.0)``."""
    kind, value = _split(spec, "noise", NOISE_FORMS)
    if kind == "none":
        return NoiseSpec("none", 0.0)
    if kind not in NOISE_KINDS:
        raise UsageError(f"bad noise spec {spec!r}: unknown kind {kind!r}; valid forms: {NOISE_FORMS}")
    rate = _number(value, spec, "noise", NOISE_FORMS)
    if not 0.0 <= rate <= 1.0:
        raise UsageError(f"bad noise spec {spec!r}: rate must be in [0, 1]; valid forms: {NOISE_FORMS}")
    return NoiseSpec(kind, rate)


def parse_imbalance_spec(spec: str | None) -> ImbalanceSpec:
    """``"exp:100"`` -> ``ImbalanceSpec("exp", 100.0)``; ``"none"`` -> ``ImbalanceSpec("none", 1.0)``."""
    kind, value = _split(spec, "imbalance", IMBALANCE_FORMS)
    if kind == "none":
        return ImbalanceSpec("none", 1.0)
    if kind not in IMBALANCE_KINDS:
        raise UsageError(f"bad imbalance spec {spec!r}: unknown kind {kind!r}; valid forms: {IMBALANCE_FORMS}")
    ratio = _number(value, spec, "imbalance", IMBALANCE_FORMS)
    if ratio < 1.0:
        raise UsageError(f"bad imbalance spec {spec!r}: ratio must be >= 1; valid forms: {IMBALANCE_FORMS}")
    return ImbalanceSpec(kind, ratio)
