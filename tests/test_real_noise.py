"""Real-world label noise: per-sample labels from a file (--noise file:PATH) and the CIFAR-N human
annotations (cifar10n:aggre..., cifar100n:noisy), with files the tests write in the release's format."""

from __future__ import annotations

import pickle
import zipfile

import numpy as np
import pytest
import torch

from losscli.data import apply_noise, load_dataset, parse_noise_spec
from losscli.errors import UsageError

N_PER_BATCH = 12  # 5 training batches: 60 "CIFAR-10" training images


def _fake_cifar10(root):
    d = root / "cifar-10-batches-py"
    d.mkdir(parents=True)
    rng = np.random.default_rng(0)
    labels = []
    for i in range(1, 6):
        y = [int(v) for v in np.arange(N_PER_BATCH) % 10]
        labels += y
        with open(d / f"data_batch_{i}", "wb") as f:
            pickle.dump({"data": rng.integers(0, 256, (N_PER_BATCH, 3072), dtype=np.uint8), "labels": y}, f)
    with open(d / "test_batch", "wb") as f:
        pickle.dump({"data": rng.integers(0, 256, (10, 3072), dtype=np.uint8), "labels": list(range(10))}, f)
    return np.asarray(labels, dtype=np.int64)


def _human_file(path, clean, numpy1_names=False):
    """CIFAR-10_human.pt as released: numpy arrays under these keys (saved with numpy 1.x, whose
    pickles name numpy.core where numpy 2 writes numpy._core)."""
    aggre = clean.copy()
    aggre[::6] = (aggre[::6] + 1) % 10  # every sixth label wrong: 10 of 60
    worst = (clean + 3) % 10
    data = {"clean_label": clean, "aggre_label": aggre, "worse_label": worst,
            "random_label1": clean.copy(), "random_label2": clean.copy(), "random_label3": clean.copy()}
    torch.save(data, path)
    if numpy1_names:
        with zipfile.ZipFile(path) as zin:
            entries = [(n, zin.read(n)) for n in zin.namelist()]
        with zipfile.ZipFile(path, "w", zipfile.ZIP_STORED) as zout:
            for n, blob in entries:
                zout.writestr(n, blob.replace(b"numpy._core.multiarray", b"numpy.core.multiarray")
                              if n.endswith("data.pkl") else blob)
    return aggre, worst


@pytest.fixture()
def cifar(tmp_path):
    clean = _fake_cifar10(tmp_path)
    aggre, worst = _human_file(tmp_path / "CIFAR-10_human.pt", clean, numpy1_names=True)
    return tmp_path, clean, aggre, worst


def test_cifar10n_label_sets(cifar):
    root, clean, aggre, worst = cifar
    base = load_dataset("cifar10", data_dir=str(root), val_fraction=0.2)
    noisy = apply_noise(base, "cifar10n:aggre", seed=0, data_dir=str(root))
    # every training and validation example carries its own row's human label
    assert torch.equal(noisy.y_train, torch.from_numpy(aggre)[base.train_index])
    assert torch.equal(noisy.y_val, torch.from_numpy(aggre)[base.val_index])
    assert torch.equal(noisy.y_train_clean, base.y_train) and torch.equal(noisy.y_test, base.y_test)
    info = noisy.info["noise"]
    flipped = int((noisy.y_train != base.y_train).sum())
    assert info["num_flipped"] == flipped and info["rate"] == pytest.approx(flipped / len(base.y_train))
    T = np.asarray(info["transition_matrix"])
    assert T.shape == (10, 10) and np.allclose(T.sum(1), 1.0)
    assert info["label_set"] == "aggre_label" and len(info["sha256"]) == 16
    worst_bundle = apply_noise(base, "cifar10n:worse", seed=0, data_dir=str(root))  # alias of worst
    assert worst_bundle.info["noise"]["spec"] == "cifar10n:worst" and worst_bundle.info["noise"]["rate"] == 1.0
    clean_val = apply_noise(base, "cifar10n:aggre", seed=0, noisy_val=False, data_dir=str(root))
    assert torch.equal(clean_val.y_val, base.y_val) and clean_val.info["noise"]["validation"] == "clean"


def test_cifarn_errors(cifar, tmp_path):
    root, clean, _, _ = cifar
    base = load_dataset("cifar10", data_dir=str(root))
    with pytest.raises(UsageError, match="no CIFAR-100_human.pt"):
        apply_noise(load_dataset("cifar10", data_dir=str(root)).replace(name="cifar100"), "cifar100n:noisy", seed=0,
                    data_dir=str(root))
    with pytest.raises(UsageError, match="use it with --dataset cifar10"):
        apply_noise(load_dataset("synthetic", options={"n_train": 60}), "cifar10n:aggre", seed=0, data_dir=str(root))
    with pytest.raises(UsageError, match="cifar10n has label sets aggre, rand1"):
        parse_noise_spec("cifar10n:best")
    shuffled = clean[::-1].copy()
    _human_file(root / "CIFAR-10_human.pt", shuffled)  # not these images' annotation
    with pytest.raises(UsageError, match="clean_label disagrees"):
        apply_noise(base, "cifar10n:aggre", seed=0, data_dir=str(root))
    with pytest.raises(UsageError, match="no CIFAR-10_human.pt in"):
        apply_noise(base, "cifar10n:aggre", seed=0, data_dir=str(tmp_path / "elsewhere"))


@pytest.mark.parametrize("suffix", [".npy", ".pt", ".csv"])
def test_noise_file_formats(tmp_path, suffix):
    rng = np.random.default_rng(1)
    np.savez(tmp_path / "d.npz", x=rng.normal(size=(100, 4)), y=np.arange(100) % 5)
    noisy_labels = (np.arange(100) % 5 + (np.arange(100) % 4 == 0)) % 5  # a quarter of them wrong
    path = tmp_path / f"labels{suffix}"
    if suffix == ".npy":
        np.save(path, noisy_labels)
    elif suffix == ".pt":
        torch.save({"noisy_label": torch.from_numpy(noisy_labels)}, path)
    else:
        path.write_text("noisy_label\n" + "".join(f"{v}\n" for v in noisy_labels))
    base = load_dataset(str(tmp_path / "d.npz"))  # test and val carved: rows follow train_index
    out = apply_noise(base, f"file:{path}", seed=0)
    assert torch.equal(out.y_train, torch.from_numpy(noisy_labels)[base.train_index])
    assert out.info["noise"]["file"] == str(path) and out.info["noise"]["rate"] > 0.1


def test_file_spec_is_canonical_and_carries_the_content_hash(tmp_path, monkeypatch):
    np.save(tmp_path / "a.npy", np.arange(10) % 2)
    monkeypatch.chdir(tmp_path)
    spec = parse_noise_spec("file:a.npy")
    assert spec.kind == "file" and spec.source == str(tmp_path / "a.npy") and spec.rate is None
    assert str(spec) == f"file:{tmp_path / 'a.npy'}@sha256:{spec.digest}"
    assert parse_noise_spec(str(spec)) == spec  # round-trips (a run's config.yaml)
    np.save(tmp_path / "a.npy", np.arange(10) % 3)  # edited: another identity...
    assert parse_noise_spec("file:a.npy").digest != spec.digest
    with pytest.raises(UsageError, match="changed since"):  # ...and the old one is refused
        parse_noise_spec(str(spec))
    with pytest.raises(UsageError, match="noise file .*absent.npy"):
        parse_noise_spec("file:absent.npy")
    with pytest.raises(UsageError, match="must be .npy"):
        parse_noise_spec("file:labels.txt")


def test_compare_run_keys_change_with_the_file(tmp_path):
    from losscli.app.compare.grid import expand_grid
    from losscli.config import build_config

    np.save(tmp_path / "n.npy", np.zeros(10, dtype=np.int64))
    cfg = build_config(None, {"noise": f"none,file:{tmp_path / 'n.npy'}", "losses": ["ce"], "seeds": 1})
    before = [s.key() for s in expand_grid(cfg)]
    np.save(tmp_path / "n.npy", np.ones(10, dtype=np.int64))
    after = [s.key() for s in expand_grid(cfg)]
    assert before[0] == after[0] and before[1] != after[1]


def test_bad_noise_files(tmp_path):
    base = load_dataset("synthetic", options={"n_train": 50, "classes": 5})
    np.save(tmp_path / "short.npy", np.zeros(10, dtype=np.int64))
    with pytest.raises(UsageError, match="10 labels but .* at least"):
        apply_noise(base, f"file:{tmp_path / 'short.npy'}", seed=0)
    np.save(tmp_path / "range.npy", np.full(50, 7))
    with pytest.raises(UsageError, match="label 7 out of range"):
        apply_noise(base, f"file:{tmp_path / 'range.npy'}", seed=0)
    np.save(tmp_path / "float.npy", np.full(50, 0.5))
    with pytest.raises(UsageError, match="must be integers"):
        apply_noise(base, f"file:{tmp_path / 'float.npy'}", seed=0)
    (tmp_path / "two.csv").write_text("a,b\n1,2\n")
    with pytest.raises(UsageError, match="name the label column"):
        apply_noise(base, f"file:{tmp_path / 'two.csv'}", seed=0)


def test_train_with_a_noise_file_end_to_end(tmp_path):
    """Through the engine: the report carries the spec with its hash, the file, the measured rate."""
    from losscli.config import build_config
    from losscli.engine.runspec import RunSpec
    from losscli.engine.trainer import train_run

    rng = np.random.default_rng(2)
    np.savez(tmp_path / "d.npz", x=rng.normal(size=(120, 4)), y=np.arange(120) % 3)
    labels = np.arange(120) % 3
    labels[:30] = (labels[:30] + 1) % 3
    np.save(tmp_path / "noisy.npy", labels)
    cfg = build_config(None, {"dataset": {"name": str(tmp_path / "d.npz")}, "noise": f"file:{tmp_path / 'noisy.npy'}",
                              "train": {"epochs": 2, "batch_size": 16}, "device": "cpu"})
    from losscli.report.run import render_run_markdown

    report = train_run(RunSpec.from_config(cfg), tmp_path / "run", progress=False, render_markdown=render_run_markdown)
    noise = report["data"]["noise"]
    assert report["status"] == "ok" and noise["kind"] == "file" and "@sha256:" in report["setting"]["noise"]
    assert 0.15 < noise["rate"] < 0.35 and len(noise["transition_matrix"]) == 3
    md = (tmp_path / "run" / "report.md").read_text()
    assert "- inputs: standardised per feature with training split" in md
    assert f"`{tmp_path / 'noisy.npy'}` (sha256 {noise['sha256']})" in md
