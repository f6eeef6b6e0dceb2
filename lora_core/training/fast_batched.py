"""A sweep's fast-path members fine-tuned together: every member of one base that fast.py would train alone
(LoRA, rsLoRA, PiSSA, OLoRA, LoRA+) on shared activations, its own products batched with the others'.

fast.py's derivation holds member by member. Shared here: the rows [x | H0] and the base residual E0 of every
sample (computed once per sweep, not once per member), each step's gathered mini-batch, and every product that
takes a member's factors row by row (u = x A1ᵀ, v = H0 A2ᵀ, Pᵀ = B1ᵀ W2ᵀ, dA1 = duᵀ x, dA2 = dvᵀ H0,
dB1ᵀ = Zᵀ W2): with the members' factors stacked, each is one matrix product. Per member, as batched products
over a member axis: what takes its own residual R = E0 + s(v B2ᵀ + u Pᵀ) or an r × r product of its factors.

Layout: members are grouped by rank rounded up to a power of two (`bucket`); in a group of M members every
factor is an [M, R, dim] block (B transposed, as in fast.py), a member of rank r < R padded with zero rows. The
padding stays exactly zero: where row k of A and of Bᵀ is zero, row k of u, v and Pᵀ is zero, so every gradient
of fast.py's list is zero there (each is a product with one of those rows, or with A2 B1 and dvᵀu, which are
zero in row and column k), and Adam moves a parameter whose gradient is zero by 0 / (0 + ε) = 0.

PiSSA and OLoRA freeze W − s B0 A0 as the base, another one per member; here such a member keeps the shared W
and carries the frozen pair as rows of its own: W − s B0 A0 + s B A = W + s [B, −B0] [A; A0], a LoRA of rank 2r
whose last r rows have learning rate 0. LoRA+ is a learning rate per row too (λ on Bᵀ's rows), so Adam takes a
rate per parameter. No op mixes two members' rows, so a member whose loss becomes non-finite stops as
'diverged' at the epoch its single run stops and poisons no other; its rows are then zeroed (like padding).

Each member follows its single fast run up to float rounding (products summed in another order, PiSSA's
residual applied as a product instead of folded into W); tests/test_sweep_fast.py checks float64 runs to 1e-9.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable

import torch
import torch.nn as nn

from ..adapters.attach import adapted
from ..adapters.lora_layer import LoRALinear
from ..settings.budget import dynamics_bytes
from ..settings.config import BYTES_PER_ITEM, ExperimentConfig
from ..settings.results import EpochDynamics, Progress
from ..settings.variants import starts_from_weights
from ..tasks.data import Task
from ..tasks.linear_model import TARGETS
from .batched import Trained
from .devices import cpu_threads
from .fast import EVAL_ROWS, base_activations
from .loop import BatchRecorder, CancelCheck, members_loop
from .optimizers import FLAT_OPTIMIZERS
from .trainers import choose_path

PATH = "fast-batched"  # what a member's result says ran
# Both layers' weights from which members always train together (at the article's shapes 10 members took 1.00 s
# together against 1.53 s one by one, 80 steps). Below it only crowded groups do (MEMBERS_PER_GROUP).
MIN_WEIGHTS = 100_000
MEMBERS_PER_GROUP = 3  # below MIN_WEIGHTS, batch only where groups average at least this many members


def wanted(config: ExperimentConfig) -> bool:
    """Whether a member trains here: a LoRA member the fast path takes."""
    return config.method == "lora" and choose_path(config) == "fast"


def applies(configs: list[ExperimentConfig]) -> bool:
    """Whether these members can train together: one base, the same batches, learning rate and dtype, layers
    of at least MIN_WEIGHTS weights or groups of several members each."""
    first = configs[0]
    wide = first.d_in * first.hidden + first.hidden * first.d_out >= MIN_WEIGHTS
    # Small layers: a group's step costs about what one member's fast step costs, so batching pays only where
    # groups hold several members each (the default Compare grid: 24 members in 4 groups, 4.0 s -> 2.0 s; 4
    # members in 4 groups were 1.16x slower batched).
    crowded = len(configs) >= MEMBERS_PER_GROUP * len({bucket(c) for c in configs})
    return len(configs) > 1 and (wide or crowded) and all(
        wanted(c) and c.seed == first.seed and c.batch_size == first.batch_size and c.epochs == first.epochs
        and c.lr == first.lr and c.optimizer == first.optimizer and c.dtype == first.dtype
        and c.device == first.device for c in configs)


def rows_of(config: ExperimentConfig) -> int:
    """A member's rows: its rank, twice it where the frozen starting pair rides along (PiSSA, OLoRA)."""
    return 2 * config.rank if starts_from_weights(config) else config.rank


def bucket(config: ExperimentConfig) -> int:
    """The padded rank R of the member's group: its rows rounded up to a power of two."""
    return 1 << (rows_of(config) - 1).bit_length()


def threads(configs: list[ExperimentConfig]) -> int | None:
    """One CPU thread, as a single fast run: a second thread pays only for the largest products, and where the
    other core is busy every op waits for it (the article's 10 members: 10.2 s on two threads against 0.15 s
    on one for the same 8 steps, measured with the machine shared)."""
    return 1


def batch_bytes(configs: list[ExperimentConfig]) -> int:
    """Memory of the groups' buffers: parameters, gradients, Adam's three buffers and a rate per member row,
    a step's and an evaluation chunk's work per member (the shared activations are the single run's)."""
    c = configs[0]
    rows = sum(bucket(m) for m in configs)
    per_row = 8 * (c.d_in + 2 * c.hidden + 2 * c.d_out) + 6 * c.batch_size + 4 * EVAL_ROWS
    per_member = (c.batch_size + EVAL_ROWS) * c.d_out
    return BYTES_PER_ITEM[c.dtype] * (rows * per_row + len(configs) * per_member) + dynamics_bytes(c)


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


class _Group:
    """M members padded to R rows: parameters [A1 | B1ᵀ | A2 | B2ᵀ], each [M, R, dim], in one flat buffer."""

    def __init__(self, configs: list[ExperimentConfig], base: nn.Module, w2: torch.Tensor, steps: int) -> None:
        self.M, self.R = M, R = len(configs), bucket(configs[0])
        self.d_in, self.hidden, self.d_out = d_in, hidden, d_out = configs[0].d_in, w2.shape[1], w2.shape[0]
        self.w2, self.w2T = w2, w2.T
        like = dict(dtype=w2.dtype, device=w2.device)
        dims = [d_in, hidden, hidden, d_out]
        self.flat, self.grad = torch.zeros(M * R * sum(dims), **like), torch.zeros(M * R * sum(dims), **like)
        self.params = list(self.flat.split([M * R * d for d in dims]))
        self.params = [p.view(M, R, d) for p, d in zip(self.params, dims, strict=True)]
        self.A1, self.B1t, self.A2, self.B2t = self.params
        self.grads = [g.view(M, R, d) for g, d in zip(self.grad.split([M * R * d for d in dims]), dims, strict=True)]
        self.gA1, self.gB1t, self.gA2, self.gB2t = self.grads
        rates = torch.zeros(M, R, 1, **like)
        for j, config in enumerate(configs):
            blocks, row_rates = _starting_rows(config, base)
            for param, block in zip(self.params, blocks, strict=True):
                param[j, :block.shape[0]] = block
            rates[j, :len(row_rates), 0] = torch.tensor(row_rates)  # B's rates; A's are 1 where B's are not 0
        a_rates = (rates != 0).to(rates.dtype)
        plain = all(c.lr_ratio == 1.0 and rows_of(c) == c.rank for c in configs)
        rate = None if plain else torch.cat([r.expand(M, R, d).reshape(-1) for r, d in
                                             zip((a_rates, rates, a_rates, rates), dims, strict=True)])
        self.optimizer = FLAT_OPTIMIZERS[configs[0].optimizer](self.flat, self.grad, rate=rate)
        self.s = torch.tensor([c.scaling for c in configs], **like).view(M, 1, 1)
        self.Pt, self.Zt = torch.empty(M, R, d_out, **like), torch.empty(M, R, d_out, **like)
        self.q = torch.empty(M, R, R, **like)  # s A2 B1, then s dvᵀ u
        self.squares = torch.zeros(steps, M, **like)  # each step's sum of squared residuals per member
        self._work: dict[int, dict[str, torch.Tensor]] = {}

    def _buffers(self, b: int) -> dict[str, torch.Tensor]:
        """Work buffers for b rows (a short last batch, an evaluation chunk), made once per size."""
        if b not in self._work:
            M, R, like = self.M, self.R, dict(dtype=self.flat.dtype, device=self.flat.device)
            self._work[b] = {name: torch.empty(M, R, b, **like) for name in ("ut", "vt", "ust", "vst", "dvt", "dut")}
            self._work[b]["res"] = torch.empty(M, b, self.d_out, **like)
        return self._work[b]

    def _forward(self, x: torch.Tensor, h: torch.Tensor, e: torch.Tensor, w: dict[str, torch.Tensor]) -> None:
        """u, v, s·u, s·v and R of rows x: [b, d_in], H0: [b, hidden], E0: [b, d_out]; Pᵀ must be current."""
        M, R, b = self.M, self.R, x.shape[0]
        torch.mm(self.A1.view(M * R, -1), x.T, out=w["ut"].view(M * R, b))  # uᵀ = A1 xᵀ          [M, R, b]
        torch.bmm(self.A2, self.B1t.mT, out=self.q).mul_(self.s)  # s A2 B1                         [M, R, R]
        torch.mm(self.A2.view(M * R, -1), h.T, out=w["vt"].view(M * R, b))  # vᵀ = A2 H0ᵀ + s A2 B1 uᵀ
        w["vt"].baddbmm_(self.q, w["ut"])
        torch.mul(w["ut"], self.s, out=w["ust"])
        torch.mul(w["vt"], self.s, out=w["vst"])
        torch.baddbmm(e, w["vst"].mT, self.B2t, out=w["res"])  # R = E0 + s v B2ᵀ + s u Pᵀ          [M, b, d_out]
        w["res"].baddbmm_(w["ust"].mT, self.Pt)

    @torch.no_grad()
    def step(self, x: torch.Tensor, h: torch.Tensor, e: torch.Tensor, at: int, lr: float) -> None:
        """One Adam step of every member on the batch (x, H0, E0); its sums of squares go to squares[at]."""
        M, R, b = self.M, self.R, x.shape[0]
        w = self._buffers(b)
        c = 2.0 / (b * self.d_out)
        torch.mm(self.B1t.view(M * R, -1), self.w2T, out=self.Pt.view(M * R, -1))  # Pᵀ = B1ᵀ W2ᵀ
        self._forward(x, h, e, w)
        res = w["res"]
        torch.bmm(res.view(M, 1, -1), res.view(M, -1, 1), out=self.squares[at].view(M, 1, 1))
        torch.baddbmm(self.gB2t, w["vst"], res, beta=0, alpha=c, out=self.gB2t)  # dB2ᵀ = c s vᵀ R
        torch.baddbmm(self.Zt, w["ust"], res, beta=0, alpha=c, out=self.Zt)  # Z = c s uᵀ R
        torch.baddbmm(w["dvt"], self.B2t, res.mT, beta=0, alpha=c, out=w["dvt"]).mul_(self.s)  # dvᵀ = c s B2ᵀ Rᵀ
        torch.baddbmm(w["dut"], self.Pt, res.mT, beta=0, alpha=c, out=w["dut"]).mul_(self.s)  # duᵀ = c s Pᵀ Rᵀ
        w["dut"].baddbmm_(self.q.mT, w["dvt"])  # ... + s (A2 B1)ᵀ dvᵀ
        torch.mm(w["dut"].view(M * R, b), x, out=self.gA1.view(M * R, -1))  # dA1 = duᵀ x
        torch.bmm(w["dvt"], w["ut"].mT, out=self.q).mul_(self.s)  # s dvᵀ u                         [M, R, R]
        torch.mm(w["dvt"].view(M * R, b), h, out=self.gA2.view(M * R, -1))  # dA2 = dvᵀ H0 + s (dvᵀ u) B1ᵀ
        self.gA2.baddbmm_(self.q, self.B1t)
        torch.mm(self.Zt.view(M * R, -1), self.w2, out=self.gB1t.view(M * R, -1))  # dB1ᵀ = Z W2 + s (dvᵀu)ᵀ A2
        self.gB1t.baddbmm_(self.q.mT, self.A2)
        self.optimizer.step(lr)

    @torch.no_grad()
    def eval_losses(self, xh: torch.Tensor, e: torch.Tensor) -> torch.Tensor:
        """Each member's mean squared error on the held-out rows ([x | H0], E0), EVAL_ROWS at a time: [M]."""
        M, R = self.M, self.R
        torch.mm(self.B1t.view(M * R, -1), self.w2T, out=self.Pt.view(M * R, -1))
        total = torch.zeros(M, 1, 1, dtype=e.dtype, device=e.device)
        for start in range(0, e.shape[0], EVAL_ROWS):
            rows = slice(start, start + EVAL_ROWS)
            w = self._buffers(e[rows].shape[0])
            self._forward(xh[rows, :self.d_in], xh[rows, self.d_in:], e[rows], w)
            total.baddbmm_(w["res"].view(M, 1, -1), w["res"].view(M, -1, 1))
        return total.view(M) / e.numel()

    def retire(self, j: int) -> None:
        """Zero member j's rows and moments: a stopped member then stays at zero and costs what padding costs."""
        for buffer in (self.flat, *self.optimizer.state()):
            for block in buffer.split([p.numel() for p in self.params]):
                block.view(self.M, self.R, -1)[j].zero_()

    def changes(self, j: int, rows: int) -> dict[str, tuple[torch.Tensor, torch.Tensor]]:
        """Member j's change from the pretrained weights per layer, (s·B': [d_out, rows], A': [rows, d_in]): its
        trained rows and (PiSSA, OLoRA) the frozen starting pair [A0; −B0ᵀ] after them."""
        return {name: (self.s[j] * bt[j, :rows].T, a[j, :rows]) for name, (a, bt) in
                zip(TARGETS, ((self.A1, self.B1t), (self.A2, self.B2t)), strict=True)}

    def tensors(self, j: int, rank: int) -> dict[str, torch.Tensor]:
        """Member j's trained factors by parameter name (its first `rank` rows)."""
        out = {}
        for name, (a, bt) in zip(TARGETS, ((self.A1, self.B1t), (self.A2, self.B2t)), strict=True):
            out[f"{name}.lora_A"] = a[j, :rank].clone()
            out[f"{name}.lora_B"] = bt[j, :rank].T.clone()
        return out


def train_members(configs: list[ExperimentConfig], base: nn.Module, task: Task,
                  on_progress: Callable[[int, Progress], bool | None] | None = None,
                  cancel: CancelCheck | None = None, recorder: BatchRecorder | None = None) -> list[Trained]:
    """Fine-tune every member of `configs` (for which `applies` holds) from `base` on `task`, together;
    `recorder`, where given, measures what each has learned (loop.BatchRecorder) on the epochs recorded."""
    first, device = configs[0], base.layer1.weight.device
    with torch.no_grad(), cpu_threads(device, threads(configs)):
        w1, w2 = base.layer1.weight.detach(), base.layer2.weight.detach()
        train_xh, train_e = base_activations(task.train, w1, w2)
        eval_xh, eval_e = base_activations(task.eval, w1, w2)
        n = train_xh.shape[0]
        steps = -(-n // first.batch_size)
        slots = {}  # member index -> (group, its place in the group)
        groups = []
        for size in sorted({bucket(c) for c in configs}):
            members = [i for i, c in enumerate(configs) if bucket(c) == size]
            groups.append(_Group([configs[i] for i in members], base, w2, steps))
            slots.update({i: (groups[-1], j) for j, i in enumerate(members)})

        def dynamics() -> list[EpochDynamics | None]:
            return recorder([slots[i][0].changes(slots[i][1], rows_of(c)) for i, c in enumerate(configs)])

        return _train(configs, groups, slots, (train_xh, train_e, eval_xh, eval_e), on_progress, cancel,
                      None if recorder is None else dynamics)


def _train(configs: list[ExperimentConfig], groups: list[_Group], slots: dict[int, tuple[_Group, int]],
           data: tuple[torch.Tensor, ...], on_progress: Callable[[int, Progress], bool | None] | None,
           cancel: CancelCheck | None, dynamics: Callable[[], list[EpochDynamics | None]] | None) -> list[Trained]:
    """Every member at once through the one epoch loop (training.members_loop); each member reports its own
    epochs."""
    first = configs[0]
    train_xh, train_e, eval_xh, eval_e = data
    n, d_in, device = train_xh.shape[0], first.d_in, train_xh.device
    stopped: dict[int, dict[str, torch.Tensor]] = {}  # the factors of members that stopped early
    gathered: dict[int, tuple[torch.Tensor, torch.Tensor]] = {}

    def per_member(by_group: dict[int, list[float]]) -> list[float]:
        return [by_group[id(slots[i][0])][slots[i][1]] for i in range(len(configs))]

    def train_epoch(order: Iterable[torch.Tensor]) -> list[float]:
        steps = 0
        for at, idx in enumerate(order):
            if len(idx) not in gathered:
                gathered[len(idx)] = (train_xh.new_empty(len(idx), train_xh.shape[1]),
                                      train_e.new_empty(len(idx), train_e.shape[1]))
            xh, e = gathered[len(idx)]
            torch.index_select(train_xh, 0, idx, out=xh)
            torch.index_select(train_e, 0, idx, out=e)
            for group in groups:
                group.step(xh[:, :d_in], xh[:, d_in:], e, at, first.lr)
            steps = at + 1
        return per_member({id(g): (g.squares[:steps].sum(0) / (n * g.d_out)).tolist() for g in groups})

    def retire(i: int, _: str) -> None:
        group, j = slots[i]
        stopped[i] = group.tensors(j, configs[i].rank)
        group.retire(j)

    start = time.perf_counter()
    status, histories = members_loop(
        train_epoch, lambda: per_member({id(g): g.eval_losses(eval_xh, eval_e).tolist() for g in groups}),
        members=len(configs), n=n, epochs=first.epochs, batch_size=first.batch_size, seed=first.seed,
        phase="finetune", device=device, on_progress=on_progress, cancel=cancel, on_stop=retire,
        dynamics=dynamics)
    share = (time.perf_counter() - start) / len(configs)
    return [Trained(status[i], histories[i], stopped.get(i) or slots[i][0].tensors(slots[i][1], c.rank), share,
                    PATH) for i, c in enumerate(configs)]
