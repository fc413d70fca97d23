"""Your own images in class folders (torchvision's ``ImageFolder`` layout): ``folder:PATH``.

    PATH/cat/001.png, PATH/dog/x.jpg, ...                      one pool: test (and val) carved
    PATH/train/cat/..., PATH/test/cat/... [, PATH/val/cat/...]  the splits as given

Classes are the folder names in sorted order (class ``i`` is the ``i``-th, as ``ImageFolder``
numbers them); files are those with torchvision's image extensions, read with PIL through
torchvision's loader, offline. Images become RGB, or grayscale when every one is (option
``grayscale`` forces either), and are resized to option ``size`` (``64`` or ``[H, W]``) when given;
without it they must all share one size. Like the other image sources they are scaled to [0, 1]
and normalised per channel with training statistics (option ``normalize``).

Decoding thousands of files is the slow part, so the decoded pixels are cached (``.npz`` under the
cache directory) keyed by every file's path, size and modification time and the options: an edited,
added or removed image is picked up, and compare's worker processes decode once.
"""

from __future__ import annotations

import hashlib
import json
import os
from typing import Any

import numpy as np

from losscli.data.bundle import carve_split, make_bundle
from losscli.data.cache import cache_dir, try_save_cache
from losscli.data.images import normalise_images
from losscli.data.registry import register_dataset
from losscli.errors import UsageError

OPTIONS = {"size": None, "grayscale": None, "normalize": True, "test_fraction": 0.2}
SPLIT_DIRS = {"train": ("train",), "validation": ("val", "valid", "validation"), "test": ("test",)}


def _subdirs(path: str) -> list[str]:
    try:
        return sorted(e.name for e in os.scandir(path) if e.is_dir() and not e.name.startswith("."))
    except OSError as exc:
        raise UsageError(f"folder:{path}: cannot list the directory ({exc.strerror or exc})") from None


def _layout(root: str) -> dict[str, str]:
    """``{split: directory of class folders}``: train/test[/val] subfolders when present, else the root."""
    subs = set(_subdirs(root))
    found = {split: os.path.join(root, next(n for n in names if n in subs))
             for split, names in SPLIT_DIRS.items() if any(n in subs for n in names)}
    if "train" in found and len(found) > 1:
        return found
    return {"train": root}


def _files(split_dir: str, classes: list[str], where: str) -> list[tuple[str, int]]:
    from torchvision.datasets.folder import IMG_EXTENSIONS

    out = []
    for i, c in enumerate(classes):
        d = os.path.join(split_dir, c)
        if not os.path.isdir(d):
            continue
        for dirpath, dirnames, names in os.walk(d, followlinks=True):
            dirnames.sort()
            out += [(os.path.join(dirpath, n), i) for n in sorted(names) if n.lower().endswith(IMG_EXTENSIONS)]
    if not out:
        raise UsageError(f"{where}: no image files in the class folders of {split_dir} (extensions: "
                         f"{', '.join(IMG_EXTENSIONS)})")
    return out


def _size(value: Any, where: str) -> tuple[int, int] | None:
    if value is None:
        return None
    v = [value] * 2 if not isinstance(value, (list, tuple)) else value
    try:
        h, w = (int(x.strip()) if isinstance(x, str) else x for x in v)
    except (TypeError, ValueError):
        raise UsageError(f"{where}: option size must be an integer (square) or [height, width], got {value!r}") from None
    if any(isinstance(x, bool) or not isinstance(x, int) for x in (h, w)):
        raise UsageError(f"{where}: option size must be an integer (square) or [height, width], got {value!r}")
    if h < 1 or w < 1 or h > 4096 or w > 4096:
        raise UsageError(f"{where}: option size must be between 1 and 4096 pixels, got {value!r}")
    return h, w


def _decode(files: list[tuple[str, int]], size: tuple[int, int] | None, mode: str, where: str) -> np.ndarray:
    from PIL import Image
    from torchvision.datasets.folder import pil_loader

    arrays = []
    for path, _ in files:
        try:
            img = pil_loader(path) if mode == "RGB" else Image.open(path).convert("L")
        except (OSError, ValueError, Image.DecompressionBombError) as exc:
            raise UsageError(f"{where}: cannot read image {path} ({type(exc).__name__}: {exc})") from None
        if size is not None and img.size != (size[1], size[0]):
            img = img.resize((size[1], size[0]), Image.Resampling.BILINEAR)
        a = np.asarray(img, dtype=np.uint8)
        arrays.append(a[:, :, None] if a.ndim == 2 else a)
    shapes = {a.shape[:2] for a in arrays}
    if len(shapes) > 1:
        sizes = ", ".join(f"{h}x{w}" for h, w in sorted(shapes)[:3])
        raise UsageError(f"{where}: images have different sizes ({sizes}...); resize them with --image-size N "
                         "(or --set dataset.options.size=N)")
    return np.ascontiguousarray(np.stack(arrays).transpose(0, 3, 1, 2))  # NHWC -> NCHW


def _mode(files: list[str], forced: Any, where: str) -> str:
    if forced is not None:
        if not isinstance(forced, bool):
            raise UsageError(f"{where}: option grayscale must be true or false, got {forced!r}")
        return "L" if forced else "RGB"
    from PIL import Image

    for path in files:  # the header is enough to know the mode
        try:
            with Image.open(path) as img:
                if img.mode not in ("1", "L", "LA", "I", "I;16", "F"):
                    return "RGB"
        except (OSError, ValueError) as exc:
            raise UsageError(f"{where}: cannot read image {path} ({type(exc).__name__}: {exc})") from None
    return "L"


def _cache_key(root: str, splits: dict[str, list], size, mode: str) -> str:
    entries = []
    for split, files in splits.items():
        for path, label in files:
            st = os.stat(path)
            entries.append([split, os.path.relpath(path, root), label, st.st_size, st.st_mtime_ns])
    blob = json.dumps([os.path.abspath(root), size, mode, entries]).encode()
    return hashlib.sha256(blob).hexdigest()[:16]


def _pixels(root: str, splits: dict[str, list], size, mode: str, where: str) -> tuple[dict[str, np.ndarray], str, bool]:
    path = os.path.join(cache_dir(), f"folder-{_cache_key(root, splits, size, mode)}.npz")
    if os.path.exists(path):
        try:
            with np.load(path, allow_pickle=False) as f:
                return {k: f[k] for k in f.files}, path, True
        except Exception:  # noqa: BLE001 - a corrupt cache file is decoded again
            pass
    pixels = {k: _decode(v, size, mode, where) for k, v in splits.items()}
    try_save_cache(path, **pixels)
    return pixels, path, False


@register_dataset("folder", options=OPTIONS, kind="image",
                  doc="folder:PATH, class folders of images (ImageFolder layout; optional train/val/test subfolders)")
def load_folder(*, data_dir=None, download=False, val_fraction=0.1, split_seed=0, options=None, path: str = ""):
    where = f"folder:{path}"
    if not path:
        raise UsageError("folder: give the directory of class folders, e.g. folder:./photos")
    root = os.path.abspath(os.path.expanduser(path))
    if not os.path.isdir(root):
        raise UsageError(f"{where}: no such directory ({root})")
    layout = _layout(root)
    classes = _subdirs(layout["train"])
    if len(classes) < 2:
        raise UsageError(f"{where}: expected one folder per class in {layout['train']} (found "
                         f"{len(classes)}); classification needs at least 2")
    for split, d in layout.items():
        extra = sorted(set(_subdirs(d)) - set(classes))
        if extra:
            raise UsageError(f"{where}: {split} has class folder(s) {', '.join(extra[:5])} that train lacks")
    files = {split: _files(d, classes, where) for split, d in layout.items()}
    size = _size(options["size"], where)
    mode = _mode([p for p, _ in files["train"]], options["grayscale"], where)
    pixels, cache_file, hit = _pixels(root, files, size, mode, where)
    labels = {k: np.asarray([y for _, y in v], dtype=np.int64) for k, v in files.items()}
    info: dict[str, Any] = {"source": f"image folders in {root}", "layout": sorted(layout), "image_mode": mode,
                            "resized_to": list(size) if size else None, "cache_file": cache_file, "cache_hit": hit}
    row_index = None
    if "test" not in pixels:
        frac = float(options["test_fraction"])
        if not 0.0 < frac < 1.0:
            raise UsageError(f"{where}: option test_fraction must be in (0, 1), got {frac!r}")
        import torch

        keep, carved = carve_split(torch.from_numpy(labels["train"]), frac, split_seed + 7919)
        keep_np, carved_np = keep.numpy(), carved.numpy()
        pixels["test"], labels["test"] = pixels["train"][carved_np], labels["train"][carved_np]
        pixels["train"], labels["train"] = pixels["train"][keep_np], labels["train"][keep_np]
        row_index = keep
        info["test_source"] = f"carved from train (fraction {frac:g}, split_seed {split_seed})"
    others = [k for k in ("test", "validation") if k in pixels]
    x_train, rest, stats = normalise_images(pixels["train"], [pixels[k] for k in others], bool(options["normalize"]))
    xs = dict(zip(others, rest))
    info["normalization"] = stats
    return make_bundle(
        where, x_train=x_train, y_train=labels["train"], x_test=xs["test"], y_test=labels["test"], kind="image",
        x_val=xs.get("validation"), y_val=labels.get("validation"), num_classes=len(classes), class_names=classes,
        val_fraction=val_fraction, split_seed=split_seed, info=info, row_index=row_index,
    )
