"""Build what one run needs: its data (with imbalance and noise), loss, model and context.

Shared by the single-run trainer, the batched trainer and ``eval`` so runs are built
identically everywhere (same seeds, same streams): that is what makes batched results equal
separate ones, and a reloaded model equal the one that was trained.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import torch

from losscli.device import seeded
from losscli.engine.runspec import RunSpec
from losscli.errors import UsageError

# RNG streams derived from the run seed (see losscli.device.seeded_generator)
STREAM_INIT = 1
STREAM_ORDER = 2
STREAM_SETS = 3  # OKO's sets of examples, drawn anew each epoch (engine/steps.py)


def load_base_data(spec: RunSpec, cache: dict | None = None):
    """The dataset before noise (imbalance included: it is fixed by split_seed, not the run seed)."""
    from losscli.data import apply_imbalance, load_dataset

    ds = spec.dataset
    key = (ds.name, ds.data_dir, ds.val_fraction, ds.split_seed, repr(sorted(ds.options.items())), str(spec.imbalance))
    if cache is not None and key in cache:
        return cache[key]
    base = load_dataset(ds.name, data_dir=ds.data_dir, download=ds.download, val_fraction=ds.val_fraction,
                        split_seed=ds.split_seed, options=dict(ds.options))
    bundle = apply_imbalance(base, spec.imbalance, seed=ds.split_seed)
    if cache is not None:
        cache[key] = bundle
    return bundle


def load_run_data(spec: RunSpec, cache: dict | None = None):
    from losscli.data import apply_noise

    return apply_noise(load_base_data(spec, cache), spec.noise, seed=spec.seed, noisy_val=not spec.dataset.clean_val,
                       data_dir=spec.dataset.data_dir)


def build_run_loss(spec: RunSpec, bundle) -> torch.nn.Module:
    """The run's loss, given the training set's class counts (losses that need them read them)."""
    from losscli.losses import build_loss
    from losscli.losses.resolve import check_trainable

    info = spec.loss.info()
    check_trainable(info)
    _check_task(spec.loss.label, info, bundle)
    if bundle.is_regression:  # no classes, so no class counts and no per-class weights
        loss_fn = build_loss(spec.loss)
        _check_support(spec.loss.label, loss_fn, bundle)
        return loss_fn
    weight = spec.loss.options.get("weight")
    if weight is not None and len(weight) != bundle.num_classes:
        raise UsageError(f"{spec.loss.label}: weight has {len(weight)} entries but {bundle.name} has "
                         f"{bundle.num_classes} classes; give one weight per class")
    loss_fn = build_loss(spec.loss, class_counts=[float(c) for c in bundle.class_counts])
    if info.input == "sets":  # the set sampler's needs (k + 1 classes present...), before anything is written
        loss_fn.sample_sets(bundle.y_train, torch.Generator(), num_sets=0)
    _probe(spec.loss.label, loss_fn, bundle)
    return loss_fn


#: rows of the batch a loss is tried on before any run
PROBE_ROWS = 8


def _probe(label: str, loss_fn, bundle) -> None:
    """The loss is called once, forward and backward, on random logits and the first training targets,
    before anything trains or is written. A plugin loss (``--loss pkg.module:Name``, a part of a sum) that
    cannot train on this data (``torch.nn:MSELoss`` on class indices, an output without a gradient), and a
    registry loss whose parameters do not fit it (``focal(alpha=[1,2])`` on 3 classes), are one line and
    exit 2 here, not a failure in the first step of every run (after ``train --overwrite`` had already
    deleted the finished run it was to replace). Losses that need the engine's context (embeddings,
    teacher logits) or take sets are not probed."""
    import copy
    import warnings

    from losscli.errors import LossCLIError
    from losscli.losses.base import Loss
    from losscli.losses.plugin import ModuleLoss
    from losscli.plugins import describe_exception

    plugin = any(isinstance(m, ModuleLoss) or (isinstance(m, Loss) and not type(m).__module__.startswith("losscli."))
                 for m in loss_fn.modules())
    if loss_fn.info.needs or loss_fn.info.input != "logits" or not len(bundle.y_train):
        return
    target = bundle.y_train[:PROBE_ROWS]
    columns = output_size(loss_fn, bundle)
    probe = copy.deepcopy(loss_fn)  # a copy: a stateful loss starts its run untouched, and make_head configures it
    if not plugin and probe.make_head(1, columns) is not None:
        return  # it reads its own head's outputs (harmonic's distances), not logits: random logits would fail it
    with torch.random.fork_rng(devices=[]), warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the plugin's own warnings (torch's broadcasting one) say it again below
        logits = torch.randn(target.shape[0], columns, generator=torch.Generator().manual_seed(0), requires_grad=True)
        try:
            out = probe(logits, target)
            out.float().sum().backward()
        except Exception as exc:  # noqa: BLE001 - the plugin's code: any failure is the same answer
            why = " ".join(str(exc).split()) if isinstance(exc, LossCLIError) else describe_exception(exc)
            raise UsageError(f"{label} fails on a batch of {bundle.name} (logits [{target.shape[0]}, {columns}] "
                             f"float32, targets {list(target.shape)} {str(target.dtype).replace('torch.', '')}): "
                             f"{why}" + (f"; check it with `losscli check-loss '{label}'`" if plugin else "")) from None


def _check_task(label: str, info, bundle) -> None:
    """A regression loss needs a regression dataset and a classification loss a classification one."""
    if info.target == "regression" and not bundle.is_regression:
        raise UsageError(f"{label} is a regression loss but {bundle.name} is a classification dataset (integer "
                         "labels); give it a dataset with float targets y (.npz/.csv), or, if its float targets "
                         "are all whole numbers, add --set dataset.options.task=regression")
    if info.target != "regression" and bundle.is_regression:
        raise UsageError(f"{label} is a classification loss but {bundle.name} is a regression dataset (float "
                         "targets); use a regression loss such as hl_gauss")


#: the share of training targets a regression loss's support may clamp (a tail) before a run is refused
MAX_CLAMPED = 0.01


def _check_support(label: str, loss_fn, bundle) -> None:
    """A loss on a bounded support ``[vmin, vmax]`` (hl_gauss) clamps the targets outside it: a few in
    the tails are harmless, most of them (raw targets with a support made for standardised ones) make
    the run meaningless, so that is refused with the targets' range."""
    vmin, vmax = getattr(loss_fn, "vmin", None), getattr(loss_fn, "vmax", None)
    y = bundle.y_train
    if vmin is None or vmax is None or not len(y):
        return
    outside = float(((y < vmin) | (y > vmax)).float().mean())
    if outside > MAX_CLAMPED:
        lo, hi = float(y.min()), float(y.max())
        raise UsageError(f"{label}: {outside:.0%} of {bundle.name}'s training targets (range [{lo:g}, {hi:g}]) lie "
                         f"outside its support [{float(vmin):g}, {float(vmax):g}] and would be clamped; set vmin and "
                         f"vmax to cover them (e.g. vmin={math.floor(lo):g},vmax={math.ceil(hi):g}) or standardise y")


def output_size(loss_fn, bundle) -> int:
    """Columns of the model's output: the classes, or a regression loss's bins (``num_bins``)."""
    return int(loss_fn.num_bins) if bundle.is_regression else bundle.num_classes


def model_name(spec: RunSpec, bundle) -> str:
    """The concrete model of the run (``auto`` resolved from the data kind, once, here)."""
    from losscli.models import auto_model

    return spec.model.name if spec.model.name != "auto" else auto_model(bundle.kind)


def build_run_model(spec: RunSpec, bundle, loss_fn, training: bool = True) -> torch.nn.Module:
    """Model with the run's seeded init; a loss that brings its own head gets it installed. One that
    cannot fit in this machine's memory (``training``: with what training it on the CPU takes) is refused
    before it is built."""
    from losscli.models import build_model

    n_out = output_size(loss_fn, bundle)
    _check_memory(spec, bundle, n_out, training)
    with seeded(spec.seed, STREAM_INIT):
        model = build_model(model_name(spec, bundle), bundle.input_shape, n_out, kind=bundle.kind,
                            **dict(spec.model.options))
        head = _loss_head(spec, loss_fn, model, n_out)
        if head is not None:
            model.head = head
    return model


#: CPU memory of a training run on the CPU in multiples of the model's weights: the weights, their
#: gradients, AdamW's two moments, its temporaries and the best epoch's copy (an mlp with 5e7 parameters
#: peaked at ~6x); on a GPU the CPU holds the built model and that copy
TRAIN_MEMORY_FACTOR = {"cpu": 6, "other": 2}


def _check_memory(spec: RunSpec, bundle, n_out: int, training: bool) -> None:
    """Refuse a model that cannot fit: ``mlp`` with ``hidden=10**9`` spent 37 s allocating before the
    allocator failed (exit 1), and a 10**7-dimensional synthetic dataset had the run killed for memory."""
    from losscli.device import memory_bytes, resolve_device
    from losscli.models import weight_bytes

    memory = memory_bytes()
    weights = weight_bytes(model_name(spec, bundle), bundle.input_shape, n_out, kind=bundle.kind,
                           **dict(spec.model.options))
    if memory is None or weights is None:
        return
    factor = 1
    if training:
        factor = TRAIN_MEMORY_FACTOR["cpu" if resolve_device(spec.device).type == "cpu" else "other"]
    data = sum(t.numel() * t.element_size() for t in (bundle.x_train, bundle.x_val, bundle.x_test)
               if isinstance(t, torch.Tensor))
    need = factor * weights + data
    if need > memory:
        gib = 2**30
        options = ", ".join(f"{k}={v!r}" for k, v in spec.model.options.items())
        what = f"training it takes about {factor}x its weights" if factor > 1 else "it holds its weights"
        raise UsageError(f"model {model_name(spec, bundle)}{f' ({options})' if options else ''} on {bundle.name} has "
                         f"{weights / gib:.3g} GiB of weights; {what} plus {data / gib:.3g} GiB of data, "
                         f"{need / gib:.3g} GiB, more than this machine's {memory / gib:.3g} GiB of memory; choose "
                         "smaller model options (or fewer input features)")


def _loss_head(spec: RunSpec, loss_fn, model: torch.nn.Module, n_out: int) -> torch.nn.Module | None:
    """The output layer the loss brings (None: the model keeps its own), after checking that the model
    has what the loss uses: a ``head`` with ``in_features`` (replaced) and ``features(x)`` (embeddings).
    Every losscli model has both; a plugin model may lack them and then trains the losses that read
    only its logits."""
    in_features = getattr(getattr(model, "head", None), "in_features", None)
    missing = [] if isinstance(in_features, int) else ["head (with in_features)"]
    # probed only without a head: wrapper losses (logitnorm, zloss) bring one only when their base does
    brings_head = bool(missing) and loss_fn.make_head(1, n_out) is not None
    if "embeddings" in loss_fn.info.needs and not callable(getattr(model, "features", None)):
        missing.insert(0, "features(x)")
    if missing and (brings_head or "embeddings" in loss_fn.info.needs):
        why = ("brings its own output layer, which replaces the model's head" if brings_head
               else "takes the model's penultimate features as embeddings")
        raise UsageError(f"{spec.loss.label} {why}, but model {spec.model.name!r} has no {' or '.join(missing)}; "
                         "give the model features(x) -> [N, D] and head = nn.Linear(D, C) (see "
                         "examples/custom_model.py), or use a loss that reads only the logits")
    return loss_fn.make_head(in_features, n_out) if not missing else None


def restore_run(loaded, device: torch.device, cache: dict | None = None):
    """Rebuild a finished run's (model, loss, bundle) from its directory (a ``rundir.LoadedRun``)."""
    spec = loaded.spec
    bundle = load_run_data(spec, cache)
    loss_fn = build_run_loss(spec, bundle)
    model = build_run_model(spec, bundle, loss_fn, training=False)
    state = loaded.state()
    model_state = {k[len("model."):]: v for k, v in state.items() if k.startswith("model.")}
    loss_state = {k[len("loss."):]: v for k, v in state.items() if k.startswith("loss.")}
    try:
        model.load_state_dict(model_state)
        if loss_state:
            loss_fn.load_state_dict(loss_state, strict=False)
    except RuntimeError as exc:
        # torch's first line only names the model class ("Error(s) in loading state_dict for MLP:"): quote the
        # first actual mismatch (a size mismatch, missing or unexpected keys) and count the rest
        lines = [line.strip() for line in str(exc).splitlines() if line.strip()]
        details = lines[1:] or lines[:1]
        more = f"; and {len(details) - 1} more" if len(details) > 1 else ""
        raise UsageError(f"{loaded.run_dir / 'model.pt'} does not fit the run's model ({details[0][:200]}{more}); "
                         "retrain the run (or delete its directory)") from None
    return model.to(device), loss_fn.to(device), bundle


def loss_context(loss_fn, idx: torch.Tensor, epoch: int, teacher_logits: torch.Tensor | None,
                 embeddings: torch.Tensor | None = None) -> dict:
    """Forward keyword arguments a loss asked for (``needs``/``uses``), by the shared names."""
    info = loss_fn.info
    wanted = set(info.needs) | set(info.uses)
    ctx: dict[str, Any] = {}
    if "embeddings" in wanted and embeddings is not None:
        ctx["embeddings"] = embeddings
    if "index" in wanted:
        ctx["index"] = idx
    if "epoch" in wanted:
        ctx["epoch"] = epoch - 1  # losses see the 0-based epoch index (LDAM-DRW's `epoch // 160` convention)
    if "teacher_logits" in wanted and teacher_logits is not None:
        ctx["teacher_logits"] = teacher_logits[idx]
    return ctx


@dataclass
class DeviceData:
    """A bundle's splits on the training device (small datasets live there whole)."""

    x_train: torch.Tensor
    y_train: torch.Tensor
    y_train_clean: torch.Tensor
    x_val: torch.Tensor
    y_val: torch.Tensor
    x_test: torch.Tensor
    y_test: torch.Tensor

    @classmethod
    def from_bundle(cls, bundle, device: torch.device) -> "DeviceData":
        return cls(*(getattr(bundle, k).to(device) for k in
                     ("x_train", "y_train", "y_train_clean", "x_val", "y_val", "x_test", "y_test")))
