"""Input kinds (LossInfo.input / .target): validation messages, metadata and the wrappers that refuse them."""

from __future__ import annotations

import pytest
import torch

from losscli.errors import UsageError
from losscli.losses import LOSSES, Loss, LossInputError, build_loss, linear_loss, list_losses
from losscli.losses.meta import Reference, register_loss


def test_declared_kinds_of_the_new_losses():
    assert set(list_losses(input="embeddings")) == {"multi_similarity", "tcm"}
    assert list_losses(input="sets") == ["oko"]
    assert list_losses(target="regression") == ["hl_gauss"]
    assert {n for n in LOSSES.names() if not LOSSES.get(n).info.stackable} >= {"oko", "multi_similarity", "tcm", "hl_gauss"}
    props = LOSSES.get("oko").info.to_dict()["properties"]
    assert props["input"] == "sets" and props["target"] == "class" and props["stackable"] is False
    assert LOSSES.get("ce").info.to_dict()["properties"]["input"] == "logits"


def test_unknown_kind_is_rejected_at_registration():
    with pytest.raises(ValueError, match="input must be one of"):
        @register_loss("test_bad_kind", family="standard", reference=Reference("t", "a", 2000), formula="f",
                       input="images")
        class _Bad(Loss):  # pragma: no cover - never built
            pass


@pytest.mark.parametrize("name, x, target, match", [
    ("multi_similarity", torch.randn(4, 3, 2), torch.tensor([0, 1, 0, 1]), r"embeddings must be floating point \[N, D\]"),
    ("multi_similarity", torch.randn(4, 3), torch.tensor([0, 1, 0]), r"\[N=4\] integer labels"),
    ("oko", torch.randn(2, 3, 4), torch.tensor([[0, 0, 1], [1, 1, 9]]), r"member labels must be in \[0, 3\]"),
    ("oko", torch.randn(2, 3, 4).int(), torch.tensor([[0, 0, 1], [1, 1, 2]]), "floating point"),
    ("hl_gauss", torch.randn(3, 51), torch.randn(4), r"\[N=3\] floating-point regression values"),
    ("hl_gauss", torch.randn(3), torch.randn(3), r"\[N, C\]"),
])
def test_each_kind_has_one_clear_error(name, x, target, match):
    with pytest.raises(LossInputError, match=match):
        build_loss(name)(x, target)


def test_wrappers_and_linear_loss_refuse_other_kinds():
    for base in ("multi_similarity", "oko", "hl_gauss"):
        with pytest.raises(UsageError, match="not \\[N, C\\] logits with class labels"):
            build_loss("zloss", base=base)
    with pytest.raises(UsageError, match="does not support 'oko'"):
        linear_loss(torch.randn(4, 3), torch.randn(5, 3), torch.tensor([0, 1, 2, 0]), loss="oko")


def test_existing_logits_path_unchanged():
    z = torch.randn(5, 3)
    y = torch.tensor([0, 1, 2, -100, 1])
    torch.testing.assert_close(build_loss("ce")(z, y), torch.nn.functional.cross_entropy(z, y))
    with pytest.raises(LossInputError, match="class-index targets must be integers"):
        build_loss("ce")(z, torch.randn(5))
