"""Data sources: synthetic, mnist1d (+cache, RNG hygiene), torchvision formats on fake
files, Hugging Face (save_to_disk, parquet, csv), local npz/pt files. No network."""

from __future__ import annotations

import gzip
import os
import pickle
import random
import subprocess
import sys

import numpy as np
import pytest
import torch

from losscli.data import DATASETS, DataBundle, load_dataset
from losscli.errors import UsageError


@pytest.fixture(autouse=True)
def private_cache(tmp_path, monkeypatch):
    """Every test gets its own LOSSCLI_CACHE (mnist1d arrays, HF arrow files)."""
    monkeypatch.setenv("LOSSCLI_CACHE", str(tmp_path / "cache"))


def check_bundle(b: DataBundle, kind: str, num_classes: int):
    assert b.kind == kind
    assert b.num_classes == num_classes
    for x, y in ((b.x_train, b.y_train), (b.x_val, b.y_val), (b.x_test, b.y_test)):
        assert x.dtype == (torch.int64 if kind == "tokens" else torch.float32)
        assert y.dtype == torch.int64
        assert len(x) == len(y)
        assert tuple(x.shape[1:]) == b.input_shape
        assert x.device.type == "cpu"
    assert torch.equal(b.y_train, b.y_train_clean)
    assert not b.noisy_mask.any()
    assert sum(b.class_counts) == len(b.y_train) and len(b.class_counts) == num_classes
    assert b.info["sizes"] == {"train": len(b.y_train), "val": len(b.y_val), "test": len(b.y_test)}


# --------------------------------------------------------------------------- registry / names
def test_specs_module_imports_without_torch():
    code = ("import sys, losscli.data.settings as s; s.parse_noise_spec('sym:0.4'); "
            "s.parse_imbalance_spec('exp:10'); assert 'torch' not in sys.modules, 'torch imported'")
    subprocess.run([sys.executable, "-c", code], check=True)


def test_registry_lists_sources():
    for name in ("mnist1d", "synthetic", "mnist", "fashion_mnist", "cifar10", "cifar100", "svhn"):
        assert name in DATASETS


def test_unknown_dataset_suggests():
    with pytest.raises(UsageError, match="Did you mean 'mnist1d'"):
        load_dataset("mnist1dd")


# --------------------------------------------------------------------------- synthetic
def test_synthetic_shapes_and_determinism():
    opts = {"classes": 4, "dim": 7, "n_train": 400, "n_test": 100}
    a = load_dataset("synthetic", options=opts, split_seed=3)
    check_bundle(a, "vector", 4)
    assert a.input_shape == (7,)
    assert (len(a.y_train), len(a.y_val), len(a.y_test)) == (360, 40, 100)
    assert a.class_counts == [90] * 4  # stratified carve of a balanced set
    b = load_dataset("synthetic", options=opts, split_seed=3)
    assert torch.equal(a.x_train, b.x_train) and torch.equal(a.y_val, b.y_val)
    c = load_dataset("synthetic", options=opts, split_seed=4)
    assert not torch.equal(a.x_train, c.x_train)


def test_synthetic_is_learnable_and_val_fraction():
    b = load_dataset("synthetic", options={"classes": 3, "dim": 5, "separation": 8.0, "n_train": 300},
                     val_fraction=0.0)
    assert len(b.y_val) == 0 and len(b.y_train) == 300
    means = torch.stack([b.x_train[b.y_train == c].mean(0) for c in range(3)])
    pred = torch.cdist(b.x_test, means).argmin(1)
    assert (pred == b.y_test).float().mean() > 0.9


def test_bad_options_and_val_fraction():
    with pytest.raises(UsageError, match="unknown option 'clases'.*valid options: classes=10"):
        load_dataset("synthetic", options={"clases": 3})
    with pytest.raises(UsageError, match="option 'classes'"):
        load_dataset("synthetic", options={"classes": "many"})
    with pytest.raises(UsageError, match="val_fraction"):
        load_dataset("synthetic", val_fraction=1.0)
    b = load_dataset("synthetic", options={"classes": "3", "n_train": "90", "n_test": 30})  # strings from --set
    assert b.num_classes == 3


def test_info_is_yaml_safe():
    import yaml

    b = load_dataset("synthetic", options={"n_train": 100, "n_test": 20, "classes": 2})
    assert yaml.safe_load(yaml.safe_dump(b.info))["sizes"]["train"] == len(b.y_train)


# --------------------------------------------------------------------------- mnist1d
def test_mnist1d_small_cache_and_rng(tmp_path, monkeypatch):
    random.seed(123)
    np.random.seed(123)
    torch.manual_seed(123)
    states = (random.getstate(), np.random.get_state()[1].copy(), torch.get_rng_state().clone())

    b = load_dataset("mnist1d", options={"num_samples": 200})
    check_bundle(b, "sequence1d", 10)
    assert b.input_shape == (40,)
    assert len(b.y_train) + len(b.y_val) == 160 and len(b.y_test) == 40
    assert b.info["cache_hit"] is False

    assert random.getstate() == states[0]
    assert np.array_equal(np.random.get_state()[1], states[1])
    assert torch.equal(torch.get_rng_state(), states[2])

    files = os.listdir(tmp_path / "cache")
    assert len(files) == 1 and files[0].startswith("mnist1d-") and files[0].endswith(".npz")  # no temp left

    import mnist1d.data

    def boom(*a, **k):
        raise AssertionError("regenerated despite the cache")

    monkeypatch.setattr(mnist1d.data, "make_dataset", boom)
    again = load_dataset("mnist1d", options={"num_samples": 200})
    assert again.info["cache_hit"] is True
    assert torch.equal(again.x_train, b.x_train) and torch.equal(again.y_test, b.y_test)
    # a different split seed re-carves the same underlying data
    other = load_dataset("mnist1d", options={"num_samples": 200}, split_seed=1)
    assert not torch.equal(other.y_val, b.y_val)
    assert torch.equal(other.x_test, b.x_test)


# --------------------------------------------------------------------------- torchvision formats
def _idx_bytes(arr: np.ndarray) -> bytes:
    header = bytes([0, 0, 0x08, arr.ndim]) + b"".join(int(d).to_bytes(4, "big") for d in arr.shape)
    return header + arr.astype(np.uint8).tobytes()


def _write_mnist(root, folder, n_train=30, n_test=10, gz=False):
    raw = root / folder / "raw"
    raw.mkdir(parents=True)
    rng = np.random.default_rng(0)
    arrays = {
        "train-images-idx3-ubyte": rng.integers(0, 256, (n_train, 28, 28)),
        "train-labels-idx1-ubyte": np.arange(n_train) % 10,
        "t10k-images-idx3-ubyte": rng.integers(0, 256, (n_test, 28, 28)),
        "t10k-labels-idx1-ubyte": np.arange(n_test) % 10,
    }
    for name, arr in arrays.items():
        data = _idx_bytes(arr)
        if gz:
            with gzip.open(raw / (name + ".gz"), "wb") as f:
                f.write(data)
        else:
            (raw / name).write_bytes(data)
    return arrays


@pytest.mark.parametrize("name,folder,gz", [("mnist", "MNIST", False), ("fashion_mnist", "FashionMNIST", True)])
def test_mnist_idx_files(tmp_path, name, folder, gz):
    arrays = _write_mnist(tmp_path, folder, gz=gz)
    b = load_dataset(name, data_dir=str(tmp_path), val_fraction=0.0)
    check_bundle(b, "image", 10)
    assert b.input_shape == (1, 28, 28)
    assert torch.equal(b.y_train, torch.as_tensor(arrays["train-labels-idx1-ubyte"]))
    assert torch.equal(b.y_test, torch.as_tensor(arrays["t10k-labels-idx1-ubyte"]))
    # normalised with train statistics; pixel order preserved
    assert abs(float(b.x_train.mean())) < 1e-4 and abs(float(b.x_train.std()) - 1) < 1e-3
    raw = torch.as_tensor(arrays["train-images-idx3-ubyte"], dtype=torch.float32)
    assert torch.corrcoef(torch.stack([raw.flatten(), b.x_train.flatten()]))[0, 1] > 0.9999
    assert len(b.class_names) == 10


def _write_cifar10(root, n_per_batch=6, n_test=8):
    d = root / "cifar-10-batches-py"
    d.mkdir(parents=True)
    rng = np.random.default_rng(1)
    labels = []
    for i in range(1, 6):
        y = list(rng.integers(0, 10, n_per_batch))
        labels += y
        batch = {"data": rng.integers(0, 256, (n_per_batch, 3072), dtype=np.uint8), "labels": y}
        with open(d / f"data_batch_{i}", "wb") as f:
            pickle.dump(batch, f)
    y_test = list(np.arange(n_test) % 10)
    with open(d / "test_batch", "wb") as f:
        pickle.dump({"data": rng.integers(0, 256, (n_test, 3072), dtype=np.uint8), "labels": y_test}, f)
    names = ["airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck"]
    with open(d / "batches.meta", "wb") as f:
        pickle.dump({"label_names": names}, f)
    return labels, y_test, names


def test_cifar10_pickles(tmp_path):
    labels, y_test, names = _write_cifar10(tmp_path)
    b = load_dataset("cifar10", data_dir=str(tmp_path), val_fraction=0.0)
    check_bundle(b, "image", 10)
    assert b.input_shape == (3, 32, 32)
    assert b.y_train.tolist() == [int(v) for v in labels] and b.y_test.tolist() == [int(v) for v in y_test]
    assert b.class_names == names
    per_channel = b.x_train.mean(dim=(0, 2, 3))
    assert per_channel.abs().max() < 1e-4
    assert len(b.info["normalization"]["mean"]) == 3


def test_cifar100_pickles(tmp_path):
    d = tmp_path / "cifar-100-python"
    d.mkdir()
    rng = np.random.default_rng(2)
    for split, n in (("train", 20), ("test", 5)):
        with open(d / split, "wb") as f:
            pickle.dump({"data": rng.integers(0, 256, (n, 3072), dtype=np.uint8),
                         "fine_labels": list(range(n)), "coarse_labels": [0] * n}, f)
    with open(d / "meta", "wb") as f:
        pickle.dump({"fine_label_names": [f"c{i}" for i in range(100)]}, f)
    b = load_dataset("cifar100", data_dir=str(tmp_path), val_fraction=0.0)
    check_bundle(b, "image", 100)
    assert b.y_train.tolist() == list(range(20)) and b.class_names[5] == "c5"


def test_svhn_mat(tmp_path):
    from scipy.io import savemat

    rng = np.random.default_rng(3)
    for split, n in (("train", 12), ("test", 4)):
        X = rng.integers(0, 256, (32, 32, 3, n), dtype=np.uint8)
        y = (np.arange(n) % 10 + 1).reshape(-1, 1)  # SVHN labels 1..10, 10 meaning digit 0
        savemat(tmp_path / f"{split}_32x32.mat", {"X": X, "y": y})
    b = load_dataset("svhn", data_dir=str(tmp_path), val_fraction=0.0)
    check_bundle(b, "image", 10)
    assert b.input_shape == (3, 32, 32)
    assert b.y_train.tolist() == [(i % 10 + 1) % 10 for i in range(12)]


@pytest.mark.parametrize("name,expected", [
    ("mnist", "MNIST/raw/"), ("fashion_mnist", "FashionMNIST/raw/"),
    ("cifar10", "cifar-10-batches-py/"), ("cifar100", "cifar-100-python/"), ("svhn", "train_32x32.mat"),
])
def test_missing_files_message(tmp_path, name, expected):
    with pytest.raises(UsageError) as err:
        load_dataset(name, data_dir=str(tmp_path / "nowhere"))
    msg = str(err.value)
    assert str(tmp_path / "nowhere") in msg and expected in msg
    assert "--data-dir" in msg and "--download" in msg and "\n" not in msg


# --------------------------------------------------------------------------- Hugging Face
def test_hf_save_to_disk_text(tmp_path):
    import datasets

    feats = datasets.Features({"text": datasets.Value("string"), "label": datasets.ClassLabel(names=["neg", "pos"])})
    train = datasets.Dataset.from_dict({"text": ["good movie", "bad film", "Great, GOOD!", "awful"] * 5,
                                        "label": [1, 0, 1, 0] * 5}, features=feats)
    test = datasets.Dataset.from_dict({"text": ["good", "bad"], "label": [1, 0]}, features=feats)
    datasets.DatasetDict({"train": train, "test": test}).save_to_disk(str(tmp_path / "saved"))
    b = load_dataset(f"hf:{tmp_path / 'saved'}", options={"max_len": 8, "vocab_size": 1000})
    check_bundle(b, "tokens", 2)
    assert b.input_shape == (8,) and b.class_names == ["neg", "pos"]
    assert len(b.y_test) == 2 and len(b.y_train) + len(b.y_val) == 20
    assert int(b.x_train.max()) < 1000 and int(b.x_train.min()) == 0  # 0 = padding
    from losscli.data.tokenize import hash_tokenize

    ids = hash_tokenize(["Great, GOOD!", "great , good !"], vocab_size=1000, max_len=8)
    assert torch.equal(ids[0], ids[1]) and ids[0, 0] == ids[1, 0] and int((ids[0] != 0).sum()) == 4


def test_hf_parquet_images(tmp_path):
    import datasets
    from PIL import Image

    rng = np.random.default_rng(4)
    imgs = [Image.fromarray(rng.integers(0, 256, (8, 8, 3), dtype=np.uint8)) for _ in range(30)]
    ds = datasets.Dataset.from_dict({"img": imgs, "labels": [i % 3 for i in range(30)]},
                                    features=datasets.Features({"img": datasets.Image(), "labels": datasets.Value("int64")}))
    ds.to_parquet(str(tmp_path / "data.parquet"))
    b = load_dataset(f"hf:{tmp_path / 'data.parquet'}", val_fraction=0.1)
    check_bundle(b, "image", 3)
    assert b.input_shape == (3, 8, 8)
    assert len(b.y_test) == 6 and len(b.y_train) + len(b.y_val) == 24  # test carved (0.2), then val
    assert "carved" in b.info["test_source"]


def test_hf_csv_dir_with_string_labels(tmp_path):
    d = tmp_path / "csvs"
    d.mkdir()
    (d / "train.csv").write_text("sentence,category\n" + "".join(f"text number {i},{'ab'[i % 2]}\n" for i in range(20)))
    (d / "validation.csv").write_text("sentence,category\nhello,a\nworld,b\n")
    (d / "test.csv").write_text("sentence,category\nfoo,b\nbar,a\nbaz,a\n")
    b = load_dataset(f"hf:{d}", options={"label_column": "category"})
    check_bundle(b, "tokens", 2)
    assert b.class_names == ["a", "b"]
    assert (len(b.y_train), len(b.y_val), len(b.y_test)) == (20, 2, 3)
    assert b.y_test.tolist() == [1, 0, 0]
    assert b.info["val_source"] == "provided by the dataset"


def test_hf_errors(tmp_path):
    with pytest.raises(UsageError, match="no such file or directory"):
        load_dataset(f"hf:{tmp_path / 'missing.parquet'}")
    (tmp_path / "x.csv").write_text("a,b\n1,2\n")
    with pytest.raises(UsageError, match="no label column"):
        load_dataset(f"hf:{tmp_path / 'x.csv'}")
    with pytest.raises(UsageError, match="no text column 'nope'"):
        load_dataset(f"hf:{tmp_path / 'x.csv'}", options={"label_column": "a", "text_column": "nope"})


# --------------------------------------------------------------------------- local files
def test_npz_vector_file(tmp_path):
    rng = np.random.default_rng(5)
    path = tmp_path / "data.npz"
    np.savez(path, x=rng.normal(size=(50, 6)), y=np.arange(50) % 5)
    b = load_dataset(str(path), val_fraction=0.2)
    check_bundle(b, "vector", 5)
    assert len(b.y_test) == 10 and len(b.y_val) == 10 and len(b.y_train) == 30  # 2 of 8 per class


def test_pt_image_file_with_splits(tmp_path):
    path = tmp_path / "imgs.pt"
    torch.save({"x": torch.rand(20, 28, 28), "y": torch.arange(20) % 4,
                "x_test": torch.rand(6, 28, 28), "y_test": torch.arange(6) % 4,
                "x_val": torch.rand(4, 28, 28), "y_val": torch.arange(4)}, path)
    b = load_dataset(str(path))
    check_bundle(b, "image", 4)
    assert b.input_shape == (1, 28, 28) and (len(b.y_train), len(b.y_val), len(b.y_test)) == (20, 4, 6)


def test_token_file_and_file_errors(tmp_path):
    path = tmp_path / "tok.npz"
    np.savez(path, x=np.random.default_rng(0).integers(0, 100, (20, 9)), y=np.arange(20) % 2)
    b = load_dataset(str(path), options={"kind": "tokens"})
    check_bundle(b, "tokens", 2)
    np.savez(tmp_path / "bad.npz", x=np.zeros((3, 2)))
    with pytest.raises(UsageError, match="missing key.*y"):
        load_dataset(str(tmp_path / "bad.npz"))
    with pytest.raises(UsageError, match="no such file"):
        load_dataset(str(tmp_path / "absent.pt"))


def test_hf_hub_name_offline_is_one_clear_error(tmp_path, monkeypatch):
    import datasets.config
    import huggingface_hub.constants as hub_constants

    from losscli.data import src_hf

    monkeypatch.setattr(src_hf, "_hub_reachable", lambda timeout=3.0: False)
    monkeypatch.setattr(datasets.config, "HF_DATASETS_CACHE", str(tmp_path / "hf-datasets"))
    monkeypatch.setattr(hub_constants, "HF_HUB_CACHE", str(tmp_path / "hf-hub"))
    before = datasets.config.HF_HUB_OFFLINE
    with pytest.raises(UsageError, match=r"hf:someone/not-cached-anywhere: cannot load .*offline.*local path"):
        load_dataset("hf:someone/not-cached-anywhere")
    assert datasets.config.HF_HUB_OFFLINE == before  # offline switch restored


def test_test_classes_never_seen_in_training_are_a_warning(tmp_path, capsys):
    """A test split with classes the training split never has was accepted without a word: one warning line
    (the first few classes, then "and N more"), recorded in the run's report; the run still trains."""
    import yaml

    from losscli.data import make_bundle
    from tests.cli_helpers import invoke

    x = torch.randn(30, 3)
    b = make_bundle("toy", x_train=x, y_train=torch.arange(30) % 2, x_test=x[:12], y_test=torch.arange(12) % 9,
                    kind="vector", class_names=[f"c{i}" for i in range(9)])
    (warning,) = b.info["warnings"]
    assert "7 classes" in warning and "2 (c2), 3 (c3), 4 (c4), 5 (c5), 6 (c6) and 2 more" in warning
    assert "warnings" not in make_bundle("toy", x_train=x, y_train=torch.arange(30) % 3, x_test=x[:6],
                                         y_test=torch.arange(6) % 3, kind="vector").info
    rng = np.random.default_rng(0)
    path = tmp_path / "unseen.npz"
    np.savez(path, x=rng.normal(size=(60, 4)).astype(np.float32), y=np.arange(60) % 3,
             x_test=rng.normal(size=(20, 4)).astype(np.float32), y_test=np.arange(20) % 5)
    run = tmp_path / "run"
    code, _, err = invoke(["train", "--dataset", str(path), "--model", "mlp", "--epochs", "1", "--device", "cpu",
                           "--out", str(run)], capsys)
    lines = [line for line in err.splitlines() if line.startswith("warning:")]
    assert code == 0 and len(lines) == 1 and "2 classes the training split never has (3, 4)" in lines[0], err
    report = yaml.safe_load((run / "report.yaml").read_text())
    assert report["status"] == "ok" and report["data"]["warnings"] == [lines[0][len("warning: "):]]
    code, _, err = invoke(["eval", str(run), "--format", "json"], capsys)
    assert code == 0 and err.count("warning:") == 1 and "(3, 4)" in err
