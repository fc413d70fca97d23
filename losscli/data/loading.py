"""``load_dataset``: resolve a dataset name to its source and load it.

Names: a registered dataset (``mnist1d``, ``synthetic``, ``cifar10``...), ``hf:<name-or-path>``
for Hugging Face datasets, ``folder:<dir>`` for class folders of images, or a path ending in
``.npz`` / ``.pt`` / ``.csv`` / ``.parquet``.
"""

from __future__ import annotations

import os
from typing import Any

from losscli.data.bundle import DataBundle
from losscli.data.registry import DATASETS, resolve_options
from losscli.errors import UsageError

#: sources named ``<prefix>:<path>``
PATH_SOURCES = ("hf", "folder")


def resolve_name(name: str) -> tuple[str, str]:
    """``(source, path)``: ``("hf", "imdb")`` for ``hf:imdb``, ``("file", "x.npz")``, ``("mnist1d", "")``."""
    from losscli.data import register_sources

    register_sources()
    if not isinstance(name, str) or not name.strip():
        raise UsageError(f"dataset name must be a non-empty string, got {name!r}")
    name = name.strip()
    for prefix in PATH_SOURCES:
        if name.lower().startswith(prefix + ":"):
            return prefix, name[len(prefix) + 1:].strip()
    from losscli.data.src_files import SUFFIXES

    if name.lower().endswith(SUFFIXES):
        return "file", name
    if name.lower() in ("file", *PATH_SOURCES):
        raise UsageError(f"dataset {name!r} needs a path: write hf:<name-or-path>, folder:<dir> or a path ending in "
                         ".npz/.pt/.csv/.parquet")
    if name not in DATASETS and os.path.isdir(os.path.expanduser(name)):
        raise UsageError(f"dataset {name!r} is a directory: write folder:{name} for class folders of images, or "
                         f"hf:{name} for a Hugging Face dataset (save_to_disk, parquet/csv files)")
    return DATASETS.canonical(name), ""


def load_dataset(
    name: str,
    *,
    data_dir: str | None = None,
    download: bool = False,
    val_fraction: float = 0.1,
    split_seed: int = 0,
    options: dict[str, Any] | None = None,
) -> DataBundle:
    """Load ``name`` as a :class:`DataBundle` of CPU tensors (deterministic given ``split_seed``)."""
    if not 0.0 <= float(val_fraction) < 1.0:
        raise UsageError(f"val_fraction must be in [0, 1), got {val_fraction!r}")
    from losscli.data import register_sources

    register_sources()
    source, path = resolve_name(name)
    entry = DATASETS.entry(source)
    opts = resolve_options(name if path else source, entry.meta.get("options", {}), options)
    kwargs: dict[str, Any] = dict(data_dir=data_dir, download=bool(download), val_fraction=float(val_fraction),
                                  split_seed=int(split_seed), options=opts)
    if path or source in ("file", *PATH_SOURCES):
        kwargs["path"] = path
    bundle = entry.obj(**kwargs)
    bundle.info.setdefault("options", {k: v for k, v in opts.items()})
    bundle.info["split_seed"] = int(split_seed)
    return bundle
