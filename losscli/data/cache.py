"""Cache directory and atomic file writes."""

from __future__ import annotations

import os
import tempfile
from typing import Any

import numpy as np


def cache_dir() -> str:
    """``$LOSSCLI_CACHE`` or ``~/.cache/losscli`` (``$XDG_CACHE_HOME`` respected)."""
    env = os.environ.get("LOSSCLI_CACHE")
    if env:
        return os.path.expanduser(env)
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return os.path.join(base, "losscli")


def default_data_dir() -> str:
    """``$LOSSCLI_DATA_DIR`` or ``<cache>/data``: where torchvision data is looked for by default."""
    return os.path.expanduser(os.environ.get("LOSSCLI_DATA_DIR") or os.path.join(cache_dir(), "data"))


def save_npz_atomic(path: str, **arrays: Any) -> None:
    """Write ``arrays`` to ``path`` via a temp file in the same directory and ``os.replace``."""
    directory = os.path.dirname(os.path.abspath(path))
    os.makedirs(directory, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=".tmp-", suffix=".npz", dir=directory)
    try:
        with os.fdopen(fd, "wb") as f:
            np.savez(f, **arrays)
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise
