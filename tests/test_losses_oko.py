"""oko: set sampling statistics (official sampler) and the summed-logit set loss."""

from __future__ import annotations

import math
from collections import Counter

import pytest
import torch
import torch.nn.functional as F

from losscli.errors import UsageError
from losscli.losses import LOSSES, LossInputError, build_loss


def imbalanced_labels():
    counts = [40, 20, 10, 5, 3, 2]  # class-imbalanced training set
    return torch.cat([torch.full((n,), c) for c, n in enumerate(counts)])[torch.randperm(80, generator=torch.Generator().manual_seed(0))]


@pytest.mark.parametrize("k", [0, 1, 3])
def test_sampled_sets_have_the_official_structure(k):
    labels = imbalanced_labels()
    sets = build_loss("oko", k=k).sample_sets(labels, torch.Generator().manual_seed(1), num_sets=2000)
    assert sets.shape == (2000, k + 2) and sets.dtype == torch.long
    for row in sets.tolist():
        assert len(set(row)) == k + 2  # distinct training examples
        members = Counter(labels[row].tolist())
        counts = sorted(members.values())
        assert counts == [1] * k + [2]  # k + 1 distinct classes, exactly two members of the pair class
    assert build_loss("oko").sample_sets(labels).shape == (80, 3)  # default: one set per training example


def test_pair_classes_are_uniform_over_classes_and_members_uniform_within():
    labels = imbalanced_labels()
    n_sets = 30000
    sets = build_loss("oko", k=1).sample_sets(labels, torch.Generator().manual_seed(2), num_sets=n_sets)
    member_labels = labels[sets]
    counts = F.one_hot(member_labels, 6).sum(1)
    pair = counts.argmax(1)
    freq = torch.bincount(pair, minlength=6).double() / n_sets
    # uniform over the 6 classes although they hold 40..2 examples: each ~1/6, 5 sigma band
    sigma = math.sqrt((1 / 6) * (5 / 6) / n_sets)
    assert (freq - 1 / 6).abs().max() < 5 * sigma, freq
    # odd classes: uniform over the other 5 classes given the pair class
    odd = (counts == 1).float().argmax(1)
    for c in range(6):
        of_c = odd[pair == c]
        f = torch.bincount(of_c, minlength=6).double() / of_c.numel()
        assert f[c] == 0 and (f[torch.arange(6) != c] - 0.2).abs().max() < 5 * math.sqrt(0.2 * 0.8 / of_c.numel())
    # examples within the biggest class are drawn uniformly
    big = torch.nonzero(labels == 0).squeeze(1)
    used = torch.bincount(sets.flatten(), minlength=80)[big].double()
    assert used.std() / used.mean() < 0.25


def test_sampling_is_seeded_and_members_are_shuffled():
    labels = imbalanced_labels()
    fn = build_loss("oko", k=2)
    a = fn.sample_sets(labels, torch.Generator().manual_seed(5), num_sets=500)
    b = fn.sample_sets(labels, torch.Generator().manual_seed(5), num_sets=500)
    assert torch.equal(a, b)
    # member order is a uniform permutation: the pair class's two members occupy each of the
    # C(4, 2) = 6 slot pairs with frequency 1/6
    lab = fn.sample_sets(labels, torch.Generator().manual_seed(6), num_sets=6000)
    lab = labels[lab]
    sigma = math.sqrt((1 / 6) * (5 / 6) / 6000)
    for i in range(4):
        for j in range(i + 1, 4):
            freq = (lab[:, i] == lab[:, j]).double().mean()
            assert abs(freq - 1 / 6) < 5 * sigma, (i, j, freq)
    with pytest.raises(LossInputError, match="classes present"):
        fn.sample_sets(torch.tensor([0, 0, 1, 1]))  # k + 1 = 3 classes needed


def test_hard_and_soft_losses_against_loops():
    g = torch.Generator().manual_seed(3)
    z = torch.randn(4, 3, 5, generator=g, dtype=torch.float64) * 2
    members = torch.tensor([[1, 4, 1], [0, 0, 2], [3, 2, 2], [4, 1, 4]])
    hard = build_loss("oko", reduction="none")(z, members)
    soft = build_loss("oko", targets="soft", reduction="none")(z, members)
    for b in range(4):
        summed = [sum(z[b, m, c].item() for m in range(3)) for c in range(5)]
        mx = max(summed)
        lse = mx + math.log(sum(math.exp(v - mx) for v in summed))
        cnt = Counter(members[b].tolist())
        pair = next(c for c, n in cnt.items() if n == 2)
        assert hard[b].item() == pytest.approx(lse - summed[pair], rel=1e-12)
        assert soft[b].item() == pytest.approx(sum(n / 3 * (lse - summed[c]) for c, n in cnt.items()), rel=1e-12)
    # reduction: mean over sets (the loops above use the SUM of member logits; a mean would fail them)
    torch.testing.assert_close(build_loss("oko")(z, members), hard.mean())


def test_set_validation():
    fn = build_loss("oko")
    z = torch.randn(2, 3, 4)
    with pytest.raises(LossInputError, match="exactly one label twice"):
        fn(z, torch.tensor([[0, 1, 2], [0, 0, 1]]))
    with pytest.raises(LossInputError, match="k \\+ 2 = 3 members"):
        fn(torch.randn(2, 4, 4), torch.tensor([[0, 0, 1, 2], [1, 1, 2, 3]]))
    with pytest.raises(LossInputError, match=r"\[B, m\]"):
        fn(z, torch.tensor([0, 1]))
    with pytest.raises(LossInputError, match=r"\[B, m, C\]"):
        fn(torch.randn(2, 3), torch.tensor([[0, 0, 1], [1, 1, 2]]))
    with pytest.raises(UsageError, match="soft targets need k >= 1"):
        build_loss("oko", k=0, targets="soft")
    info = LOSSES.get("oko").info
    assert info.input == "sets" and not info.stackable
