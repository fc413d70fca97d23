"""Bag-of-embeddings text classifier: mean of token embeddings (padding id 0 excluded),
then an MLP. Same result as ``nn.EmbeddingBag(mode="mean", padding_idx=0)``, written as
``nn.Embedding`` + masked mean because EmbeddingBag with ``padding_idx`` has no vmap
batching rule (it falls back to a slow loop)."""

from __future__ import annotations

import torch
from torch import nn

from losscli.data.tokenize import DEFAULT_VOCAB_SIZE, PAD_ID
from losscli.models.base import Classifier, positive, register_model


@register_model("bow", kinds=("tokens",))
class BagOfEmbeddings(Classifier):
    """Mean of token embeddings + MLP (``vocab_size`` must cover the token ids)."""

    def __init__(self, input_shape: tuple[int, ...], num_classes: int, *, vocab_size: int = DEFAULT_VOCAB_SIZE,
                 embed_dim: int = 64, hidden: int = 64):
        super().__init__()
        self.vocab_size = positive(vocab_size, "bow: vocab_size")
        embed_dim, hidden = positive(embed_dim, "bow: embed_dim"), positive(hidden, "bow: hidden")
        self.embedding = nn.Embedding(self.vocab_size, embed_dim, padding_idx=PAD_ID)
        self.mlp = nn.Sequential(nn.Linear(embed_dim, hidden), nn.ReLU())
        self.head = nn.Linear(hidden, num_classes)

    def features(self, x: torch.Tensor) -> torch.Tensor:
        ids = x.reshape(x.shape[0], -1).long()
        mask = (ids != PAD_ID).to(self.embedding.weight.dtype).unsqueeze(-1)
        pooled = (self.embedding(ids) * mask).sum(1) / mask.sum(1).clamp_min(1.0)
        return self.mlp(pooled)
