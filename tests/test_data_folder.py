"""folder:DIR, your own images in class folders (torchvision's ImageFolder layout), offline."""

from __future__ import annotations

import os

import numpy as np
import pytest
import torch

from losscli.data import load_dataset
from losscli.errors import UsageError

PIL = pytest.importorskip("PIL.Image")


@pytest.fixture(autouse=True)
def _own_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("LOSSCLI_CACHE", str(tmp_path / "cache"))  # decoded pixels go here, not a shared cache


def _images(root, classes=("cat", "dog", "eel"), n=10, size=(12, 10), mode="RGB", vary=False, seed=0):
    rng = np.random.default_rng(seed)
    for c, name in enumerate(classes):
        (root / name).mkdir(parents=True, exist_ok=True)
        for i in range(n):
            h, w = (size[0] + i % 3, size[1]) if vary else size
            shape = (h, w, 3) if mode == "RGB" else (h, w)
            pixels = np.clip(rng.normal(40 + 80 * c, 20, shape), 0, 255).astype(np.uint8)  # class-dependent
            PIL.fromarray(pixels, mode).save(root / name / f"{i:03d}.png")
    return root


def test_class_folders_carve_test_and_val(tmp_path):
    root = _images(tmp_path / "photos")
    (root / "notes.txt").write_text("not an image")  # files beside the class folders are ignored
    b = load_dataset(f"folder:{root}", val_fraction=0.2)
    assert b.kind == "image" and b.input_shape == (3, 12, 10) and b.class_names == ["cat", "dog", "eel"]
    assert len(b.y_test) == 6 and len(b.y_train) + len(b.y_val) == 24  # 2 of 10 per class to test
    assert b.info["normalization"]["mean"] and abs(float(b.x_train.mean())) < 0.2  # per-channel, train statistics
    # labels follow the folders: class 2's images are the brightest
    raw = load_dataset(f"folder:{root}", options={"normalize": False})
    means = [float(raw.x_train[raw.y_train == c].mean()) for c in range(3)]
    assert means == sorted(means) and 0.0 <= float(raw.x_train.min()) and float(raw.x_train.max()) <= 1.0


def test_normalisation_is_recorded_like_other_sources(tmp_path):
    # image sources recorded only {scale, mean, std}: the run header and report.md said "as stored"
    from losscli.report.run import data_lines

    root = _images(tmp_path / "p", n=4)
    on = load_dataset(f"folder:{root}").info["normalization"]
    assert on["method"] == "standardize" and on["per"] == "channel" and len(on["mean"]) == 3
    assert data_lines({"normalization": on})[0].startswith("- inputs: standardised per channel")
    off = load_dataset(f"folder:{root}", options={"normalize": False}).info["normalization"]
    assert off["method"] == "none" and "--no-normalize" in data_lines({"normalization": off})[0]


def test_train_test_subfolders_and_grayscale(tmp_path):
    _images(tmp_path / "d" / "train", classes=("a", "b"), n=8, mode="L")
    _images(tmp_path / "d" / "test", classes=("a", "b"), n=3, mode="L", seed=1)
    b = load_dataset(f"folder:{tmp_path / 'd'}")
    assert b.input_shape == (1, 12, 10) and b.info["image_mode"] == "L"
    assert len(b.y_test) == 6 and b.info["layout"] == ["test", "train"]
    rgb = load_dataset(f"folder:{tmp_path / 'd'}", options={"grayscale": False})
    assert rgb.input_shape == (3, 12, 10)


def test_sizes_must_agree_or_be_resized(tmp_path):
    root = _images(tmp_path / "v", vary=True)
    with pytest.raises(UsageError, match="different sizes.*--image-size"):
        load_dataset(f"folder:{root}")
    b = load_dataset(f"folder:{root}", options={"size": 8})
    assert b.input_shape == (3, 8, 8) and b.info["resized_to"] == [8, 8]
    assert load_dataset(f"folder:{root}", options={"size": [6, 9]}).input_shape == (3, 6, 9)
    with pytest.raises(UsageError, match="option size"):
        load_dataset(f"folder:{root}", options={"size": "big"})


def test_cache_is_used_and_follows_the_files(tmp_path):
    root = _images(tmp_path / "c", n=6)
    first = load_dataset(f"folder:{root}")
    again = load_dataset(f"folder:{root}")
    assert not first.info["cache_hit"] and again.info["cache_hit"]
    assert torch.equal(first.x_train, again.x_train)
    img = root / "cat" / "000.png"
    PIL.fromarray(np.full((12, 10, 3), 255, np.uint8)).save(img)
    os.utime(img, ns=(1, 10**18))  # a changed file (new content and time) is read again
    assert not load_dataset(f"folder:{root}").info["cache_hit"]


def test_folder_errors(tmp_path):
    with pytest.raises(UsageError, match="no such directory"):
        load_dataset(f"folder:{tmp_path / 'absent'}")
    _images(tmp_path / "one", classes=("only",))
    with pytest.raises(UsageError, match="at least 2"):
        load_dataset(f"folder:{tmp_path / 'one'}")
    (tmp_path / "empty" / "a").mkdir(parents=True)
    (tmp_path / "empty" / "b").mkdir()
    with pytest.raises(UsageError, match="no image files"):
        load_dataset(f"folder:{tmp_path / 'empty'}")
    root = _images(tmp_path / "broken", n=3)
    (root / "cat" / "bad.png").write_bytes(b"not a png")
    with pytest.raises(UsageError, match="cannot read image .*bad.png"):
        load_dataset(f"folder:{root}")
    with pytest.raises(UsageError, match="write folder:"):
        load_dataset(str(tmp_path / "one"))  # a bare directory says how to name it
