"""Where downloaded and generated data is cached, and the atomic ``.npz`` writer for the cache."""

from __future__ import annotations

import os
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
    """Write ``arrays`` as an ``.npz`` file atomically (serialised in memory, then written and renamed)."""
    import io

    from losscli.atomic import atomic_write_bytes

    buf = io.BytesIO()
    np.savez(buf, **arrays)
    atomic_write_bytes(path, buf.getvalue())


def try_save_cache(path: str, **arrays: Any) -> bool:
    """:func:`save_npz_atomic`, but a cache that cannot be written (read-only, full) is not fatal:
    the data was made in memory and the next run makes it again. True when it was saved."""
    try:
        save_npz_atomic(path, **arrays)
        return True
    except OSError:
        return False
