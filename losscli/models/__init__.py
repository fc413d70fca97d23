"""Small model factories: linear, mlp, cnn1d, resnet, bow.

>>> from losscli.models import build_model
>>> model = build_model("auto", (40,), 10, kind="sequence1d")   # -> cnn1d
>>> logits = model(x); feats = model.features(x); model.head   # nn.Linear(D, C)
"""

from __future__ import annotations

from losscli.models.base import (AUTO, MODELS, Classifier, auto_model, build_model, model_options, register_model,
                                 weight_bytes)

from losscli.models import bow, cnn1d, linear, mlp, resnet  # noqa: E402,F401  (register)

__all__ = ["AUTO", "MODELS", "Classifier", "auto_model", "build_model", "model_options", "register_model",
           "weight_bytes"]
