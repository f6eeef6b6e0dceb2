"""The fast fine-tuning path: LoRA on the article's two-layer model with gradients by hand, no autograd.

The general path (training.train) runs autograd and torch.optim.Adam on any model. This path applies to one
model only, `layer2(layer1(x))` with both bias-free layers adapted (see `applies`), and follows the same
trajectory: same initial A and B, same batches from `training.batches`, Adam's formula op for op, same
per-epoch losses, callbacks, cancellation and divergence rules. Two observations make it cheap:

1. The base weights W1: [hidden, d_in] and W2: [d_out, hidden] are frozen and the data never changes, so the
   base model's activations are computed once per fine-tune: H0 = x W1^T and the base residual
   E0 = H0 W2^T - y. With u = x A1^T: [b, r] and s = alpha / r,

       h = H0 + s u B1^T                                                          [b, hidden]
       v = h A2^T = H0 A2^T + s u (A2 B1)^T                                       [b, r]
       R = out - y = E0 + s u P^T + s v B2^T,     P = W2 B1                       [b, d_out]

   so no step multiplies a batch by W1 or W2. The only d x d work left is two matrix-vector products with W2
   per step (P, and W2^T applied to R^T u for B1's gradient), O(hidden * d_out * r); the rest is
   O(b * (d_in + hidden + d_out) * r).
2. With the big products gone, the fixed cost of autograd and of torch.optim.Adam dominates, so the gradients
   are written out below, every op writes into a buffer made once, and Adam runs as seven in-place ops on one
   flat buffer holding all four factors. The loop runs on one CPU thread: its ops are too small to share.

Gradients of L = mean(R^2) = sum(R^2) / (b * d_out), with dL/dR = c R, c = 2 / (b * d_out):

    dB2 = c s R^T v               dv = c s R B2                    dL/dh = c R W2 + dv A2
    dA2 = dv^T h = dv^T H0 + s (dv^T u) B1^T
    dB1 = s (dL/dh)^T u = W2^T (c s R^T u) + s A2^T (dv^T u)
    du  = s (dL/dh) B1 = c s R P + s dv (A2 B1)
    dA1 = du^T x

The flat buffer stores every factor as an [r, dim] block, A1 | B1^T | A2 | B2^T, followed by a work block
P^T, so that [B2^T; P^T] is one [2r, d_out] matrix; with [v^T; u^T] kept as one [2r, b] matrix, R, dB2 together
with R^T u, and dv together with R P each take a single matrix product.
"""

from __future__ import annotations

from collections.abc import Iterable
from itertools import accumulate

import torch
import torch.nn as nn

from ..adapters.lora_layer import LoRALinear
from ..settings.results import EpochDynamics, PhaseHistory
from ..tasks.data import Split
from ..tasks.linear_model import TwoLayerLinear
from .devices import cpu_threads
from .loop import CancelCheck, ProgressCallback, Recorder, epoch_loop
from .optimizers import FLAT_OPTIMIZERS

EVAL_ROWS = 128  # held-out rows per chunk: a chunk's residual stays in cache between its two uses


def applies(model: nn.Module) -> bool:
    """True for the article's model with plain LoRA layers (not DoRA's: its row norms change with every step) on
    both layers, unmerged, bias-free and with one scaling. The base weights may be PiSSA's or OLoRA's residual
    and B may start non-zero: the derivation below holds for any frozen W and any starting factors."""
    if type(model) is not TwoLayerLinear:
        return False
    l1, l2 = model.layer1, model.layer2
    if not (type(l1) is LoRALinear and type(l2) is LoRALinear):
        return False
    if l1.merged or l2.merged or l1.base.bias is not None or l2.base.bias is not None:
        return False
    return l1.rank == l2.rank and l1.scaling == l2.scaling


def base_activations(split: Split, w1: torch.Tensor, w2: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """[x | H0]: [n, d_in + hidden] with H0 = x W1^T, and the base residual E0 = H0 W2^T - y: [n, d_out]."""
    h = split.x @ w1.T
    return torch.cat([split.x, h], dim=1), torch.addmm(split.y, h, w2.T, beta=-1)


class _Batch:
    """A step's work buffers for batches of b rows, with every view of them the step uses."""

    def __init__(self, b: int, r: int, d_in: int, hidden: int, d_out: int, like: torch.Tensor) -> None:
        def empty(*shape: int) -> torch.Tensor:
            return torch.empty(*shape, dtype=like.dtype, device=like.device)

        self.xh = empty(b, d_in + hidden)  # gathered [x | H0]
        self.x, self.h = self.xh.split([d_in, hidden], dim=1)
        self.xT, self.hT = self.x.T, self.h.T
        self.res = empty(b, d_out)  # gathered E0, then R
        self.resT, self.res_flat = self.res.T, self.res.view(-1)
        self.vut = empty(2 * r, b)  # [v^T; u^T]
        self.vt, self.ut = self.vut[:r], self.vut[r:]
        self.vuT, self.uT = self.vut.T, self.ut.T
        self.rbp = empty(2 * r, b)  # [dv^T; c s P^T R^T]
        self.dvt, self.prt = self.rbp[:r], self.rbp[r:]
        self.dut = empty(r, b)
        self.q, self.dvu = empty(r, r), empty(r, r)  # A2 B1 and dv^T u
        self.qT, self.dvuT = self.q.T, self.dvu.T


class FastLoRA:
    """One fast fine-tune's state: the precomputed activations, the flat parameter buffer, Adam's moments."""

    def __init__(self, model: TwoLayerLinear, train: Split, eval_split: Split, lr_ratio: float = 1.0,
                 optimizer: str = "adam") -> None:
        l1, l2 = model.layer1, model.layer2
        self.model = model
        self.r = r = l1.rank
        self.s = l1.scaling
        w1, w2 = l1.base.weight.detach(), l2.base.weight.detach()  # [hidden, d_in], [d_out, hidden]
        self.w2 = w2
        self.d_in, self.hidden, self.d_out = d_in, hidden, d_out = w1.shape[1], w1.shape[0], w2.shape[0]
        # Rows [x | H0] side by side so one index_select gathers both; E0 apart so R is contiguous.
        self.train_xh, self.train_e = base_activations(train, w1, w2)
        self.eval_xh, self.eval_e = base_activations(eval_split, w1, w2)

        sizes = [d_in, hidden, hidden, d_out, d_out]  # A1 | B1^T | A2 | B2^T | P^T, each [r, size]
        ends = [r * end for end in accumulate(sizes)]
        starts = [0, *ends[:-1]]
        like = dict(dtype=w1.dtype, device=w1.device)
        self.flat = torch.zeros(ends[-1], **like)
        self.grad = torch.zeros(ends[-1], **like)  # same layout; its last block holds c s u^T R

        def blocks(buf: torch.Tensor) -> list[torch.Tensor]:
            return [buf[a:e].view(r, size) for a, e, size in zip(starts, ends, sizes, strict=True)]

        self.A1, self.B1t, self.A2, self.B2t, self.Pt = blocks(self.flat)
        self.B1, self.w2T = self.B1t.T, w2.T  # views, made once: even a view costs a microsecond per step
        self.gA1, self.gB1t, self.gA2, self.gB2t, self.Zt = blocks(self.grad)
        self.BPt = self.flat[starts[3]:].view(2 * r, d_out)  # [B2^T; P^T]
        self.gBZ = self.grad[starts[3]:].view(2 * r, d_out)  # [dB2^T; c s u^T R]
        with torch.no_grad():
            self.A1.copy_(l1.lora_A)
            self.B1t.copy_(l1.lora_B.T)
            self.A2.copy_(l2.lora_A)
            self.B2t.copy_(l2.lora_B.T)
        b_blocks = [slice(starts[1], ends[1]), slice(starts[3], ends[3])]  # B1^T and B2^T: LoRA+'s faster ones
        self.optimizer = FLAT_OPTIMIZERS[optimizer](self.flat[:starts[4]], self.grad[:starts[4]], b_blocks,
                                                    lr_ratio)  # not the work block
        self._work: dict[int, _Batch] = {}

    def _buffers(self, b: int) -> _Batch:
        """Work buffers for a batch of b rows (an epoch's last batch may be shorter)."""
        if b not in self._work:
            self._work[b] = _Batch(b, self.r, self.d_in, self.hidden, self.d_out, self.flat)
        return self._work[b]

    @torch.no_grad()
    def step(self, idx: torch.Tensor, lr: float) -> torch.Tensor:
        """One Adam step on the batch `idx`; returns the batch's sum of squared residuals (a 0-dim tensor).

        Every view below is made once (see _Batch); each line is one op, writing into a buffer.
        """
        s, w = self.s, self._buffers(idx.shape[0])
        cs = 2.0 * s / w.res.numel()
        torch.index_select(self.train_xh, 0, idx, out=w.xh)  # [x | H0] of the batch
        torch.index_select(self.train_e, 0, idx, out=w.res)  # E0 of the batch, made into R below
        torch.mm(self.A1, w.xT, out=w.ut)  # u^T = A1 x^T                                [r, b]
        torch.mm(self.B1t, self.w2T, out=self.Pt)  # P^T = B1^T W2^T                      [r, d_out]
        torch.mm(self.A2, self.B1, out=w.q)  # A2 B1                                      [r, r]
        torch.mm(self.A2, w.hT, out=w.vt)  # v^T = A2 H0^T + s (A2 B1) u^T               [r, b]
        w.vt.addmm_(w.q, w.ut, alpha=s)
        w.res.addmm_(w.vuT, self.BPt, alpha=s)  # R = E0 + s [v u] [B2^T; P^T]            [b, d_out]
        sq = torch.dot(w.res_flat, w.res_flat)
        torch.addmm(self.gBZ, w.vut, w.res, beta=0, alpha=cs, out=self.gBZ)  # [dB2^T; c s u^T R] = c s [v u]^T R
        torch.addmm(w.rbp, self.BPt, w.resT, beta=0, alpha=cs, out=w.rbp)  # [dv^T; c s P^T R^T]   [2r, b]
        torch.addmm(w.prt, w.qT, w.dvt, alpha=s, out=w.dut)  # du^T = c s P^T R^T + s (A2 B1)^T dv^T
        torch.mm(w.dut, w.x, out=self.gA1)  # dA1 = du^T x                                [r, d_in]
        torch.mm(w.dvt, w.uT, out=w.dvu)  # dv^T u                                        [r, r]
        torch.mm(w.dvt, w.h, out=self.gA2)  # dA2 = dv^T H0 + s (dv^T u) B1^T             [r, hidden]
        self.gA2.addmm_(w.dvu, self.B1t, alpha=s)
        torch.mm(self.Zt, self.w2, out=self.gB1t)  # dB1^T = (c s u^T R) W2 + s (dv^T u)^T A2   [r, hidden]
        self.gB1t.addmm_(w.dvuT, self.A2, alpha=s)
        self.optimizer.step(lr)
        return sq

    @torch.no_grad()
    def eval_loss(self) -> float:
        """Mean squared error on the held-out split, what loop.held_out_loss computes for the adapted model."""
        r, s = self.r, self.s
        torch.mm(self.B1t, self.w2.T, out=self.Pt)
        xh, e = self.eval_xh, self.eval_e
        vu = torch.empty(xh.shape[0], 2 * r, dtype=xh.dtype, device=xh.device)  # [v | u]
        v, u = vu[:, :r], vu[:, r:]
        torch.mm(xh[:, :self.d_in], self.A1.T, out=u)
        torch.mm(xh[:, self.d_in:], self.A2.T, out=v)
        v.addmm_(u, (self.A2 @ self.B1t.T).T, alpha=s)
        res = torch.empty(min(EVAL_ROWS, e.shape[0]), self.d_out, dtype=e.dtype, device=e.device)
        squares = []
        for start in range(0, e.shape[0], EVAL_ROWS):
            rows = slice(start, start + EVAL_ROWS)
            chunk = res[:e[rows].shape[0]]
            torch.addmm(e[rows], vu[rows], self.BPt, alpha=s, out=chunk)  # R of these rows
            squares.append(torch.dot(chunk.view(-1), chunk.view(-1)))
        return torch.stack(squares).sum().item() / e.numel()

    @torch.no_grad()
    def write_back(self) -> None:
        """Copy the trained factors into the model's LoRA layers."""
        l1, l2 = self.model.layer1, self.model.layer2
        l1.lora_A.copy_(self.A1)
        l1.lora_B.copy_(self.B1t.T)
        l2.lora_A.copy_(self.A2)
        l2.lora_B.copy_(self.B2t.T)


def train_fast(model: TwoLayerLinear, train_split: Split, eval_split: Split, *, epochs: int, batch_size: int,
               lr: float, seed: int, phase: str = "finetune", on_progress: ProgressCallback | None = None,
               cancel: CancelCheck | None = None, lr_ratio: float = 1.0, optimizer: str = "adam",
               record: Recorder | None = None) -> tuple[str, PhaseHistory]:
    """Train the LoRA factors of `model` (for which `applies` holds) as training.train would; (status, history).

    The trained factors are written into the model's LoRA layers when the run ends, however it ends, and
    before each `record(model)` (copies of r rows: the flat buffer stays what trains).
    """
    state = FastLoRA(model, train_split, eval_split, lr_ratio, optimizer)

    def recorded() -> EpochDynamics | None:
        state.write_back()
        return record(model)

    n = train_split.x.shape[0]

    def train_epoch(order: Iterable[torch.Tensor]) -> float:
        # One slot per step, not a list of tensors: at batch size 1 a list costs hundreds of bytes a step.
        squares = state.train_e.new_zeros(-(-n // batch_size))
        for at, idx in enumerate(order):
            squares[at] = state.step(idx, lr)
        # training.train's loss: the mean of the mini-batch losses weighted by batch size
        return squares.sum().item() / (n * state.d_out)

    device = state.train_e.device
    with cpu_threads(device, 1):  # the step's ops are too small to share between threads
        status, history = epoch_loop(train_epoch, state.eval_loss, n=n, epochs=epochs, batch_size=batch_size,
                                     seed=seed, phase=phase, device=device, on_progress=on_progress, cancel=cancel,
                                     dynamics=None if record is None else recorded)
    state.write_back()
    return status, history
