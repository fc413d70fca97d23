"""Parse ``--noise`` and ``--imbalance`` specs. Standard library only (no torch).

Noise specs: ``none``, ``sym:RATE``, ``asym:RATE``, ``pair:RATE``, ``instance:RATE`` with
``0 <= RATE <= 1`` (synthetic noise), and real-world noise: ``file:PATH`` (per-sample noisy labels
aligned with the training set: ``.npy``, ``.pt`` or ``.csv``) or a CIFAR-N human label set
(``cifar10n:aggre|rand1|rand2|rand3|worst``, ``cifar100n:noisy``, read from the release's
``CIFAR-10_human.pt`` / ``CIFAR-100_human.pt`` in ``--data-dir``). A file's canonical form carries
its absolute path and content hash (``file:/abs/labels.npy@sha256:0123abcd...``), so a run's identity
(and compare's run keys) change when the file does, and a run read back with a changed file is
refused instead of silently trained on other labels. Imbalance specs: ``none``, ``exp:RATIO``,
``step:RATIO`` with ``RATIO >= 1`` (largest class / smallest class).
"""

from __future__ import annotations

import hashlib
import math
import os
from typing import NamedTuple

from losscli.errors import UsageError

NOISE_KINDS = ("sym", "asym", "pair", "instance")
#: real-world noise: label sets read from files (their rate is measured, not set)
REAL_NOISE_KINDS = ("file", "cifar10n", "cifar100n")
#: CIFAR-N label sets: name -> key in the release's .pt file (aliases after the canonical names)
HUMAN_LABEL_SETS = {
    "cifar10n": {"aggre": "aggre_label", "rand1": "random_label1", "rand2": "random_label2",
                 "rand3": "random_label3", "worst": "worse_label"},
    "cifar100n": {"noisy": "noisy_label"},
}
HUMAN_ALIASES = {"aggregate": "aggre", "random1": "rand1", "random2": "rand2", "random3": "rand3", "worse": "worst"}
IMBALANCE_KINDS = ("exp", "step")

NOISE_FORMS = ("none, sym:RATE, asym:RATE, pair:RATE or instance:RATE with 0 <= RATE <= 1 (e.g. sym:0.4), "
               "file:PATH (.npy/.pt/.csv labels), cifar10n:aggre|rand1|rand2|rand3|worst or cifar100n:noisy")
_HASH = "@sha256:"
IMBALANCE_FORMS = "none, exp:RATIO or step:RATIO with RATIO >= 1 (e.g. exp:100)"


class NoiseSpec(NamedTuple):
    kind: str  # "none" | "sym" | "asym" | "pair" | "instance" | "file" | "cifar10n" | "cifar100n"
    rate: float | None  # synthetic noise's rate; None for real-world noise (measured when applied)
    source: str = ""  # file: the absolute path; cifar10n/cifar100n: the label set (aggre, worst...)
    digest: str = ""  # file: the first 16 hex digits of the file's SHA-256

    @property
    def is_real(self) -> bool:
        return self.kind in REAL_NOISE_KINDS

    def __str__(self) -> str:
        if self.kind == "none":
            return "none"
        if self.kind == "file":
            return f"file:{self.source}{_HASH}{self.digest}"
        if self.is_real:
            return f"{self.kind}:{self.source}"
        return f"{self.kind}:{self.rate:g}"


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
    if not text:  # as an empty --loss: a typo or an unset shell variable, not a choice of clean data
        raise UsageError(f"empty {what} spec; write none for no {what}, or one of: {forms}")
    if text in ("none", "clean"):
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
    """``"sym:0.4"`` -> ``NoiseSpec("sym", 0.4)``; ``"none"`` -> ``NoiseSpec("none", 0.0)``;
    ``"file:labels.npy"`` -> ``NoiseSpec("file", None, "/abs/labels.npy", "<sha256[:16]>")``."""
    if isinstance(spec, NoiseSpec):
        spec = str(spec)
    if isinstance(spec, str) and spec.strip().lower().startswith("file:"):  # a path keeps its case
        return _file_spec(spec.strip()[len("file:"):].strip(), spec)
    kind, value = _split(spec, "noise", NOISE_FORMS)
    if kind in HUMAN_LABEL_SETS:
        sets = HUMAN_LABEL_SETS[kind]
        name = HUMAN_ALIASES.get(value, value)
        if name not in sets:
            raise UsageError(f"bad noise spec {spec!r}: {kind} has label sets {', '.join(sets)}")
        return NoiseSpec(kind, None, name)
    if kind == "none":
        return NoiseSpec("none", 0.0)
    if kind not in NOISE_KINDS:
        raise UsageError(f"bad noise spec {spec!r}: unknown kind {kind!r}; valid forms: {NOISE_FORMS}")
    rate = _number(value, spec, "noise", NOISE_FORMS)
    if not 0.0 <= rate <= 1.0:
        raise UsageError(f"bad noise spec {spec!r}: rate must be in [0, 1]; valid forms: {NOISE_FORMS}")
    return NoiseSpec(kind, rate)


def _file_spec(text: str, spec: object) -> NoiseSpec:
    path, _, wanted = text.partition(_HASH) if _HASH in text else (text, "", "")
    if not path:
        raise UsageError(f"bad noise spec {spec!r}: give the labels file, e.g. file:noisy_labels.npy")
    path = os.path.abspath(os.path.expanduser(path))
    if not path.lower().endswith(NOISE_FILE_SUFFIXES):
        raise UsageError(f"bad noise spec {spec!r}: the labels file must be {', '.join(NOISE_FILE_SUFFIXES)}")
    digest = file_digest(path)
    if wanted and wanted != digest:
        raise UsageError(f"noise file {path} changed since this configuration was written (sha256 {wanted}..., "
                         f"now {digest}...); restore the file, or start the run again with file:{path}")
    return NoiseSpec("file", None, path, digest)


NOISE_FILE_SUFFIXES = (".npy", ".pt", ".pth", ".csv")
_DIGESTS: dict[tuple, str] = {}


def file_digest(path: str) -> str:
    """The first 16 hex digits of the file's SHA-256 (cached per path, size and modification time)."""
    try:
        st = os.stat(path)
    except OSError as exc:
        raise UsageError(f"noise file {path}: {exc.strerror or exc}") from None
    if not os.path.isfile(path):
        raise UsageError(f"noise file {path} is not a file")
    key = (path, st.st_size, st.st_mtime_ns)
    if key not in _DIGESTS:
        h = hashlib.sha256()
        try:
            with open(path, "rb") as fh:
                for chunk in iter(lambda: fh.read(1 << 20), b""):
                    h.update(chunk)
        except OSError as exc:
            raise UsageError(f"cannot read noise file {path}: {exc.strerror or exc}") from None
        _DIGESTS[key] = h.hexdigest()[:16]
    return _DIGESTS[key]


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
