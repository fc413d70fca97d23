"""A deterministic hashing tokenizer: no vocabulary file, no pretrained weights.

Text is lower-cased and split into word tokens (runs of letters/digits/underscore) and
single punctuation marks; each token maps to ``1 + crc32(token) % (vocab_size - 1)``.
Id 0 is padding. Sequences are truncated or right-padded to ``max_len``.
"""

from __future__ import annotations

import re
import zlib
from typing import Iterable

import torch

from losscli.errors import UsageError

PAD_ID = 0
DEFAULT_VOCAB_SIZE = 2 ** 16
DEFAULT_MAX_LEN = 128
_TOKEN = re.compile(r"\w+|[^\w\s]", re.UNICODE)


def words(text: str) -> list[str]:
    return _TOKEN.findall(str(text).lower())


def token_id(token: str, vocab_size: int = DEFAULT_VOCAB_SIZE) -> int:
    return 1 + zlib.crc32(token.encode("utf-8")) % (vocab_size - 1)


def hash_tokenize(texts: Iterable[str], vocab_size: int = DEFAULT_VOCAB_SIZE, max_len: int = DEFAULT_MAX_LEN) -> torch.Tensor:
    """``[N, max_len]`` int64 token ids (0 = padding)."""
    if vocab_size < 2:
        raise UsageError(f"vocab_size must be >= 2, got {vocab_size}")
    if max_len < 1:
        raise UsageError(f"max_len must be >= 1, got {max_len}")
    rows = []
    for text in texts:
        ids = [token_id(t, vocab_size) for t in words("" if text is None else text)[:max_len]]
        rows.append(ids + [PAD_ID] * (max_len - len(ids)))
    if not rows:
        return torch.zeros(0, max_len, dtype=torch.int64)
    return torch.tensor(rows, dtype=torch.int64)
