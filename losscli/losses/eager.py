"""``eager_under_compile``: ``torch.compiler.disable`` without its import cost.

``torch.compiler.disable`` imports ``torch._dynamo`` (about 1.5 s here) the moment it decorates a
function, and three loss modules decorate one at import: every command and every worker process
that loads the losses paid for it, compiling or not. The wrapper calls the function directly in
eager mode and builds the disabled version only when a compiled region calls it, when dynamo is
loaded anyway.
"""

from __future__ import annotations

import functools
from typing import Callable, TypeVar

import torch

F = TypeVar("F", bound=Callable)


@functools.lru_cache(maxsize=None)
def _disabled(fn: Callable) -> Callable:
    return torch.compiler.disable(fn)


def eager_under_compile(fn: F) -> F:
    """Run ``fn`` eagerly even inside ``torch.compile`` (a graph break around it), like
    ``torch.compiler.disable``, with dynamo imported only when compiling."""

    @functools.wraps(fn)
    def call(*args, **kwargs):
        if torch.compiler.is_compiling():
            return _disabled(fn)(*args, **kwargs)
        return fn(*args, **kwargs)

    return call  # type: ignore[return-value]
