"""Reading files that could carry code, without running it.

Python pickles (CIFAR's batches, torch ``.pt`` files) can execute arbitrary code when loaded.
``load_torch`` uses torch's weights-only loader (tensors and plain containers only) and replaces
its advice to retry with ``weights_only=False`` (which would run the code) with our own line.
``load_numpy_pickle`` reads a pickle through an unpickler that can build nothing but dicts,
lists, tuples, strings, bytes, numbers and numpy arrays; anything else is a one-line error.
"""

from __future__ import annotations

import io
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
    ("builtins", "bytearray"),
    # protocol 5 pickles an array's bytes in-band as a bytearray, rebuilt by _frombuffer(buf, dtype, shape, order)
    ("numpy.core.numeric", "_frombuffer"), ("numpy._core.numeric", "_frombuffer"),
}


class _DataOnlyUnpickler(pickle._Unpickler):  # the Python unpickler: its BUILD can be checked (below)
    def __init__(self, fh, path: str):
        super().__init__(fh, encoding="latin1")
        self.path = path

    def find_class(self, module: str, name: str):
        if name == "encode" and module in ("codecs", "_codecs"):  # bytes in a protocol 0-2 pickle
            return _latin1_encode
        if (module, name) in _ALLOWED:
            return super().find_class(module, name)
        raise UsageError(f"{self.path} contains a pickled {module}.{name} object; losscli reads only arrays, "
                         "lists, strings and numbers from data files (never code). Use the original dataset files")

    def load_build(self) -> None:
        """BUILD, a numpy dtype's state checked first: numpy applies it as given, so a damaged flags
        field (a uint8 dtype "holding object references", or pickled as a list) made arrays that
        numpy could not free: "Exception ignored in: None ... RuntimeError: Internal error,
        `get_clear_loop` not set for the DType 'uint8'" printed (sys.unraisablehook) before our line."""
        if len(self.stack) >= 2:
            _check_dtype_state(self.stack[-2], self.stack[-1])
            _check_array_state(self.stack[-2], self.stack[-1])
        super().load_build()

    dispatch = dict(pickle._Unpickler.dispatch)
    dispatch[pickle.BUILD[0]] = load_build


def _latin1_encode(text: Any, encoding: Any = "utf-8", errors: Any = "strict") -> bytes:
    """``codecs.encode`` as picklers use it for bytes (``encode(text, 'latin1')``); any other codec
    (a damaged name: "unknown encoding: lathn1" escaped as LookupError) is not data."""
    if not isinstance(text, str) or encoding not in ("latin1", "latin-1") or errors != "strict":
        raise ValueError("bytes pickled with an unexpected codec")
    return text.encode("latin1")


def _check_dtype_state(inst: Any, state: Any) -> None:
    """ValueError unless ``state`` is the state numpy itself pickles for the plain dtype ``inst`` (a
    fresh copy: numbers, bytes, text, objects): no subarray, no fields, ``inst``'s own flags, item
    size and alignment."""
    import numpy as np

    if not isinstance(inst, np.dtype):
        return
    if not isinstance(state, tuple) or len(state) not in (8, 9):
        raise ValueError("damaged numpy dtype state")
    if inst.kind not in _DTYPE_KINDS:  # a timedelta64 dtype given an 8-tuple crashed numpy (segfault)
        raise ValueError(f"numpy dtype {inst} (data files hold numbers, text, bytes or objects)")
    subarray, names, fields, sizes, flags = state[2], state[3], state[4], state[5:7], state[7]
    if subarray is not None or names is not None or fields is not None:
        raise ValueError("structured or subarray numpy dtype (data files hold plain arrays)")
    if flags != inst.flags:
        raise ValueError(f"numpy dtype flags {flags!r}, not {inst.flags} ({inst})")
    if sizes != ((inst.itemsize, inst.alignment) if inst.kind in "SU" else (-1, -1)):
        raise ValueError(f"numpy dtype sizes {sizes!r} ({inst})")


#: numpy dtype kinds a data file may hold: bool, signed, unsigned, float, complex, bytes, text, object
_DTYPE_KINDS = "biufcSUO"


def _check_array_state(inst: Any, state: Any) -> None:
    """ValueError unless an object array's pickled items are as many as its shape holds: numpy's
    ``ndarray.__setstate__`` read past a shorter list and crashed the process (segmentation fault)."""
    import math

    import numpy as np

    if not isinstance(inst, np.ndarray) or not isinstance(state, tuple) or len(state) != 5:
        return
    shape, dtype, items = state[1], state[2], state[4]
    if not isinstance(dtype, np.dtype) or not dtype.hasobject:
        return  # numpy checks a byte buffer's length against the shape itself
    if (not isinstance(shape, tuple) or not all(type(n) is int and n >= 0 for n in shape)
            or not isinstance(items, list) or len(items) != math.prod(shape)):
        raise ValueError("an object array's items do not match its shape")


def load_numpy_pickle(path: str | Path) -> Any:
    """A pickle of plain data and numpy arrays (e.g. a CIFAR batch); refuses anything else.

    The opcodes are checked first (:func:`_check_opcodes`), so a damaged length field never reaches
    CPython's unpickler: there, a ``BYTEARRAY8`` (how protocol 5 stores a numpy array's bytes) asking
    for more memory than exists fails to allocate, and CPython 3.11 then frees a half-built bytearray
    whose export count is leftover heap memory; its destructor *prints* "SystemError: deallocated
    bytearray object has exported buffers" (``PyErr_Print``) before our own line."""
    try:
        with open(path, "rb") as fh:
            data = fh.read()
        _check_opcodes(data)
        with warnings.catch_warnings():  # numpy warning about a damaged argument (dtype(align='8')): refused
            warnings.simplefilter("error")
            return _DataOnlyUnpickler(io.BytesIO(data), str(path)).load()
    except UsageError:
        raise
    # a damaged length field asks for exabytes (MemoryError, OverflowError) or names a memo entry
    # that was never stored (KeyError): the file is unreadable, not the machine short of memory.
    # SystemError: numpy's C code given a damaged state, e.g. dtype.__setstate__ of a 9-tuple whose
    # flags are None "returned NULL without setting an exception" (numpy 2.4); SyntaxError: numpy
    # parses a dtype string such as 'u1,(' with ast.literal_eval; both escaped as exit 1
    except (pickle.UnpicklingError, EOFError, ValueError, TypeError, AttributeError, IndexError, KeyError,
            MemoryError, OverflowError, RecursionError, SystemError, SyntaxError, Warning) as exc:
        raise UsageError(f"{path} is not a readable data pickle ({type(exc).__name__}); re-download or "
                         "replace the file") from None


#: opcodes that store into the memo at an index they name (protocols 0-3; 4 and 5 use MEMOIZE)
_PUT_OPS = {"PUT", "BINPUT", "LONG_BINPUT"}


def _check_opcodes(data: bytes) -> None:
    """Walk the pickle's opcodes without building anything (``pickletools.genops``): a counted length
    (``BYTEARRAY8``, ``BINBYTES8``, ``FRAME``, strings) that runs past the end of the data, an unknown
    opcode or a missing STOP raise ``ValueError``. A memo index beyond the opcodes so far is refused
    too: picklers number the memo from 0, and a damaged ``LONG_BINPUT`` of 680 million made the
    unpickler grow its memo table to gigabytes (20 s) before failing."""
    import pickletools

    for count, (op, arg, _) in enumerate(pickletools.genops(data)):
        if op.name in _PUT_OPS and arg > count:
            raise ValueError(f"memo index {arg} at opcode {count}")
        if op.name == "STOP":
            return


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
