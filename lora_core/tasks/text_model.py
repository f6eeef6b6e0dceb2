"""A small decoder-only transformer for the text task: token and position embeddings, `layers` blocks of causal
self-attention and an MLP, a final layer norm and a head, with PEFT's usual module names, so that an adapter's
`target_modules` read as they would on a real model (`q_proj`, `k_proj`, `v_proj`, `o_proj`, `fc1`, `fc2`):

    blocks.{i}.q_proj, .k_proj, .v_proj, .o_proj   d_model -> d_model
    blocks.{i}.fc1                                 d_model -> 4 d_model
    blocks.{i}.fc2                                 4 d_model -> d_model

Pre-norm residual blocks (GPT-2's layout). `forward(ids: [b, T]) -> logits [b, vocab, T]`: the class dimension
second, as F.cross_entropy takes it with labels [b, T].
"""

from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F

from ..settings.task_specs import TEXT_MODULES

INIT_STD = 0.02  # GPT-2's initial weights' standard deviation


class Block(nn.Module):
    def __init__(self, d_model: int, heads: int, dtype: torch.dtype) -> None:
        super().__init__()
        self.heads = heads
        self.ln1, self.ln2 = nn.LayerNorm(d_model, dtype=dtype), nn.LayerNorm(d_model, dtype=dtype)
        for name in ("q_proj", "k_proj", "v_proj", "o_proj"):
            setattr(self, name, nn.Linear(d_model, d_model, dtype=dtype))
        self.fc1 = nn.Linear(d_model, 4 * d_model, dtype=dtype)
        self.fc2 = nn.Linear(4 * d_model, d_model, dtype=dtype)

    def attention(self, x: torch.Tensor) -> torch.Tensor:
        """Causal multi-head self-attention of x: [b, T, d] (already normalised), before o_proj: [b, T, d]."""
        b, t, d = x.shape
        q, k, v = (proj(x).view(b, t, self.heads, d // self.heads).transpose(1, 2)
                   for proj in (self.q_proj, self.k_proj, self.v_proj))
        return F.scaled_dot_product_attention(q, k, v, is_causal=True).transpose(1, 2).reshape(b, t, d)

    def attention_weights(self, x: torch.Tensor) -> torch.Tensor:
        """Where each position looks: softmax(q kᵀ / √d_head) under the causal mask, [b, heads, T, T] for x:
        [b, T, d] (already normalised); `attention` is these weights times v (what the pages draw)."""
        b, t, d = x.shape
        q, k = (proj(x).view(b, t, self.heads, d // self.heads).transpose(1, 2) for proj in (self.q_proj, self.k_proj))
        scores = q @ k.transpose(-1, -2) / (d // self.heads) ** 0.5
        future = torch.triu(torch.ones(t, t, dtype=torch.bool, device=x.device), diagonal=1)
        return scores.masked_fill(future, float("-inf")).softmax(-1)

    def forward(self, h: torch.Tensor) -> torch.Tensor:
        h = h + self.o_proj(self.attention(self.ln1(h)))
        return h + self.fc2(F.gelu(self.fc1(self.ln2(h))))


class TinyTransformer(nn.Module):
    def __init__(self, vocab: int, d_model: int, layers: int, heads: int, context: int,
                 generator: torch.Generator | None = None, dtype: torch.dtype = torch.float32) -> None:
        super().__init__()
        self.tokens = nn.Embedding(vocab, d_model, dtype=dtype)
        self.positions = nn.Embedding(context, d_model, dtype=dtype)
        self.blocks = nn.ModuleList(Block(d_model, heads, dtype) for _ in range(layers))
        self.ln_f = nn.LayerNorm(d_model, dtype=dtype)
        self.head = nn.Linear(d_model, vocab, dtype=dtype)  # with a bias, as every linear layer here
        with torch.no_grad():  # drawn from the run's model stream, not torch's global one
            for name, p in self.named_parameters():
                if name.endswith(("weight",)) and p.dim() == 2:
                    p.copy_(torch.randn(p.shape, generator=generator, dtype=dtype) * INIT_STD)
                elif "ln" not in name:
                    p.zero_()

    def forward(self, ids: torch.Tensor) -> torch.Tensor:
        """ids: [b, T] (T at most the context) -> logits [b, vocab, T]."""
        h = self.tokens(ids) + self.positions(torch.arange(ids.shape[-1], device=ids.device))
        for block in self.blocks:
            h = block(h)
        return self.head(self.ln_f(h)).transpose(1, 2)

    @torch.no_grad()
    def attention_map(self, ids: torch.Tensor, block: int) -> torch.Tensor:
        """Block `block`'s attention weights on ids: [b, T]: [b, heads, T, T]."""
        h = self.tokens(ids) + self.positions(torch.arange(ids.shape[-1], device=ids.device))
        for before in self.blocks[:block]:
            h = before(h)
        chosen = self.blocks[block]
        return chosen.attention_weights(chosen.ln1(h))


def module_names(layers: int, modules: tuple[str, ...] = TEXT_MODULES) -> tuple[str, ...]:
    """The full names of `modules` (short names: q_proj, fc1, ...) in every block, block by block."""
    return tuple(f"blocks.{i}.{m}" for i in range(layers) for m in modules)


@torch.no_grad()
def generate(model: nn.Module, prompt: torch.Tensor, length: int, context: int, temperature: float = 0.0,
             generator: torch.Generator | None = None) -> list[int]:
    """`length` more token ids after `prompt` ([p] ids): greedy at temperature 0, else sampled from the softmax
    at that temperature with `generator`. The model sees at most its last `context` tokens."""
    ids = prompt.tolist()
    for _ in range(length):
        window = torch.tensor(ids[-context:], device=prompt.device)[None]
        logits = model(window)[0, :, -1].double().cpu()
        if temperature == 0:
            ids.append(int(logits.argmax()))
        else:
            ids.append(int(torch.multinomial(torch.softmax(logits / temperature, -1), 1, generator=generator)))
    return ids[prompt.numel():]
