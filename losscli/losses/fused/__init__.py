"""Fused autograd nodes shared by several losses (not losses themselves).

- ``softmax_terms``: losses that are sums of terms of the softmax (APL family, Dice, ASL-single):
  one log-softmax, each term supplies its value and gradient with respect to log p;
- ``column_sums``: batch-level metric surrogates (Jaccard, AnyLoss) that need only the column
  sums of the softmax and the target entries;
- ``row_linear``: a softmax cross-entropy plus a per-row term (MbLS, ACLS, circle, KD, Z-losses,
  squentropy, LogitNorm/LogitClip), whose gradient is linear in the incoming row gradient;
- ``gram``: losses of the cosine similarities of embeddings (multi_similarity, tcm): one
  ``[N, N]`` product forward and one backward, the loss supplying its gradient with its value;
- ``powers``: cheap integer powers (torch's CPU ``pow`` with other exponents is a slow pass);
- ``heap``: keeps freed ``[N, C]`` buffers in the process (glibc malloc settings), so that each
  step does not page-fault its temporaries back in; applied once, when this package is imported
  (every ``import losscli.losses`` does), ``LOSSCLI_MALLOC_TUNING=0`` to opt out.
"""

from losscli.losses.fused.heap import keep_freed_buffers as _keep_freed_buffers

_keep_freed_buffers()
