"""Fine-tuning many adapters of a sweep at once, on one base, as one batched model: the members' ranks padded to
the largest (the padding starts at zero and stays there: its gradients are zero, and Adam leaves a parameter
with zero gradient where it is), the loss the sum of the members' own mean losses, so each member's gradient is
the one it would get alone.

Every LoRA method of a sweep fits: rsLoRA is a per-member scaling, LoRA+ a per-member learning rate of B (and of
DoRA's magnitudes, as PEFT groups them), DoRA a per-member row scaling (identity for the others), PiSSA and OLoRA
a per-member residual base. Each member starts from exactly the factors and base its single run builds
(attach.add_lora), sees the same mini-batches (training.batches), and follows torch.optim.Adam's update; only
float rounding differs from its single run (tests/test_sweep.py: final losses to 1e-4 relative).

Batching pays where a step's fixed cost (Python, autograd, dispatch) dominates, that is for small layers:
every member computes its own x Wᵀ here, so `applies` keeps it to models of at most BATCH_MAX_WEIGHTS weights.
And it pays only against the autograd path: one batched step costs about 1 ms on the default preset, where the
fast path (fast.py) steps one member in 60 µs. So a sweep batches the members that would run on the autograd
path (`wanted`: DoRA); the others run one by one on the fast path, which is exact and cheaper still.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable
from typing import NamedTuple

import torch
import torch.nn as nn

from ..adapters.attach import adapted
from ..adapters.dora import DoRALinear
from ..settings.budget import estimate
from ..settings.config import BYTES_PER_ITEM, ExperimentConfig
from ..settings.dynamics_cost import batch_dynamics_bytes, dynamics_bytes
from ..settings.results import PhaseHistory, Progress
from ..settings.variants import layer_kind
from ..tasks.data import Task
from ..tasks.linear_model import TARGETS
from ..tasks.registry import kind
from .devices import threads_for
from .loop import EVAL_CHUNK, BatchRecorder, CancelCheck, checked, members_loop
from .optimizers import FLAT_OPTIMIZERS
from .trainers import choose_path

BATCH_MAX_WEIGHTS = 2**16  # both layers' weights; about two 181-wide square layers
# The adapter layers (adapters/registry.LAYERS) whose forward _Stack computes; a registered variant's own layer
# trains alone, through autograd.
LAYERS_IT_COMPUTES = ("lora", "dora")


class Trained(NamedTuple):
    """A member's fine-tune done elsewhere: what experiment.finetune installs instead of training."""

    status: str
    history: PhaseHistory
    tensors: dict[str, torch.Tensor]  # the trained parameters by name, e.g. 'layer1.lora_A'
    seconds: float = 0.0  # this member's share of the batch's wall time
    path: str = "batched"  # what trained it, the result's `path`: 'batched' (here) or 'fast-batched'


def wanted(config: ExperimentConfig) -> bool:
    """Whether a member is better trained in a batch than alone: a LoRA member the fast path cannot take, with a
    layer this batch computes."""
    return (config.method == "lora" and choose_path(config) == "autograd" and kind(config).linear_model
            and layer_kind(config) in LAYERS_IT_COMPUTES)


def applies(configs: list[ExperimentConfig]) -> bool:
    """Whether these members can train as one batch: LoRA members of one base, small layers, one of each
    setting the batches and the base depend on."""
    first = configs[0]
    same = all(c.method == "lora" and c.seed == first.seed and c.batch_size == first.batch_size
               and c.epochs == first.epochs and c.lr == first.lr and c.optimizer == first.optimizer
               and c.dtype == first.dtype
               and c.device == first.device for c in configs)
    return len(configs) > 1 and same and first.d_in * first.hidden + first.hidden * first.d_out <= BATCH_MAX_WEIGHTS


def threads(configs: list[ExperimentConfig]) -> int | None:
    """CPU threads for the batch: one while the members' weights together are small."""
    c = configs[0]
    return threads_for(len(configs) * (c.d_in + c.d_out) * c.hidden)


# Members trained as one batch took 0.39-0.49 of the time their single runs' fine-tunes took (7 December, DoRA on
# the default preset: ranks 1-8, 0.67 s against 1.70 s; ranks 1-64, 1.77 s against 3.61 s): one step's Python
# for all of them, their arithmetic padded to the largest rank.
SHARE_OF_SINGLES = 0.5


def batch_seconds(configs: list[ExperimentConfig]) -> float:
    """About how long fine-tuning these members as one batch takes, in budget.py's units."""
    return SHARE_OF_SINGLES * sum(estimate(c).finetune_seconds for c in configs)


def batch_bytes(configs: list[ExperimentConfig]) -> int:
    """Memory of the batch: the members' stacked weights and moments and a batch of activations each, and what
    the dynamics' recorder holds, at an epoch's record too."""
    c = configs[0]
    return (len(configs) * BYTES_PER_ITEM[c.dtype] * (8 * (c.d_in * c.hidden + c.hidden * c.d_out)
                                                     + 4 * c.batch_size * (c.hidden + c.d_out))
            + dynamics_bytes(c) + batch_dynamics_bytes(c, [m.rank for m in configs]))


class _Stack:
    """One layer of every member: bases W [M, out, in], factors A [M, R, in], B [M, out, R], magnitudes m [M, out],
    scalings s [M, 1, 1], which members use DoRA [M, 1, 1]."""

    def __init__(self, layers: list[nn.Module], rank: int) -> None:
        def pad(t: torch.Tensor, rows: int | None, cols: int | None) -> torch.Tensor:
            out = t.new_zeros(rows or t.shape[0], cols or t.shape[1])
            out[:t.shape[0], :t.shape[1]] = t.detach()
            return out

        self.weight = torch.stack([layer.base.weight.detach() for layer in layers])
        self.A = torch.stack([pad(layer.lora_A, rank, None) for layer in layers]).requires_grad_()
        self.B = torch.stack([pad(layer.lora_B, None, rank) for layer in layers]).requires_grad_()
        self.m = torch.stack([layer.lora_magnitude.detach() if isinstance(layer, DoRALinear)
                              else layer.base.weight.new_ones(layer.base.out_features) for layer in layers])
        self.m.requires_grad_()
        like = self.weight
        self.s = torch.tensor([layer.scaling for layer in layers], dtype=like.dtype, device=like.device).view(-1, 1, 1)
        self.dora = torch.tensor([isinstance(layer, DoRALinear) for layer in layers], device=like.device).view(-1, 1, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """x: [M or 1, b, in] -> [M, b, out], each member's layer as its own LoRALinear/DoRALinear computes it."""
        base = x @ self.weight.transpose(1, 2)
        lora = (x @ self.A.transpose(1, 2)) @ self.B.transpose(1, 2)
        with torch.no_grad():  # DoRA's row norms, detached as in dora.py
            norm = torch.linalg.norm(self.weight + self.s * (self.B @ self.A), dim=2)
        scale = torch.where(self.dora, (self.m / norm).unsqueeze(1), torch.ones_like(self.m).unsqueeze(1))
        return base + (scale - 1) * base + scale * lora * self.s


def train_members(configs: list[ExperimentConfig], base: nn.Module, task: Task,
                  on_progress: Callable[[int, Progress], bool | None] | None = None,
                  cancel: CancelCheck | None = None, recorder: BatchRecorder | None = None) -> list[Trained]:
    """Fine-tune every member of `configs` (for which `applies` holds) from `base` on `task`, together;
    `recorder`, where given, measures what each has learned (loop.BatchRecorder) on the epochs recorded."""
    models = [adapted(base, c) for c in configs]
    rank = max(c.rank for c in configs)
    stacks = [_Stack([m.get_submodule(name) for m in models], rank) for name in TARGETS]
    first = configs[0]
    dtype, device = stacks[0].weight.dtype, stacks[0].weight.device
    # Every stack's A, B and m in one flat buffer for the flat optimizer (optimizers.py): B's and m's rate λ per
    # member (LoRA+), A's 1. The stacks compute with views of it, made afresh for every step's graph.
    ratio = torch.tensor([c.lr_ratio for c in configs], dtype=dtype, device=device)
    initial = [(t.detach(), rate) for s in stacks for t, rate in
               ((s.A, torch.ones_like(s.A)), (s.B, ratio.view(-1, 1, 1).expand_as(s.B)),
                (s.m, ratio.view(-1, 1).expand_as(s.m)))]
    flat = torch.cat([t.reshape(-1) for t, _ in initial]).requires_grad_()
    optimizer = FLAT_OPTIMIZERS[first.optimizer](flat.detach(), torch.zeros_like(flat),
                                                 rate=torch.cat([r.reshape(-1) for _, r in initial]))

    def forward(x: torch.Tensor) -> torch.Tensor:
        views = iter(torch.split(flat, [t.numel() for t, _ in initial]))
        for s, (a, b, m) in zip(stacks, zip(*[iter(initial)] * 3, strict=True), strict=True):
            s.A, s.B, s.m = (next(views).view(t.shape) for t, _ in (a, b, m))
        return stacks[1].forward(stacks[0].forward(x.unsqueeze(0)))

    def losses(x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        """Each member's mean squared error: [M]."""
        return ((forward(x) - y.unsqueeze(0)) ** 2).mean(dim=(1, 2))

    n = task.train.x.shape[0]

    def train_epoch(order: Iterable[torch.Tensor]) -> list[float]:
        total = torch.zeros(len(configs), dtype=dtype, device=device)
        for idx in order:
            loss = losses(task.train.x[idx], task.train.y[idx])
            flat.grad = None
            loss.sum().backward()
            optimizer.grads.copy_(flat.grad)
            optimizer.step(first.lr)
            total += loss.detach() * len(idx)
        return (total / n).tolist()

    def tensors(i: int) -> dict[str, torch.Tensor]:
        """Member i's trained parameters by name, as they are now (a copy: the batch trains on)."""
        c = configs[i]
        return {f"{name}.{param}": tensor.detach().clone() for name, s in zip(TARGETS, stacks, strict=True)
                for param, tensor in (("lora_A", s.A[i, :c.rank]), ("lora_B", s.B[i, :, :c.rank]),
                                      *((("lora_magnitude", s.m[i]),) if c.use_dora else ()))}

    def changes(i: int) -> dict[str, tuple[torch.Tensor, torch.Tensor]]:
        """Member i's change per layer, (s·B', A') as LoRALinear.change_factors gives it (DoRA's direction)."""
        c, out = configs[i], {}
        for name, s in zip(TARGETS, stacks, strict=True):
            b, a = s.B[i, :, :c.rank].detach(), s.A[i, :c.rank].detach()
            initial = models[i].get_submodule(name).initial
            if initial is not None:  # PiSSA, OLoRA: minus where they started
                b, a = torch.cat([b, -initial[1]], dim=1), torch.cat([a, initial[0]], dim=0)
            out[name] = (s.s[i, 0, 0] * b, a)
        return out

    stopped: dict[int, dict[str, torch.Tensor]] = {}  # the parameters of members that stopped early
    start = time.perf_counter()
    status, histories = members_loop(
        train_epoch, torch.no_grad()(lambda: _held_out(losses, task, cancel, len(configs))), members=len(configs),
        n=n, epochs=first.epochs, batch_size=first.batch_size, seed=first.seed, phase="finetune", device=device,
        on_progress=on_progress, cancel=cancel, on_stop=lambda i, _: stopped.setdefault(i, tensors(i)),
        dynamics=None if recorder is None else (lambda: recorder([changes(i) for i in range(len(configs))])))
    share = (time.perf_counter() - start) / len(configs)
    return [Trained(status[i], histories[i], stopped.get(i) or tensors(i), share) for i in range(len(configs))]


def _held_out(losses: Callable, task: Task, cancel: CancelCheck | None, members: int) -> list[float]:
    """Each member's held-out mean squared error, in chunks as loop.held_out_loss does, EVAL_CHUNK rows in all."""
    x, y = task.eval.x, task.eval.y
    chunk = max(1, EVAL_CHUNK // members)
    total = None
    for start in checked(range(0, x.shape[0], chunk), cancel):
        part = losses(x[start:start + chunk], y[start:start + chunk]) * y[start:start + chunk].numel()
        total = part if total is None else total + part
    return (total / y.numel()).tolist()
