"""Losses that are weighted sums of terms of one softmax (APL family, Dice, ASL-single), fused.

Written with autograd, each term keeps several ``[N, C]`` intermediates and runs a chain of
``[N, C]`` kernels in backward. Here the loss runs in one ``softmax_core.blocked`` node: per
block of rows (small enough to stay in cache) one softmax; each term adds its value and its
share of the row gradient ``dl/dz``, in the form

    H = D + p * cp + const + e_y * cy        (D dense [B, C]; cp, const, cy per row [B, 1])

(the gradient of a function of ``log p`` with ``G = dl/dlog p`` is ``G - p sum_k G_k``; every
term below is written that way), and backward is one multiply. Everything is float-exact:
``log p = z - logsumexp(z)`` (no ``log`` of a rounded probability), ``1 - p`` and ``log p`` at a
saturated softmax come from the sum of the other probabilities (``SoftmaxBlock``,
``softmax_core.Saturation``), ``log p_y`` from ``softmax_core.target_log_prob``.
"""

from __future__ import annotations

import torch

from losscli.losses.fused.far_rows import worth_a_pass
from losscli.losses.fused.softmax_core import Saturation, blocked, target_log_prob


def _is_small_int(x: float) -> bool:
    return x == int(x) and 1 <= x <= 16


def _sum_rounding_error(a: torch.Tensor, b: torch.Tensor, total: torch.Tensor) -> torch.Tensor:
    """``(a + b) - total`` exactly, for ``total = fl(a + b)`` (Dekker's Fast2Sum with the larger operand
    first; per-row ``[B, 1]`` tensors, so the cost is nil)."""
    a_big = a.abs() >= b.abs()
    big, small = torch.where(a_big, a, b), torch.where(a_big, b, a)
    return small - (total - big)


class SoftmaxBlock:
    """Softmax quantities of one block of rows, each computed at most once.

    Where a row's softmax saturates (``p_max > 1/2``, ``softmax_core.Saturation``, computed only
    for the terms that need it), the maximum's ``1 - p`` is the sum of the other probabilities
    and its ``log p`` is ``log1p(-(1 - p))``, so ``1 - p``, ``log p`` and every term built from
    them stay exact (and consistent with each other) up to margins where ``1 - p_max`` underflows.
    ``log p_y`` is exact the same way (``target_log_prob``) for every term.
    """

    def __init__(self, z: torch.Tensor, idx: torch.Tensor, out: torch.Tensor | None = None):
        self.z, self.idx = z, idx
        self.c = z.shape[1]
        self.p = torch.softmax(z, dim=1, out=out)  # out: the gradient template (see GradAccumulator)
        self.pmax = self.p.amax(dim=1, keepdim=True)
        self._sat = False  # not looked for yet
        self._zmax = self._lp = self._lp_raw = self._lp_y = self._om = None

    @property
    def sat(self) -> Saturation | None:
        if self._sat is False:
            self._sat = Saturation.find(self.p, self.pmax)
        return self._sat

    @property
    def lse_parts(self):
        """``(max z, log S)``: ``logsumexp(z) = max z + log S`` and ``log S = -log p_max``."""
        if self._zmax is None:
            self._zmax = self.z.amax(dim=1, keepdim=True)
            self._log_s = self.pmax.log().neg_()
        return self._zmax, self._log_s

    @property
    def lp_raw(self) -> torch.Tensor:
        """``log p = z - logsumexp(z)``, to float rounding in absolute terms (the largest entry of a
        saturated row is its rounded ``-log S``; see ``lp``)."""
        if self._lp_raw is None:
            self._lp_raw = self._log_p()
        return self._lp_raw

    def lp_raw_owned(self) -> torch.Tensor:
        """``lp_raw`` in a tensor the caller may overwrite: a fresh one, not cached (a copy of the cached
        one if a term has asked for it already). A term that only transforms ``log p`` then works in
        place on it instead of writing another ``[B, C]`` tensor."""
        if self._lp_raw is not None:
            return self._lp_raw.clone()
        return self._log_p()

    def _log_p(self) -> torch.Tensor:
        """``z - (max z + log S)`` in one pass, plus a second that subtracts the rounding error of
        ``max z + log S`` where it can exceed float rounding of ``log p``. That error is at most half an
        ulp of the sum: 8 eps below 16 in magnitude, but ``ulp(1e4) / 2 = 5e-4`` for logits near 1e4
        (ngce's value was 2.6e-5 relative off on uniform -1e4 logits). On a CPU ordinary blocks skip
        the second pass; elsewhere it is always made (no device sync)."""
        zmax, log_s = self.lse_parts
        lse = zmax + log_s
        lp = torch.sub(self.z, lse)
        if worth_a_pass(lse):
            lp.sub_(_sum_rounding_error(zmax, log_s, lse))
        return lp

    @property
    def lp(self) -> torch.Tensor:
        """``log p`` exact to float rounding everywhere: ``lp_raw`` with a saturated maximum's entry
        ``log1p(-(1 - p_max))``. Shares ``lp_raw``'s buffer."""
        if self._lp is None:
            lp = self.lp_raw
            s = self.sat
            if s is not None:
                lp.scatter_(1, s.idx, torch.where(s.mask, torch.log1p(-s.rest), lp.gather(1, s.idx)))
            self._lp = lp
        return self._lp

    def take_lp(self) -> torch.Tensor:
        """``lp``, handed over to a caller that will overwrite it (forgotten here: a later request
        computes it again). The last reader of ``log p`` then works in place on it instead of
        writing a fresh ``[B, C]`` tensor (on a CPU 2-3x the cost of a pass over one in cache)."""
        lp = self.lp
        self._lp = self._lp_raw = None
        return lp

    def lp_sum(self) -> torch.Tensor:
        """``sum_k log p_k`` ``[B, 1]``: ``sum_k (z_k - max z) - C log S`` (every term <= 0)."""
        if self._lp_raw is not None:
            return self._lp_raw.sum(dim=1, keepdim=True)
        zmax, log_s = self.lse_parts
        return torch.sub(self.z, zmax).sum(dim=1, keepdim=True).sub_(log_s, alpha=self.c)

    @property
    def lp_y(self) -> torch.Tensor:
        if self._lp_y is None:
            self._lp_y = target_log_prob(self.z, self.p, self.idx)[0]
        return self._lp_y

    @property
    def om(self) -> torch.Tensor:
        """``1 - p``, exact where ``p`` is close to 1."""
        if self._om is None:
            self._om = torch.rsub(self.p, 1.0)
            s = self.sat
            if s is not None:
                self._om.scatter_(1, s.idx, torch.where(s.mask, s.rest, self._om.gather(1, s.idx)))
        return self._om

    def take_om(self) -> torch.Tensor:
        """``om``, handed over like ``take_lp``."""
        om = self.om
        self._om = None
        return om

    def y(self, x: torch.Tensor) -> torch.Tensor:
        return x.gather(1, self.idx)


class GradAccumulator:
    """``H = D + p cp + const + e_y cy``, written into the block of ``H`` at ``finish``.

    ``p_in_h``: the block's softmax was written into ``H`` itself (``SoftmaxBlock(out=h)``), and
    ``finish`` scales it in place (``H = p cp + D``). That saves the block a fresh ``[B, C]`` softmax
    and turns the write of ``D`` into the cold template into passes over data in cache (on an Intel
    Xeon an out-of-place pass over a ``[262, 1000]`` block costs ~2.5x an in-place one). Only for
    terms without a dense ``const`` (``SoftmaxTerm.p_into_template``): ``D`` is then summed in the first
    term's own buffer and ``H = D + p cp`` is one ``addcmul`` over ``p`` in place, the same roundings
    in the same order as the other path (``D + p cp`` cancels heavily in some rows: the order matters).
    """

    def __init__(self, h: torch.Tensor | None, p_in_h: bool = False):
        self.h = h
        self.p_in_h = p_in_h
        self.dense = None
        self._first = None  # p_in_h: (d, coef) of the only dense term so far, not yet scaled
        self.cp = self.const = self.cy = 0.0
        self.top = None  # (g_top, g_top (1 - p_max)): see add_top
        self.extra = None  # (rows, [R, C]): added to those rows of H at the end

    def add_top(self, g_top: torch.Tensor, g_top_om: torch.Tensor) -> None:
        """``dl/dlog p`` has ``g_top`` [B, 1] at the saturated maximum (0 in other rows), too large to be
        combined as ``G - p sum G`` (it grows like ``1/(1 - p_max)``); its share ``g_top (e_max - p)`` is
        added exactly: ``g_top_om = g_top (1 - p_max)`` (finite, from the exact ``1 - p_max``) at the
        maximum and ``-g_top p_k`` (with ``p_k <= 1 - p_max``) elsewhere."""
        self.top = (g_top, g_top_om)

    def add_dense(self, d: torch.Tensor, coef) -> None:
        """``D += d * coef`` (``coef`` a ``[B, 1]`` tensor or a float); ``d`` may be overwritten."""
        if self.p_in_h:
            if self.dense is None and self._first is None:  # scaled in finish's last pass
                self._first = (d, coef)
                return
            if self._first is not None:
                d0, c0 = self._first
                self.dense, self._first = d0.mul_(c0), None
        if self.dense is None:
            self.dense = torch.mul(d, coef, out=self.h)
        else:
            self.dense.addcmul_(d, coef) if isinstance(coef, torch.Tensor) else self.dense.add_(d, alpha=coef)

    def finish(self, st: SoftmaxBlock) -> None:
        h = self.h
        cp, const = self.cp, self.const
        if self.top is not None:
            # p without its maximum times (cp - g_top), the maximum's entry written exactly (p is not used again)
            s = st.sat
            g_top, g_top_om = self.top
            top_entry = st.p.gather(1, s.idx) * cp + g_top_om
            st.p.scatter_(1, s.idx, 0.0)
            cp = cp - g_top
        if not isinstance(cp, torch.Tensor):
            cp = torch.full_like(st.pmax, cp)
        if self.p_in_h:
            if isinstance(const, torch.Tensor) or const != 0.0:
                raise AssertionError("p_in_h: a term added a dense const (see SoftmaxTerm.p_into_template)")
            dense = self.dense
            if self._first is not None:
                d, coef = self._first
                dense = d.mul_(coef)
            if dense is None:
                h.mul_(cp)
            else:  # the same operations in the same order as below (D, then D + p cp): bit-identical
                torch.addcmul(dense, h, cp, out=h)
        elif isinstance(const, torch.Tensor) or const != 0.0:
            if not isinstance(const, torch.Tensor):
                const = torch.full_like(st.pmax, const)
            if self.dense is None:  # const + p cp in one pass
                torch.addcmul(const, st.p, cp, out=h)
            else:
                h.add_(const).addcmul_(st.p, cp)
        elif self.dense is None:
            torch.mul(st.p, cp, out=h)
        else:
            h.addcmul_(st.p, cp)
        if self.top is not None:
            h.scatter_add_(1, s.idx, top_entry)
        if self.extra is not None:
            h.index_add_(0, *self.extra)
        if isinstance(self.cy, torch.Tensor):
            h.scatter_add_(1, st.idx, self.cy)
        elif self.cy != 0.0:
            h.scatter_add_(1, st.idx, torch.full_like(st.pmax, self.cy))


class SoftmaxTerm:
    """One term of a fused softmax loss: ``apply(st, acc, w)`` returns ``w * value`` ``[B, 1]`` and,
    when ``acc`` is not None, adds ``w * dvalue/dz`` to it.

    ``p_into_template``: the term never adds a dense ``const`` to the accumulator (and does not write
    ``st.p``), so the block's softmax may live in the gradient template (``GradAccumulator``)."""

    p_into_template = False

    def apply(self, st: SoftmaxBlock, acc: GradAccumulator | None, w: float) -> torch.Tensor:
        raise NotImplementedError


def _row_grad(acc: GradAccumulator, st: SoftmaxBlock, g_dense, dense, g_y, total=None) -> None:
    """Add the gradient of a term with ``dl/dlog p = g_dense * dense + e_y g_y`` (``dense`` [B, C] or None
    for all-ones): ``G - p sum G``. ``total``: ``dense``'s row sums if the term has them already."""
    if dense is None:  # G = g_dense (every class) + e_y g_y
        acc.const = acc.const + g_dense
        acc.cp = acc.cp - (g_dense * st.c + g_y)
    else:
        total = dense.sum(dim=1, keepdim=True) if total is None else total
        acc.add_dense(dense, g_dense)
        acc.cp = acc.cp - (g_dense * total + g_y)
    acc.cy = acc.cy + g_y


def fused_softmax_loss(logits: torch.Tensor, target: torch.Tensor, terms) -> torch.Tensor:
    """``sum_t weight_t * term_t`` per sample, ``terms = [(weight, SoftmaxTerm), ...]``, one autograd node."""
    terms = tuple(terms)

    p_in_h = all(term.p_into_template for _, term in terms)

    def kernel(zb, hb, tb):
        st = SoftmaxBlock(zb, tb.unsqueeze(1), hb if p_in_h else None)
        acc = GradAccumulator(hb, p_in_h) if hb is not None else None
        out = None
        for weight, term in terms:
            v = term.apply(st, acc, weight)
            out = v if out is None else out.add_(v)
        if acc is not None:
            acc.finish(st)
        return out.squeeze(1)

    # blocks of 2^19 elements, not the default 2^18: with the softmax in the template these kernels keep
    # few [B, C] buffers live, and the larger blocks measured 0.91-0.95x the time for asl_single,
    # ngce and nfl (0.94-0.99x for dice, nfl_rce, sce, nce_rce; ~1.0 for rce, nce) on an Intel Xeon
    # with 2 MB of L2 per core (paired A/B, one thread)
    return blocked(logits, kernel, target, block_scale=2)
