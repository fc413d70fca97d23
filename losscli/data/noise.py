"""Label noise on the training split: symmetric, asymmetric (class map / pair flip),
instance-dependent. Val and test labels are never changed.

Exact counts (not just expected ones):

* ``sym:r`` flips exactly ``round(r * N)`` samples, each to a uniformly chosen *other* class.
* ``pair:r`` flips exactly ``round(r * n_c)`` samples of every class ``c`` to ``(c + 1) mod C``
  (the "pair flip" of Han et al. 2018, Co-teaching).
* ``asym:r`` uses the dataset's standard class map where one is defined (Patrini et al.
  2017: MNIST 2->7, 3->8, 5<->6, 7->1; CIFAR-10 truck->automobile,
  bird->airplane, deer->horse, cat<->dog), flipping exactly ``round(r * n_c)`` samples of each
  mapped class; other datasets fall back to the pair flip. The map used is recorded.
* ``instance:r`` (after Xia et al. 2020, "Part-dependent label noise", NeurIPS): every sample
  draws a flip rate ``q_i ~ N(r, 0.1^2)`` clipped to [0, 1]; exactly ``round(r * N)`` samples are
  chosen with probability proportional to ``q_i``; each chosen sample's new label is drawn from
  ``softmax(z_i W_{y_i})`` over the other classes, where ``z_i`` is a fixed random projection of
  the standardised input and ``W_c`` random Gaussian matrices, so hard-to-separate inputs flip
  towards input-dependent classes.
* ``file:PATH`` and the CIFAR-N label sets (``cifar10n:aggre``...) are real-world noise: each
  example's noisy label is read (``realnoise.py``), and the rate reported is the measured one.

Every function takes its own ``torch.Generator``; the global RNGs are never touched.
"""

from __future__ import annotations

import torch

from losscli.data.bundle import DataBundle
from losscli.data.settings import NoiseSpec, parse_noise_spec
from losscli.errors import UsageError

#: standard asymmetric class maps (Patrini et al. 2017), keyed by dataset name
CLASS_MAPS: dict[str, dict[int, int]] = {
    "mnist": {2: 7, 3: 8, 5: 6, 6: 5, 7: 1},
    "cifar10": {9: 1, 2: 0, 4: 7, 3: 5, 5: 3},
}
PROJECTION_DIM = 64


def transition_matrix(clean: torch.Tensor, noisy: torch.Tensor, num_classes: int) -> list[list[float]]:
    """Empirical ``T[i][j] = P(noisy = j | clean = i)``; a class without samples gets the identity row."""
    counts = torch.zeros(num_classes, num_classes, dtype=torch.float64)
    counts.index_put_((clean, noisy), torch.ones(len(clean), dtype=torch.float64), accumulate=True)
    rows = counts.sum(1, keepdim=True)
    T = torch.where(rows > 0, counts / rows.clamp_min(1), torch.eye(num_classes, dtype=torch.float64))
    return [[float(v) for v in row] for row in T]


def _sym(y: torch.Tensor, rate: float, C: int, g: torch.Generator) -> torch.Tensor:
    n = len(y)
    m = int(round(rate * n))
    idx = torch.randperm(n, generator=g)[:m]
    shift = torch.randint(1, C, (m,), generator=g)
    out = y.clone()
    out[idx] = (y[idx] + shift) % C
    return out


def _mapped(y: torch.Tensor, rate: float, mapping: dict[int, int], g: torch.Generator) -> torch.Tensor:
    out = y.clone()
    for src in sorted(mapping):
        idx = torch.nonzero(y == src).flatten()
        m = int(round(rate * len(idx)))
        chosen = idx[torch.randperm(len(idx), generator=g)[:m]]
        out[chosen] = mapping[src]
    return out


def _instance(x: torch.Tensor, y: torch.Tensor, rate: float, C: int, g: torch.Generator) -> torch.Tensor:
    n = len(y)
    m = int(round(rate * n))
    out = y.clone()
    if m == 0:
        return out
    feats = x.reshape(n, -1).to(torch.float32)
    feats = (feats - feats.mean(0)) / feats.std(0).clamp_min(1e-6) if n > 1 else feats
    d = feats.shape[1]
    proj = torch.randn(d, PROJECTION_DIM, generator=g) / d ** 0.5
    z = feats @ proj  # [n, P], roughly unit variance per coordinate
    q = (rate + 0.1 * torch.randn(n, generator=g)).clamp(0.0, 1.0).clamp_min(1e-6)
    W = torch.randn(C, PROJECTION_DIM, C, generator=g)
    chosen = torch.multinomial(q, m, replacement=False, generator=g)
    zc, yc = z[chosen], y[chosen]
    logits = torch.einsum("np,npc->nc", zc, W[yc])
    logits[torch.arange(m), yc] = float("-inf")  # never "flip" to the same class
    out[chosen] = torch.multinomial(torch.softmax(logits, dim=1), 1, generator=g).flatten()
    return out


def _corrupt(parsed: NoiseSpec, x: torch.Tensor, y: torch.Tensor, C: int, name: str, g: torch.Generator,
             info: dict) -> torch.Tensor:
    if parsed.kind == "sym":
        return _sym(y, parsed.rate, C, g)
    if parsed.kind == "instance":
        info["method"] = "Xia et al. 2020 style, exact count"
        return _instance(x, y, parsed.rate, C, g)
    mapping = CLASS_MAPS.get(name) if parsed.kind == "asym" and C == 10 else None
    info["method"] = "class map" if mapping else "pair flip c -> (c+1) mod C"
    mapping = mapping or {c: (c + 1) % C for c in range(C)}
    info["class_map"] = [[int(k), int(v)] for k, v in sorted(mapping.items())]
    return _mapped(y, parsed.rate, mapping, g)


def apply_noise(bundle: DataBundle, spec: str | NoiseSpec, seed: int, *, noisy_val: bool = True,
                data_dir: str | None = None) -> DataBundle:
    """A new bundle whose ``y_train`` is corrupted per ``spec`` (``y_train_clean`` kept).

    With ``noisy_val`` (the default) the validation labels carry the same kind of noise, drawn
    independently: that is the validation set a practitioner with noisy labels really has, so model
    selection (best epoch, tuning) is not optimistic. The test split always stays clean.
    Real-world noise (``file:PATH``, CIFAR-N label sets found in ``data_dir``) reads each example's
    noisy label instead (``losscli.data.realnoise``); its rate is the measured one.
    """
    parsed = parse_noise_spec(spec)
    C = bundle.num_classes
    clean = bundle.y_train_clean
    info: dict = {"spec": str(parsed), "kind": parsed.kind, "rate": parsed.rate, "seed": int(seed),
                  "validation": "clean" if parsed.kind == "none" or not noisy_val else "noisy (same noise as training)"}
    if bundle.is_regression:  # label noise flips classes; float targets have none
        if parsed.kind != "none":
            raise UsageError(f"label noise {parsed} flips class labels; {bundle.name} is a regression dataset "
                             "(float targets): use noise none")
        out = bundle.replace(y_train=clean.clone())
        out.info["noise"] = {**info, "num_flipped": 0, "actual_fraction_flipped": 0.0}
        return out
    noisy, y_val = clean.clone(), bundle.y_val
    if parsed.is_real:
        from losscli.data.realnoise import real_noise

        noisy, y_val, more = real_noise(bundle, parsed, noisy_val, data_dir)
        info.update(more)
    elif parsed.kind != "none":
        if C < 2:
            raise UsageError(f"label noise needs at least 2 classes, {bundle.name} has {C}")
        noisy = _corrupt(parsed, bundle.x_train, clean, C, bundle.name, torch.Generator().manual_seed(int(seed)), info)
        if noisy_val and len(y_val):
            # an independent stream: the training labels do not depend on whether validation is noisy
            g_val = torch.Generator().manual_seed(int(seed) * 1_000_003 + 104_729)
            y_val = _corrupt(parsed, bundle.x_val, y_val, C, bundle.name, g_val, {})
            info["val_num_flipped"] = int((y_val != bundle.y_val).sum())
    flipped = int((noisy != clean).sum())
    info["num_flipped"] = flipped
    info["actual_fraction_flipped"] = flipped / max(len(clean), 1)
    if parsed.is_real:  # a measured rate, where synthetic noise has the one it was asked for
        info["rate"] = info["actual_fraction_flipped"]
    info["transition_matrix"] = transition_matrix(clean, noisy, C)
    out = bundle.replace(y_train=noisy, y_val=y_val)
    out.info["noise"] = info
    return out
