"""Per-example test outcomes of one run: what the test-set bootstrap of the compare report needs.

Small numpy arrays (no logits): the label, the prediction, top-label confidence, probability of
the label, whether the label is in the top 5, and the example's Brier term. Every metric that
is an average over examples (or a ratio of such averages, per class or per confidence bin) can
be recomputed from them for any reweighting of the test set.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch


def example_outcomes(logits: Any, labels: Any) -> dict[str, np.ndarray]:
    from losscli.metrics.checks import check_any

    z, y = check_any(logits, labels, "logits")
    p = torch.softmax(z, dim=1)
    conf, pred = p.max(dim=1)
    k = min(5, z.shape[1])
    top5 = (z.topk(k, dim=1).indices == y[:, None]).any(dim=1)
    onehot = torch.nn.functional.one_hot(y, z.shape[1]).to(p.dtype)
    return {
        "y": y.numpy().astype(np.int64),
        "pred": pred.numpy().astype(np.int64),
        "conf": conf.numpy(),
        "p_true": p.gather(1, y[:, None]).squeeze(1).numpy(),
        "top5": top5.numpy(),
        "brier": ((p - onehot) ** 2).sum(1).numpy(),
        "num_classes": np.int64(z.shape[1]),
    }
