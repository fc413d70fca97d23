"""Models: shapes, the head/features contract, functional_call + vmap over stacked copies."""

from __future__ import annotations

import copy

import pytest
import torch
from torch import nn
from torch.func import functional_call, stack_module_state, vmap

from losscli.errors import UsageError
from losscli.models import AUTO, MODELS, auto_model, build_model, model_options

# (name, input_shape, kind, options): small options keep the tests fast
CASES = [
    ("linear", (20,), "vector", {}),
    ("linear", (1, 8, 8), "image", {}),
    ("mlp", (40,), "sequence1d", {}),
    ("mlp", (3, 8, 8), "image", {"hidden": 16, "depth": 3}),
    ("cnn1d", (40,), "sequence1d", {}),
    ("cnn1d", (2, 24), "sequence1d", {"channels": 8}),
    ("resnet", (3, 16, 16), "image", {"width": 8, "blocks": 1}),
    ("resnet", (1, 12, 12), "image", {"width": 8, "blocks": 1, "norm": "none"}),
    ("bow", (12,), "tokens", {"vocab_size": 500, "embed_dim": 16, "hidden": 8}),
]
IDS = [f"{c[0]}-{'x'.join(map(str, c[1]))}" for c in CASES]


def make_input(shape, kind, n=5, seed=0):
    g = torch.Generator().manual_seed(seed)
    if kind == "tokens":
        x = torch.randint(1, 500, (n, *shape), generator=g)
        x[:, shape[0] // 2:] = 0  # padding
        x[0] = 0  # an all-padding row must not produce NaN
        return x
    return torch.randn(n, *shape, generator=g)


def test_every_model_is_covered():
    assert {c[0] for c in CASES} == set(MODELS.names())


@pytest.mark.parametrize("name,shape,kind,opts", CASES, ids=IDS)
def test_shapes_and_head_contract(name, shape, kind, opts):
    torch.manual_seed(0)
    model = build_model(name, shape, 7, kind=kind, **opts)
    x = make_input(shape, kind)
    logits = model(x)
    assert logits.shape == (5, 7) and logits.dtype == torch.float32
    assert torch.isfinite(logits).all()
    assert isinstance(model.head, nn.Linear) and model.head.out_features == 7
    feats = model.features(x)
    assert feats.shape == (5, model.head.in_features)
    assert torch.allclose(logits, model.head(feats))
    # gradients reach the first layer
    logits.sum().backward()
    first = next(p for p in model.parameters() if p.grad is not None)
    assert first.grad is not None
    # a loss-provided head can replace the linear one
    model.head = nn.Sequential(nn.Linear(feats.shape[1], 3, bias=False), nn.Tanh())
    assert model(x).shape == (5, 3)


@pytest.mark.parametrize("name,shape,kind,opts", CASES, ids=IDS)
def test_vmap_over_stacked_copies_matches_separate_forwards(name, shape, kind, opts):
    models = []
    for seed in range(3):
        torch.manual_seed(seed)
        models.append(build_model(name, shape, 4, kind=kind, **opts))
    params, buffers = stack_module_state(models)
    base = copy.deepcopy(models[0]).to("meta")
    x = make_input(shape, kind, n=6)

    def call(p, b, inp):
        return functional_call(base, (p, b), (inp,))

    stacked = vmap(call, in_dims=(0, 0, None))(params, buffers, x)
    separate = torch.stack([m(x) for m in models])
    assert stacked.shape == (3, 6, 4)
    assert torch.allclose(stacked, separate, atol=1e-5, rtol=1e-4)
    assert not torch.allclose(separate[0], separate[1])  # the copies really differ
    # per-model inputs (in_dims=0) work too, and gradients match separate backward passes
    # (in float64, so that the comparison does not depend on float32 conditioning)
    models = [m.double() for m in models]
    params, buffers = stack_module_state(models)
    base = copy.deepcopy(models[0]).to("meta")
    xs = torch.stack([make_input(shape, kind, n=6, seed=s) for s in range(3)])
    if xs.dtype.is_floating_point:
        xs = xs.double()

    def loss(p, b, inp):
        return functional_call(base, (p, b), (inp,)).logsumexp(1).mean()

    grads = vmap(torch.func.grad(loss), in_dims=(0, 0, 0))(params, buffers, xs)
    for i, m in enumerate(models):
        m.zero_grad()
        m(xs[i]).logsumexp(1).mean().backward()
        for k, p in m.named_parameters():
            assert torch.allclose(grads[k][i], p.grad, atol=1e-10, rtol=1e-8), k


def test_auto_model():
    assert auto_model("sequence1d") == "cnn1d" and auto_model("vector") == "mlp"
    assert auto_model("image") == "resnet" and auto_model("tokens") == "bow"
    assert set(AUTO) == {"sequence1d", "vector", "image", "tokens"}
    assert type(build_model("auto", (40,), 10, kind="sequence1d")).__name__ == "CNN1d"
    with pytest.raises(UsageError, match="needs the data kind"):
        build_model("auto", (40,), 10)
    with pytest.raises(UsageError):
        auto_model("graph")


def test_model_errors():
    with pytest.raises(UsageError, match="Did you mean 'mlp'"):
        build_model("mpl", (4,), 2)
    with pytest.raises(UsageError, match="unknown option 'hiden'.*hidden=100"):
        build_model("mlp", (4,), 2, hiden=3)
    with pytest.raises(UsageError, match="does not support image data"):
        build_model("bow", (3, 32, 32), 10, kind="image")
    with pytest.raises(UsageError, match="norm"):
        build_model("resnet", (3, 32, 32), 10, norm="layer")
    with pytest.raises(UsageError, match="too short"):
        build_model("cnn1d", (2,), 10)
    with pytest.raises(UsageError, match="num_classes"):
        build_model("linear", (4,), 0)


def test_defaults_match_the_papers():
    mlp = build_model("mlp", (40,), 10)
    assert [m.out_features for m in mlp.modules() if isinstance(m, nn.Linear)] == [100, 100, 10]
    cnn = build_model("cnn1d", (40,), 10)
    convs = [m for m in cnn.modules() if isinstance(m, nn.Conv1d)]
    assert len(convs) == 3 and all(c.out_channels == 25 for c in convs)
    assert cnn.head.in_features == 125
    assert not any(isinstance(m, nn.modules.batchnorm._BatchNorm) for m in cnn.modules())
    resnet = build_model("resnet", (3, 32, 32), 10)
    assert resnet(torch.randn(2, 3, 32, 32)).shape == (2, 10) and resnet.head.in_features == 128
    assert [m.num_groups for m in resnet.modules() if isinstance(m, nn.GroupNorm)][:2] == [4, 4]
    assert any(isinstance(m, nn.BatchNorm2d) for m in build_model("resnet", (3, 32, 32), 10, norm="batch").modules())
    assert model_options("resnet") == {"width": 32, "blocks": 2, "norm": "group"}


def test_bow_ignores_padding_like_embedding_bag():
    torch.manual_seed(0)
    model = build_model("bow", (6,), 3, vocab_size=50, embed_dim=4, hidden=4)
    x = torch.tensor([[5, 7, 0, 0, 0, 0], [5, 7, 9, 0, 0, 0]])
    bag = nn.EmbeddingBag(50, 4, mode="mean", padding_idx=0)
    bag.weight.data.copy_(model.embedding.weight.data)
    pooled = bag(x)
    assert torch.allclose(model.features(x), model.mlp(pooled), atol=1e-6)
    padded_more = torch.tensor([[5, 7, 0, 0, 0, 0, 0, 0]])
    longer = build_model("bow", (8,), 3, vocab_size=50, embed_dim=4, hidden=4)
    longer.load_state_dict(model.state_dict())
    assert torch.allclose(longer(padded_more), model(x[:1]), atol=1e-6)
