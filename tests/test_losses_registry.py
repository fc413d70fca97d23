"""Registry-wide properties: every registered loss is covered with no test edits, and so are a few
composite losses (weighted sums, ``tests.loss_cases.COMPOSITES``) under the same contract
(:mod:`losscli.losses.contract`, the implementation `losscli check-loss` runs)."""

from __future__ import annotations

import functools

import pytest
import torch

from losscli.errors import UsageError
from losscli.losses import LOSSES, build_loss
from losscli.losses.contract import CHECKS, contract_case, run_check
from losscli.losses.meta import INPUT_KINDS, TARGET_KINDS
from tests.loss_cases import COMPOSITES, info_of, make_inputs, make_loss

REGISTERED = LOSSES.names()
ALL = REGISTERED + COMPOSITES
N, C = 12, 5


def _inputs(name, dtype=torch.float32, scale=3.0, seed=0, n=N, c=C):
    """Inputs of the loss's declared kind (logits, embeddings, sets; class or regression targets)."""
    return make_inputs(name, n, c, seed=seed, dtype=dtype, scale=scale)


def test_registry_has_the_required_losses():
    required = """ce label_smoothing focal poly1 poly1_focal gce mae rce sce nce nfl ngce nce_rce nce_mae
    nfl_rce taylor_ce comp_sum ldr_kl aldr_kl ldam logit_adjusted balanced_softmax class_balanced squentropy
    square spherical_z logz_penalty harmonic encouraging logitclip logitnorm ovr dice jaccard anyloss ensloss
    mbls acls circle kd bce sigmoid_focal asl asl_single power_law_weighted""".split()
    missing = [n for n in required if n not in LOSSES]
    assert not missing, f"not registered: {missing}"


def test_alias_resolves():
    assert LOSSES.canonical("cross_entropy") == "ce"


def test_unknown_loss_suggests():
    with pytest.raises(UsageError, match="Did you mean 'focal'"):
        build_loss("focl")


@pytest.mark.parametrize("name", ALL)
def test_metadata_complete(name):
    info = info_of(name)
    assert info.reference.title and info.reference.year > 1900
    assert info.formula
    d = info.to_dict()
    assert set(d) >= {"name", "family", "params", "reference"}
    assert info.input in INPUT_KINDS and info.target in TARGET_KINDS
    assert d["properties"]["input"] == info.input and d["properties"]["target"] == info.target
    # every loss takes the trainer's epoch-end call (a no-op unless it keeps epoch-level state)
    make_loss(name, C).on_epoch_end(0, 0.5)


@pytest.mark.parametrize("name", ALL)
def test_unknown_param_rejected(name):
    with pytest.raises(UsageError, match="unknown parameter"):
        make_loss(name, C, not_a_param=1.0)


# The numerical contract (reductions, permutation, extreme logits, bfloat16, gradcheck, claimed
# bound/symmetry/soft targets, ignore_index, per-class weight, input validation) is one library
# implementation, shared with `losscli check-loss`: each check is one test per loss here.
CONTRACT = [c for c in CHECKS if c != "builds"]  # building is covered by test_metadata_complete


_case = functools.lru_cache(maxsize=None)(contract_case)


@pytest.mark.parametrize("check", CONTRACT)
@pytest.mark.parametrize("name", ALL)
def test_loss_contract(name, check):
    result = run_check(_case(name, C, N), check)
    if result.status == "skip":
        pytest.skip(result.detail)
    assert result.status == "pass", f"{name}: {check}: {result.detail}"


def test_ignore_index_and_weight_follow_torch():
    logits, target = _inputs("ce", seed=9)
    target[2] = -100
    w = torch.rand(C) + 0.5
    ours = build_loss("ce", weight=w)(logits, target)
    ref = torch.nn.functional.cross_entropy(logits, target, weight=w)
    torch.testing.assert_close(ours, ref)


def test_out_of_range_param_rejected():
    with pytest.raises(UsageError, match="epsilon"):
        build_loss("label_smoothing", epsilon=1.5)


def test_list_losses_filters_by_family_and_properties():
    from losscli.losses import list_losses, loss_info

    robust = list_losses(family="noise-robust")
    assert "gce" in robust and "ce" not in robust
    multilabel = list_losses(multilabel=True)
    assert set(multilabel) == {"bce", "sigmoid_focal", "asl"}
    assert all(loss_info(n).needs_class_counts for n in list_losses(needs_class_counts=True))
    assert loss_info("cross_entropy").name == "ce"
