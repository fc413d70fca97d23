"""Label noise and class imbalance: exact counts, structure, determinism, bad specs."""

from __future__ import annotations

import math
import random

import numpy as np
import pytest
import torch

from losscli.data import apply_imbalance, apply_noise, load_dataset, make_bundle, parse_imbalance_spec, parse_noise_spec
from losscli.errors import UsageError


@pytest.fixture(scope="module")
def base():
    return load_dataset("synthetic", options={"classes": 10, "dim": 8, "n_train": 1111, "n_test": 200}, split_seed=0)


def tiny_bundle(name: str, y: list[int], num_classes: int):
    x = torch.randn(len(y), 4, generator=torch.Generator().manual_seed(0))
    return make_bundle(name, x_train=x, y_train=torch.tensor(y), x_test=x[:3], y_test=torch.tensor(y[:3]),
                       kind="vector", num_classes=num_classes, val_fraction=0.0)


# --------------------------------------------------------------------------- specs
@pytest.mark.parametrize("spec,expected", [
    ("none", ("none", 0.0)), ("sym:0.4", ("sym", 0.4)), (" ASYM:0.2 ", ("asym", 0.2)), ("pair:0", ("pair", 0.0)),
    ("instance:1", ("instance", 1.0)), (None, ("none", 0.0)),
])
def test_parse_noise_spec(spec, expected):
    parsed = parse_noise_spec(spec)
    assert (parsed.kind, parsed.rate) == expected and not parsed.is_real


@pytest.mark.parametrize("spec", ["sym:1.5", "sym:-0.1", "foo:0.2", "sym", "sym:abc", "sym:nan", "0.4"])
def test_bad_noise_specs(spec):
    with pytest.raises(UsageError, match="valid forms: none, sym:RATE"):
        parse_noise_spec(spec)


@pytest.mark.parametrize("spec,expected", [("none", ("none", 1.0)), ("exp:100", ("exp", 100.0)), ("step:10", ("step", 10.0)),
                                           ("exp:1", ("exp", 1.0))])
def test_parse_imbalance_spec(spec, expected):
    assert tuple(parse_imbalance_spec(spec)) == expected


@pytest.mark.parametrize("spec", ["exp:0.5", "step:-2", "foo:10", "exp", "exp:inf", "10"])
def test_bad_imbalance_specs(spec):
    with pytest.raises(UsageError, match="valid forms: none, exp:RATIO"):
        parse_imbalance_spec(spec)


def test_bad_spec_through_apply(base):
    with pytest.raises(UsageError):
        apply_noise(base, "sym:1.5", seed=0)
    with pytest.raises(UsageError):
        apply_imbalance(base, "exp:0.5")


# --------------------------------------------------------------------------- noise
@pytest.mark.parametrize("kind", ["sym", "instance"])
@pytest.mark.parametrize("rate", [0.0, 0.13, 0.4, 0.8, 1.0])
def test_exact_flipped_fraction(base, kind, rate):
    n = len(base.y_train)
    noisy = apply_noise(base, f"{kind}:{rate}", seed=1)
    # exactly round(rate * N) labels changed: every chosen sample moved to another class
    assert int(noisy.noisy_mask.sum()) == round(rate * n)
    assert noisy.info["noise"]["num_flipped"] == round(rate * n)
    assert math.isclose(noisy.info["noise"]["actual_fraction_flipped"], round(rate * n) / n)
    assert torch.equal(noisy.y_train_clean, base.y_train)
    assert noisy.y_train.min() >= 0 and noisy.y_train.max() < base.num_classes


def test_sym_targets_are_other_classes_and_spread(base):
    noisy = apply_noise(base, "sym:0.6", seed=2)
    m = noisy.noisy_mask
    assert (noisy.y_train[m] != noisy.y_train_clean[m]).all()
    # flipped labels are spread over the other classes (uniform): offsets 1..C-1 all used
    offsets = (noisy.y_train[m] - noisy.y_train_clean[m]) % base.num_classes
    counts = torch.bincount(offsets, minlength=base.num_classes)
    assert counts[0] == 0 and (counts[1:] > 0.5 * m.sum() / (base.num_classes - 1)).all()


def test_pair_flip_structure(base):
    rate = 0.3
    noisy = apply_noise(base, f"asym:{rate}", seed=3)  # synthetic has no class map -> pair flip
    C = base.num_classes
    m = noisy.noisy_mask
    assert torch.equal(noisy.y_train[m], (noisy.y_train_clean[m] + 1) % C)
    for c in range(C):
        n_c = int((base.y_train == c).sum())
        assert int((m & (base.y_train == c)).sum()) == round(rate * n_c)
    assert noisy.info["noise"]["class_map"][0] == [0, 1]
    T = torch.tensor(noisy.info["noise"]["transition_matrix"])
    off = T - torch.diag(torch.diag(T))
    assert torch.allclose(off.sum(1), torch.tensor([T[c, (c + 1) % C] for c in range(C)], dtype=T.dtype))


def test_asym_class_map_for_mnist():
    y = [c for c in range(10) for _ in range(10)]
    noisy = apply_noise(tiny_bundle("mnist", y, 10), "asym:0.4", seed=0)
    m = noisy.noisy_mask
    src = noisy.y_train_clean[m]
    assert set(src.tolist()) == {2, 3, 5, 6, 7}
    mapping = {2: 7, 3: 8, 5: 6, 6: 5, 7: 1}
    assert all(mapping[int(s)] == int(t) for s, t in zip(src, noisy.y_train[m]))
    assert int(m.sum()) == 5 * 4
    assert noisy.info["noise"]["method"] == "class map"
    pair = apply_noise(tiny_bundle("mnist", y, 10), "pair:0.4", seed=0)
    assert int(pair.noisy_mask.sum()) == 40


@pytest.mark.parametrize("spec", ["sym:0.4", "asym:0.4", "instance:0.4"])
def test_noise_determinism(base, spec):
    a = apply_noise(base, spec, seed=7)
    b = apply_noise(base, spec, seed=7)
    c = apply_noise(base, spec, seed=8)
    assert torch.equal(a.y_train, b.y_train)
    assert not torch.equal(a.y_train, c.y_train)


def test_transition_matrix_and_untouched_splits(base):
    rng_states = (random.getstate(), np.random.get_state()[1].copy(), torch.get_rng_state().clone())
    before = base.y_train.clone()
    noisy = apply_noise(base, "instance:0.35", seed=4)
    assert random.getstate() == rng_states[0] and np.array_equal(np.random.get_state()[1], rng_states[1])
    assert torch.equal(torch.get_rng_state(), rng_states[2])
    T = torch.tensor(noisy.info["noise"]["transition_matrix"], dtype=torch.float64)
    assert T.shape == (10, 10)
    assert torch.allclose(T.sum(1), torch.ones(10, dtype=torch.float64))
    for c in range(10):
        idx = base.y_train == c
        assert math.isclose(float(T[c, c]), float((noisy.y_train[idx] == c).double().mean()))
    assert torch.equal(base.y_train, before) and not base.noisy_mask.any()  # input bundle not mutated
    assert base.info["noise"]["spec"] == "none"
    assert torch.equal(noisy.y_test, base.y_test) and torch.equal(noisy.x_train, base.x_train)
    # validation labels carry the same noise by default (independently drawn); --clean-val keeps them
    flipped = float((noisy.y_val != base.y_val).double().mean())
    assert 0.25 < flipped < 0.45 and noisy.info["noise"]["validation"].startswith("noisy")
    clean_val = apply_noise(base, "instance:0.35", seed=4, noisy_val=False)
    assert torch.equal(clean_val.y_val, base.y_val) and torch.equal(clean_val.y_train, noisy.y_train)


def test_instance_noise_depends_on_input():
    """Flip targets come from the input: two clusters of one class flip towards different classes."""
    g = torch.Generator().manual_seed(0)
    v = torch.randn(1, 16, generator=g)
    x = torch.cat([v.expand(200, 16), -v.expand(200, 16)]) + 0.01 * torch.randn(400, 16, generator=g)
    y = torch.zeros(400, dtype=torch.long)
    b = make_bundle("toy", x_train=x, y_train=y, x_test=x[:2], y_test=y[:2], kind="vector",
                    num_classes=5, val_fraction=0.0)
    noisy = apply_noise(b, "instance:0.5", seed=0)
    assert int(noisy.noisy_mask.sum()) == 200
    m = noisy.noisy_mask
    first, second = noisy.y_train[:200][m[:200]], noisy.y_train[200:][m[200:]]
    assert len(first) and len(second) and (first != 0).all() and (second != 0).all()
    assert torch.mode(first).values != torch.mode(second).values


def test_none_noise_records_identity(base):
    clean = apply_noise(base, "none", seed=0)
    assert not clean.noisy_mask.any()
    assert clean.info["noise"]["transition_matrix"] == torch.eye(10).tolist()


# --------------------------------------------------------------------------- imbalance
def test_exp_imbalance_counts_exact(base):
    R = 10
    lt = apply_imbalance(base, f"exp:{R}", seed=0)
    n_max = min(base.class_counts)
    expected = [int(math.floor(n_max * R ** (-c / 9) + 1e-9)) for c in range(10)]
    assert lt.class_counts == expected == lt.info["imbalance"]["class_counts"]
    assert expected[0] == n_max and expected[-1] == n_max // R
    assert len(lt.y_val) == len(base.y_val) and torch.equal(lt.y_test, base.y_test)


def test_step_imbalance_counts_exact(base):
    lt = apply_imbalance(base, "step:4", seed=0)
    n_max = min(base.class_counts)
    assert lt.class_counts == [n_max] * 5 + [n_max // 4] * 5
    assert lt.info["imbalance"]["ratio"] == 4.0


def test_imbalance_keeps_rows_aligned_and_is_deterministic(base):
    a = apply_imbalance(base, "exp:50", seed=1)
    b = apply_imbalance(base, "exp:50", seed=1)
    c = apply_imbalance(base, "exp:50", seed=2)
    assert torch.equal(a.x_train, b.x_train) and not torch.equal(a.x_train, c.x_train)
    # every kept row is an original row with its original label
    d = torch.cdist(a.x_train, base.x_train, compute_mode="donot_use_mm_for_euclid_dist")
    nearest = d.argmin(1)
    assert torch.allclose(d.min(1).values, torch.zeros(len(a.y_train)), atol=1e-5)
    assert torch.equal(base.y_train[nearest], a.y_train)
    assert len(set(nearest.tolist())) == len(a.y_train)


def test_imbalance_then_noise(base):
    lt = apply_imbalance(base, "exp:100", seed=0)
    noisy = apply_noise(lt, "sym:0.4", seed=0)
    assert noisy.info["imbalance"]["class_counts"] == lt.class_counts
    assert noisy.clean_class_counts == lt.class_counts
    assert int(noisy.noisy_mask.sum()) == round(0.4 * len(lt.y_train))
    none = apply_imbalance(base, "none")
    assert none.class_counts == base.class_counts and none.info["imbalance"]["spec"] == "none"
