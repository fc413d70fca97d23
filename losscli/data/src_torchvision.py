"""torchvision image datasets read from their on-disk formats: mnist, fashion_mnist,
cifar10, cifar100, svhn.

Files are read directly (idx files, CIFAR pickles, SVHN ``.mat``) from the layout that
torchvision's own classes download into ``data_dir`` (default ``$LOSSCLI_DATA_DIR`` or
``<cache>/data``). torchvision is used only to download, and only when ``download=True``.
Missing files give one ``UsageError`` naming the directory and the expected files.
Images become float32 ``[N, C, H, W]`` normalised per channel with train statistics.
"""

from __future__ import annotations

import gzip
import os
from typing import Any, Callable

import numpy as np

from losscli.data.bundle import make_bundle
from losscli.data.cache import default_data_dir
from losscli.data.images import normalise_images
from losscli.data.registry import register_dataset
from losscli.errors import UsageError

DIGITS = [str(i) for i in range(10)]
FASHION = ["T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot"]
_OPTIONS = {"normalize": True}


# --------------------------------------------------------------------------- file readers
def read_idx(path: str) -> np.ndarray:
    """An MNIST-style idx file (optionally gzipped) as a numpy array."""
    opener = gzip.open if path.endswith(".gz") else open
    with opener(path, "rb") as f:
        data = f.read()
    if len(data) < 4 or data[0] != 0 or data[1] != 0 or data[2] != 0x08:
        raise UsageError(f"{path}: not an unsigned-byte idx file")
    ndim = data[3]
    dims = [int.from_bytes(data[4 + 4 * i: 8 + 4 * i], "big") for i in range(ndim)]
    arr = np.frombuffer(data, dtype=np.uint8, offset=4 + 4 * ndim)
    if arr.size != int(np.prod(dims)):
        raise UsageError(f"{path}: idx header says {dims} but holds {arr.size} values")
    return arr.reshape(dims)


def _unpickle(path: str) -> dict:
    """A CIFAR batch: a dict of arrays and lists, read without ever running code from the file."""
    from losscli.safeload import load_numpy_pickle

    data = load_numpy_pickle(path)
    if not isinstance(data, dict):
        raise UsageError(f"{path} is not a CIFAR batch (a dict of arrays); re-download it")
    return data


def _find(candidates: list[str], names: list[str]) -> str | None:
    """The first directory holding every name (a name may also exist with ``.gz``)."""
    for d in candidates:
        if all(os.path.exists(os.path.join(d, n)) or os.path.exists(os.path.join(d, n + ".gz")) for n in names):
            return d
    return None


def _path(d: str, name: str) -> str:
    p = os.path.join(d, name)
    return p if os.path.exists(p) else p + ".gz"


def _missing(dataset: str, root: str, expected: str) -> UsageError:
    return UsageError(f"{dataset}: no data in {root} (expected {expected}); pass --data-dir DIR or --download")


# --------------------------------------------------------------------------- per dataset
_MNIST_FILES = ["train-images-idx3-ubyte", "train-labels-idx1-ubyte", "t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"]


def _mnist_like(folder: str, dataset: str, tv_name: str) -> Callable[[str, bool], dict]:
    def read(root: str, download: bool) -> dict:
        candidates = [os.path.join(root, folder, "raw"), os.path.join(root, folder), os.path.join(root, "raw"), root]
        d = _find(candidates, _MNIST_FILES)
        if d is None and download:
            _download(dataset, lambda tv: [getattr(tv, tv_name)(root, train=t, download=True) for t in (True, False)])
            d = _find(candidates, _MNIST_FILES)
        if d is None:
            raise _missing(dataset, root, f"{folder}/raw/{{{','.join(_MNIST_FILES)}}}")
        out = {"x_train": read_idx(_path(d, _MNIST_FILES[0]))[:, None], "y_train": read_idx(_path(d, _MNIST_FILES[1])),
               "x_test": read_idx(_path(d, _MNIST_FILES[2]))[:, None], "y_test": read_idx(_path(d, _MNIST_FILES[3])),
               "dir": d}
        return out

    return read


def _read_cifar10(root: str, download: bool) -> dict:
    sub = "cifar-10-batches-py"
    names = [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"]
    d = _find([os.path.join(root, sub)], names)
    if d is None and download:
        _download("cifar10", lambda tv: tv.CIFAR10(root, train=True, download=True))
        d = _find([os.path.join(root, sub)], names)
    if d is None:
        raise _missing("cifar10", root, f"{sub}/{{data_batch_1..5,test_batch}}")
    batches = [_unpickle(os.path.join(d, n)) for n in names]
    x = [np.asarray(b["data"], dtype=np.uint8).reshape(-1, 3, 32, 32) for b in batches]
    y = [np.asarray(b["labels"], dtype=np.int64) for b in batches]
    meta = os.path.join(d, "batches.meta")
    classes = _unpickle(meta)["label_names"] if os.path.exists(meta) else None
    return {"x_train": np.concatenate(x[:5]), "y_train": np.concatenate(y[:5]), "x_test": x[5], "y_test": y[5],
            "classes": classes, "dir": d}


def _read_cifar100(root: str, download: bool) -> dict:
    sub = "cifar-100-python"
    d = _find([os.path.join(root, sub)], ["train", "test"])
    if d is None and download:
        _download("cifar100", lambda tv: tv.CIFAR100(root, train=True, download=True))
        d = _find([os.path.join(root, sub)], ["train", "test"])
    if d is None:
        raise _missing("cifar100", root, f"{sub}/{{train,test,meta}}")
    tr, te = _unpickle(os.path.join(d, "train")), _unpickle(os.path.join(d, "test"))
    meta = os.path.join(d, "meta")
    classes = _unpickle(meta)["fine_label_names"] if os.path.exists(meta) else None
    return {"x_train": np.asarray(tr["data"], dtype=np.uint8).reshape(-1, 3, 32, 32),
            "y_train": np.asarray(tr["fine_labels"], dtype=np.int64),
            "x_test": np.asarray(te["data"], dtype=np.uint8).reshape(-1, 3, 32, 32),
            "y_test": np.asarray(te["fine_labels"], dtype=np.int64), "classes": classes, "dir": d}


def _read_svhn(root: str, download: bool) -> dict:
    names = ["train_32x32.mat", "test_32x32.mat"]
    candidates = [root, os.path.join(root, "svhn"), os.path.join(root, "SVHN")]
    d = _find(candidates, names)
    if d is None and download:
        _download("svhn", lambda tv: [tv.SVHN(root, split=s, download=True) for s in ("train", "test")])
        d = _find(candidates, names)
    if d is None:
        raise _missing("svhn", root, "train_32x32.mat, test_32x32.mat")
    from scipy.io import loadmat

    out: dict[str, Any] = {"dir": d}
    for split, name in zip(("train", "test"), names):
        m = loadmat(os.path.join(d, name))
        y = np.asarray(m["y"], dtype=np.int64).reshape(-1)
        y[y == 10] = 0  # SVHN stores digit 0 as label 10
        out[f"x_{split}"] = np.ascontiguousarray(np.transpose(m["X"], (3, 2, 0, 1)))  # HWCN -> NCHW
        out[f"y_{split}"] = y
    return out


def _download(dataset: str, fn: Callable[[Any], Any]) -> None:
    import torchvision.datasets as tv

    try:
        fn(tv)
    except Exception as e:  # offline, bad checksum, ...
        raise UsageError(f"{dataset}: download failed ({type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''}); "
                         f"put the files in --data-dir yourself") from None


# --------------------------------------------------------------------------- bundle
def _register(name: str, reader: Callable[[str, bool], dict], classes: list[str] | None, num_classes: int, doc: str):
    @register_dataset(name, options=_OPTIONS, kind="image", doc=doc)
    def load(*, data_dir=None, download=False, val_fraction=0.1, split_seed=0, options=None):
        root = os.path.abspath(os.path.expanduser(data_dir or default_data_dir()))
        raw = reader(root, download)
        x_train, (x_test,), stats = normalise_images(raw["x_train"], [raw["x_test"]], bool(options["normalize"]))
        return make_bundle(
            name, x_train=x_train, y_train=raw["y_train"], x_test=x_test, y_test=raw["y_test"], kind="image",
            num_classes=num_classes, class_names=raw.get("classes") or classes,
            val_fraction=val_fraction, split_seed=split_seed,
            info={"source": f"torchvision {name} files in {raw['dir']}", "normalization": stats},
        )

    load.__name__ = f"load_{name}"
    return load


_register("mnist", _mnist_like("MNIST", "mnist", "MNIST"), DIGITS, 10, "MNIST digits (28x28, 1 channel)")
_register("fashion_mnist", _mnist_like("FashionMNIST", "fashion_mnist", "FashionMNIST"), FASHION, 10,
          "Fashion-MNIST (28x28, 1 channel)")
_register("cifar10", _read_cifar10, None, 10, "CIFAR-10 (32x32 RGB)")
_register("cifar100", _read_cifar100, None, 100, "CIFAR-100, fine labels (32x32 RGB)")
_register("svhn", _read_svhn, DIGITS, 10, "SVHN cropped digits (32x32 RGB), train/test")
