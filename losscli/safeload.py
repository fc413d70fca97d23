"""Reading files that could carry code, without running it.

Python pickles (CIFAR's batches, torch ``.pt`` files) can execute arbitrary code when loaded.
``load_torch`` uses torch's weights-only loader (tensors and plain containers only) and replaces
its advice to retry with ``weights_only=False`` (which would run the code) with our own line.
``load_numpy_pickle`` reads a pickle through an unpickler that can build nothing but dicts,
lists, tuples, strings, bytes, numbers and numpy arrays; anything else is a one-line error.
"""

from __future__ import annotations

import pickle
import warnings
from pathlib import Path
from typing import Any

from losscli.errors import UsageError

# What a numpy array's pickle needs (numpy 1.x and 2.x spell the module differently).
_ALLOWED = {
    ("numpy.core.multiarray", "_reconstruct"), ("numpy._core.multiarray", "_reconstruct"),
    ("numpy.core.multiarray", "scalar"), ("numpy._core.multiarray", "scalar"),
    ("numpy", "ndarray"), ("numpy", "dtype"),
    ("codecs", "encode"),  # how Python 2 pickles (CIFAR's) store byte strings
    ("builtins", "bytearray"),
}


class _DataOnlyUnpickler(pickle.Unpickler):
    def __init__(self, fh, path: str):
        super().__init__(fh, encoding="latin1")
        self.path = path

    def find_class(self, module: str, name: str):
        if (module, name) in _ALLOWED:
            return super().find_class(module, name)
        raise UsageError(f"{self.path} contains a pickled {module}.{name} object; losscli reads only arrays, "
                         "lists, strings and numbers from data files (never code). Use the original dataset files")


def load_numpy_pickle(path: str | Path) -> Any:
    """A pickle of plain data and numpy arrays (e.g. a CIFAR batch); refuses anything else."""
    try:
        with open(path, "rb") as fh:
            return _DataOnlyUnpickler(fh, str(path)).load()
    except UsageError:
        raise
    # a damaged length field asks for exabytes (MemoryError, OverflowError) or names a memo entry
    # that was never stored (KeyError): the file is unreadable, not the machine short of memory
    except (pickle.UnpicklingError, EOFError, ValueError, TypeError, AttributeError, IndexError, KeyError,
            MemoryError, OverflowError, RecursionError) as exc:
        raise UsageError(f"{path} is not a readable data pickle ({type(exc).__name__}); re-download or "
                         "replace the file") from None


def load_torch(path: str | Path, what: str) -> Any:
    """``torch.load(path, weights_only=True)`` on the CPU, with one clear line when it cannot be read."""
    import torch

    path = Path(path)
    if not path.is_file():
        raise UsageError(f"{path} not found ({what})")
    if path.stat().st_size == 0:
        raise UsageError(f"{path} is empty ({what})")
    try:
        with warnings.catch_warnings():  # torch warns (several lines) about pickle protocols of files it then refuses
            warnings.simplefilter("ignore")
            return torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # noqa: BLE001 - every unreadable file is the same problem for the user
        text = str(exc)
        if "weights_only" in text or "Unsupported global" in text or "Weights only load failed" in text:
            raise UsageError(f"{path} holds Python objects besides tensors and plain data ({what}); losscli never "
                             "loads code from files: save tensors, lists and dicts only") from None
        raise UsageError(f"cannot read {path} ({what}: {_first_sentence(text) or type(exc).__name__})") from None


def _first_sentence(text: str, limit: int = 160) -> str:
    """The first sentence of an error's first line (torch's zip errors go on with advice about miniz
    internals that a one-line message cut mid-word), at most ``limit`` characters."""
    line = (text.strip().splitlines() or [""])[0]
    head, dot, _ = line.partition(". ")
    sentence = head + dot.strip() if dot else line
    return sentence if len(sentence) <= limit else sentence[:limit - 3].rstrip() + "..."
