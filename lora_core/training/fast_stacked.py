"""The state of a sweep's fast-path members trained together: every member's factors stacked row by row in one
flat buffer, so that what takes factors row by row is one product for all members, whatever their ranks.

fast.py's derivation holds member by member (s = the member's scaling, c = 2 / (b · d_out)):

    uᵀ = A1 xᵀ,  vᵀ = A2 H0ᵀ + (A2 B1)(s uᵀ),  Pᵀ = B1ᵀ W2ᵀ,  R = E0 + (s v) B2ᵀ + (s u) Pᵀ
    dB2ᵀ = c (s v)ᵀ R,  Z = c (s u)ᵀ R,  dvᵀ = s · c B2ᵀ Rᵀ,  duᵀ = s (c Pᵀ Rᵀ + (A2 B1)ᵀ dvᵀ)
    dA1 = duᵀ x,  dA2 = dvᵀ H0 + (dvᵀ (s u)) B1ᵀ,  dB1ᵀ = Z W2 + (dvᵀ (s u))ᵀ A2

Row by row, for all members at once (one op each): uᵀ, vᵀ's first term, Pᵀ, the scalings by s (a factor per
row), dA1, dA2's and dB1ᵀ's first terms, Adam on the one flat buffer, and each member's sum of squares. What
takes a member's own residual R or an r × r product of its factors is a batched product per group: members of
nearby ranks (`padded_rows`), [M, R, dim] views of consecutive rows, a member of rank r < R padded with zero
rows. Per step that is 12 ops per group and 11 shared, where one op list per group took 30.

The padding stays exactly zero: where row k of A and of Bᵀ is zero, row k of u, v and Pᵀ is zero, so every
gradient above is zero there (each is a product with one of those rows, or with A2 B1 and dvᵀu, zero in row and
column k), and Adam moves a parameter whose gradient is zero by 0 / (0 + ε) = 0.

PiSSA and OLoRA freeze W − s B0 A0 as the base, another one per member; here such a member keeps the shared W
and carries the frozen pair as rows of its own: W − s B0 A0 + s B A = W + s [B, −B0] [A; A0], a LoRA of rank 2r
whose last r rows have learning rate 0. LoRA+ is a learning rate per row too (λ on Bᵀ's rows), so Adam takes a
rate per parameter.
"""

from __future__ import annotations

import torch
import torch.nn as nn

from ..adapters.attach import adapted
from ..adapters.lora_layer import LoRALinear
from ..settings.config import ExperimentConfig
from ..settings.variants import starts_from_weights
from ..tasks.linear_model import TARGETS
from .fast import EVAL_ROWS
from .optimizers import FLAT_OPTIMIZERS


def rows_of(config: ExperimentConfig) -> int:
    """A member's rows: its rank, twice it where the frozen starting pair rides along (PiSSA, OLoRA)."""
    return 2 * config.rank if starts_from_weights(config) else config.rank


# What a group costs per step on one CPU thread, measured here (2 December, 256 wide): its 12 batched ops about
# 2.5 us each whatever their size, and every padded row of every member its share of the arithmetic at about
# 45 G multiply-adds a second. Only the grouping depends on them, never a result.
GROUP_SECONDS = 30e-6
MULTIPLY_ADDS_PER_SECOND = 45e9


def row_macs(config: ExperimentConfig) -> int:
    """The multiply-adds of one member row per step: Pᵀ and dB1ᵀ (hidden · d_out each), u, v, dA1, dA2 (b · d_in
    or b · hidden each) and the residual's three products (b · d_out each, twice)."""
    b = config.batch_size
    return 2 * config.hidden * config.d_out + 2 * b * (config.d_in + config.hidden) + 6 * b * config.d_out


def row_seconds(config: ExperimentConfig) -> float:
    """The arithmetic of one member row per step, for the grouping."""
    return row_macs(config) / MULTIPLY_ADDS_PER_SECOND


def padded_rows(configs: list[ExperimentConfig]) -> list[int]:
    """Each member's rows R in its group: members sorted by their rows are cut into consecutive groups, each
    padded to its largest, where that costs least by the model above (a group's fixed cost against the padding's
    arithmetic; an exact dynamic programme over the distinct row counts). Tiny layers end in one group, wide
    ones keep each rank apart."""
    rows = [rows_of(c) for c in configs]
    sizes = sorted(set(rows))
    counts = [rows.count(r) for r in sizes]
    per_row = row_seconds(configs[0])
    best = [0.0] + [float("inf")] * len(sizes)  # best[j]: the cheapest grouping of the j smallest sizes
    cut = [0] * (len(sizes) + 1)
    for j in range(1, len(sizes) + 1):
        for i in range(j):  # sizes i..j-1 in one group, padded to sizes[j - 1]
            cost = best[i] + GROUP_SECONDS + sizes[j - 1] * sum(counts[i:j]) * per_row
            if cost < best[j]:
                best[j], cut[j] = cost, i
    padded, j = {}, len(sizes)
    while j:
        padded.update({r: sizes[j - 1] for r in sizes[cut[j]:j]})
        j = cut[j]
    return [padded[r] for r in rows]


def _starting_rows(config: ExperimentConfig, base: nn.Module) -> tuple[list[torch.Tensor], list[float]]:
    """[A1, B1ᵀ, A2, B2ᵀ] of the member's rows (trained rows, then the frozen pair [A0; −B0ᵀ] of PiSSA/OLoRA)
    as its single run starts, and each row's rate for A and for B ((1, λ) trained, (0, 0) frozen)."""
    model = adapted(base, config)
    blocks = []
    for name in TARGETS:
        layer: LoRALinear = model.get_submodule(name)
        a, bt = layer.lora_A.detach(), layer.lora_B.detach().T
        if layer.initial is not None:
            a0, b0 = layer.initial
            a, bt = torch.cat([a, a0]), torch.cat([bt, -b0.T])
        blocks += [a, bt]
    return blocks, [config.lr_ratio] * config.rank + [0.0] * (rows_of(config) - config.rank)


def _grouped(rows: torch.Tensor, spans: list[tuple[int, int, int]]) -> list[torch.Tensor]:
    """Each group's [M, R, ...] view of `rows`: [N, ...], from (first row, members, rank) per group."""
    return [rows[first:first + m * r].view(m, r, *rows.shape[1:]) for first, m, r in spans]


class _Work:
    """A step's work buffers for b rows (a short last batch, an evaluation chunk) and every view of them the step
    uses, made once: a view costs about a microsecond, and a step takes about 20 per group."""

    def __init__(self, stack: Stacked, b: int) -> None:
        N, spans, like = stack.N, stack.spans, dict(dtype=stack.flat.dtype, device=stack.flat.device)
        self.ut, self.vt, self.ust, self.vst, self.dvt, self.dut = (torch.empty(N, b, **like) for _ in range(6))
        self.res = torch.empty(stack.M, b, stack.d_out, **like)  # each member's residual R, members in row order
        self.res_rows = self.res.view(stack.M, -1)  # a member's residual as one row, for its sum of squares
        res = [self.res[m0:m0 + m] for m0, m in zip(stack.first_member, (m for _, m, _ in spans), strict=True)]
        ut, vt, ust, vst, dvt, dut = (_grouped(t, spans) for t in
                                      (self.ut, self.vt, self.ust, self.vst, self.dvt, self.dut))
        # per group, what each of the step's four loops over groups takes, in the order it takes them
        groups = list(zip(stack.groups, ut, vt, ust, vst, dvt, dut, res, strict=True))
        self.mixing = [(g.A2, g.B1, g.q, v, us) for g, u, v, us, vs, dv, du, r in groups]
        self.residuals = [(r, vs.mT, g.B2t, us.mT, g.Pt) for g, u, v, us, vs, dv, du, r in groups]
        self.of_residuals = [(g.gB2t, vs, r, g.Zt, us, dv, g.B2t, r.mT) for g, u, v, us, vs, dv, du, r in groups]
        self.of_inputs = [(du, g.Pt, r.mT, g.q.mT, dv, g.dvu, us.mT) for g, u, v, us, vs, dv, du, r in groups]


class _Group:
    """One group's [M, R, dim] views of the stacked parameters, gradients and work rows."""

    def __init__(self, stack: Stacked, k: int) -> None:
        views = [_grouped(t, stack.spans)[k] for t in (*stack.params, *stack.grads, stack.Pt, stack.Zt)]
        self.A1, self.B1t, self.A2, self.B2t, self.gA1, self.gB1t, self.gA2, self.gB2t, self.Pt, self.Zt = views
        self.B1 = self.B1t.mT
        _, m, r = stack.spans[k]
        self.q = torch.empty(m, r, r, dtype=stack.flat.dtype, device=stack.flat.device)  # A2 B1
        self.dvu = torch.empty_like(self.q)  # dvᵀ (s u)
        self.dvuT = self.dvu.mT


class Stacked:
    """Members' factors [A1 | B1ᵀ | A2 | B2ᵀ], each [N, dim] with the members' rows stacked, in one flat buffer.

    Members sit in the order of their groups (smallest R first); `place[i]` is member i's position there.
    """

    def __init__(self, configs: list[ExperimentConfig], base: nn.Module, w2: torch.Tensor, steps: int) -> None:
        padded = padded_rows(configs)
        order = sorted(range(len(configs)), key=lambda i: (padded[i], rows_of(configs[i])))  # stable
        self.place = {i: p for p, i in enumerate(order)}
        self.M, self.R = len(configs), [padded[i] for i in order]  # members, padded rows per member
        self.first_row = [sum(self.R[:p]) for p in range(self.M)]
        self.N = N = sum(self.R)
        sizes = sorted(set(self.R))
        self.first_member = [self.R.index(r) for r in sizes]
        self.spans = [(self.first_row[self.R.index(r)], self.R.count(r), r) for r in sizes]
        self.d_in, self.hidden, self.d_out = d_in, hidden, d_out = configs[0].d_in, w2.shape[1], w2.shape[0]
        self.w2, self.w2T = w2, w2.T
        like = dict(dtype=w2.dtype, device=w2.device)
        self.dims = dims = [d_in, hidden, hidden, d_out]
        self.flat, self.grad = torch.zeros(N * sum(dims), **like), torch.zeros(N * sum(dims), **like)
        self.params = [p.view(N, d) for p, d in zip(self.flat.split([N * d for d in dims]), dims, strict=True)]
        self.grads = [g.view(N, d) for g, d in zip(self.grad.split([N * d for d in dims]), dims, strict=True)]
        self.A1, self.B1t, self.A2, self.B2t = self.params
        self.gA1, self.gB1t, self.gA2, self.gB2t = self.grads
        self.Pt, self.Zt = torch.empty(N, d_out, **like), torch.empty(N, d_out, **like)
        rates, scale = torch.zeros(N, 1, **like), torch.zeros(N, 1, **like)
        for i, config in enumerate(configs):
            rows = self.rows(i)
            blocks, row_rates = _starting_rows(config, base)
            for param, block in zip(self.params, blocks, strict=True):
                param[rows.start:rows.start + block.shape[0]] = block
            rates[rows.start:rows.start + len(row_rates), 0] = torch.tensor(row_rates)  # B's; A's 1 where B's not 0
            scale[rows] = config.scaling
        self.scaling = [c.scaling for c in configs]
        self.s = scale  # each row's member's scaling s: [N, 1]
        plain = all(c.lr_ratio == 1.0 and rows_of(c) == c.rank for c in configs)
        a_rates = (rates != 0).to(rates.dtype)
        rate = None if plain else torch.cat([r.expand(N, d).reshape(-1) for r, d in
                                             zip((a_rates, rates, a_rates, rates), dims, strict=True)])
        self.optimizer = FLAT_OPTIMIZERS[configs[0].optimizer](self.flat, self.grad, rate=rate)
        self.groups = [_Group(self, k) for k in range(len(self.spans))]
        self.squares = torch.zeros(steps, self.M, **like)  # each step's sum of squared residuals, by position
        self._work: dict[int, _Work] = {}

    def rows(self, i: int) -> slice:
        """Member i's rows (its padded R) in every [N, dim] block."""
        p = self.place[i]
        return slice(self.first_row[p], self.first_row[p] + self.R[p])

    def _buffers(self, b: int) -> _Work:
        if b not in self._work:
            self._work[b] = _Work(self, b)
        return self._work[b]

    def _forward(self, x: torch.Tensor, h: torch.Tensor, e: torch.Tensor, w: _Work) -> None:
        """u, v, s·u, s·v and every member's R of rows x: [b, d_in], H0: [b, hidden], E0: [b, d_out]; Pᵀ must be
        current."""
        torch.mm(self.A1, x.T, out=w.ut)  # uᵀ = A1 xᵀ                                     [N, b]
        torch.mm(self.A2, h.T, out=w.vt)  # vᵀ = A2 H0ᵀ, + (A2 B1)(s uᵀ) below
        torch.mul(w.ut, self.s, out=w.ust)
        for A2, B1, q, vt, ust in w.mixing:
            torch.bmm(A2, B1, out=q)  # A2 B1                                               [M, R, R]
            vt.baddbmm_(q, ust)
        torch.mul(w.vt, self.s, out=w.vst)
        for res, vsT, B2t, usT, Pt in w.residuals:
            torch.baddbmm(e, vsT, B2t, out=res)  # R = E0 + (s v) B2ᵀ + (s u) Pᵀ               [M, b, d_out]
            res.baddbmm_(usT, Pt)

    @torch.no_grad()
    def step(self, x: torch.Tensor, h: torch.Tensor, e: torch.Tensor, at: int, lr: float) -> None:
        """One Adam step of every member on the batch (x, H0, E0); its sums of squares go to squares[at]."""
        w = self._buffers(x.shape[0])
        c = 2.0 / (x.shape[0] * self.d_out)
        torch.mm(self.B1t, self.w2T, out=self.Pt)  # Pᵀ = B1ᵀ W2ᵀ                             [N, d_out]
        self._forward(x, h, e, w)
        # one dot product per member (a [1, b·d] x [b·d, 1] bmm took 131 us of a 256-wide step, this 18)
        torch.linalg.vecdot(w.res_rows, w.res_rows, out=self.squares[at])
        for gB2t, vst, res, Zt, ust, dvt, B2t, resT in w.of_residuals:
            torch.baddbmm(gB2t, vst, res, beta=0, alpha=c, out=gB2t)  # dB2ᵀ = c (s v)ᵀ R
            torch.baddbmm(Zt, ust, res, beta=0, alpha=c, out=Zt)  # Z = c (s u)ᵀ R
            torch.baddbmm(dvt, B2t, resT, beta=0, alpha=c, out=dvt)  # dvᵀ = c B2ᵀ Rᵀ, times s below
        w.dvt.mul_(self.s)
        for dut, Pt, resT, qT, dvt, dvu, usT in w.of_inputs:
            torch.baddbmm(dut, Pt, resT, beta=0, alpha=c, out=dut)  # duᵀ = s (c Pᵀ Rᵀ + (A2 B1)ᵀ dvᵀ)
            dut.baddbmm_(qT, dvt)
            torch.bmm(dvt, usT, out=dvu)  # dvᵀ (s u)                                        [M, R, R]
        w.dut.mul_(self.s)
        torch.mm(w.dut, x, out=self.gA1)  # dA1 = duᵀ x
        torch.mm(w.dvt, h, out=self.gA2)  # dA2 = dvᵀ H0, + (dvᵀ s u) B1ᵀ below
        torch.mm(self.Zt, self.w2, out=self.gB1t)  # dB1ᵀ = Z W2, + (dvᵀ s u)ᵀ A2 below
        for g in self.groups:
            g.gA2.baddbmm_(g.dvu, g.B1t)
            g.gB1t.baddbmm_(g.dvuT, g.A2)
        self.optimizer.step(lr)

    @torch.no_grad()
    def eval_losses(self, xh: torch.Tensor, e: torch.Tensor) -> torch.Tensor:
        """Each member's mean squared error on the held-out rows ([x | H0], E0), EVAL_ROWS at a time: [M], by
        position."""
        torch.mm(self.B1t, self.w2T, out=self.Pt)
        total = torch.zeros(self.M, dtype=e.dtype, device=e.device)
        for start in range(0, e.shape[0], EVAL_ROWS):
            rows = slice(start, start + EVAL_ROWS)
            w = self._buffers(e[rows].shape[0])
            self._forward(xh[rows, :self.d_in], xh[rows, self.d_in:], e[rows], w)
            total += torch.linalg.vecdot(w.res_rows, w.res_rows)
        return total / e.numel()

    def retire(self, i: int) -> None:
        """Zero member i's rows and moments: a stopped member then stays at zero and costs what padding costs."""
        rows = self.rows(i)
        for buffer in (self.flat, *self.optimizer.state()):
            for block, d in zip(buffer.split([self.N * d for d in self.dims]), self.dims, strict=True):
                block.view(self.N, d)[rows].zero_()

    def changes(self, i: int, rows: int) -> dict[str, tuple[torch.Tensor, torch.Tensor]]:
        """Member i's change from the pretrained weights per layer, (s·B': [d_out, rows], A': [rows, d_in]): its
        trained rows and (PiSSA, OLoRA) the frozen starting pair [A0; −B0ᵀ] after them."""
        mine = slice(self.rows(i).start, self.rows(i).start + rows)
        return {name: (self.scaling[i] * bt[mine].T, a[mine]) for name, (a, bt) in
                zip(TARGETS, ((self.A1, self.B1t), (self.A2, self.B2t)), strict=True)}

    def tensors(self, i: int, rank: int) -> dict[str, torch.Tensor]:
        """Member i's trained factors by parameter name (its first `rank` rows)."""
        mine = slice(self.rows(i).start, self.rows(i).start + rank)
        out = {}
        for name, (a, bt) in zip(TARGETS, ((self.A1, self.B1t), (self.A2, self.B2t)), strict=True):
            out[f"{name}.lora_A"] = a[mine].clone()
            out[f"{name}.lora_B"] = bt[mine].T.clone()
        return out
