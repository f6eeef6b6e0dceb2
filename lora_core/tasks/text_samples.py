"""What the text task's pages show of a run: the same prompts continued by the base and by the fine-tuned model,
so a person reads the model's style change. Greedy (the most likely next character every time), so a result's
text is deterministic for its seed and needs no sampling settings."""

from __future__ import annotations

import torch.nn as nn

from ..settings.budget import SAMPLE_CHARS as CONTINUATION_CHARS
from ..settings.budget import SAMPLE_PROMPT_CHARS as PROMPT_CHARS
from ..settings.budget import SAMPLE_PROMPTS as PROMPTS
from ..settings.config import ExperimentConfig
from .data import Task
from .text_data import decode
from .text_model import generate

# PROMPTS held-out windows of the shifted text begin with a prompt of PROMPT_CHARS (at most the context), each
# continued by CONTINUATION_CHARS: declared in settings/budget.py, whose estimate counts their cost


MAP_HEAD = 0  # the head whose attention the first sample carries, in the last block
MAP_CHARS = 32  # the map's characters, from the prompt's start


def continuations(config: ExperimentConfig, base: nn.Module, merged: nn.Module, shifted: Task) -> list[dict]:
    """[{"prompt", "truth" (the text's own next characters), "base", "adapted"}] for the first PROMPTS held-out
    windows of the shifted text; the first also has "attention": where each of its first MAP_CHARS characters
    looks in the last block's head MAP_HEAD, under both models ({"block", "head", "chars", "base", "adapted"},
    weights rounded to 3 decimals: they are for drawing)."""
    length = min(PROMPT_CHARS, config.context)
    samples = []
    for i in range(min(PROMPTS, shifted.eval.x.shape[0])):
        prompt = shifted.eval.x[i, :length]
        truth = shifted.eval.y[i, length - 1:]  # the window's own continuation, as far as the window goes
        samples.append({"prompt": decode(prompt), "truth": decode(truth),
                        **{name: decode(generate(model, prompt, CONTINUATION_CHARS, config.context))
                           for name, model in (("base", base), ("adapted", merged))}})
    if samples:
        ids = shifted.eval.x[:1, :min(MAP_CHARS, config.context)]
        block = config.blocks - 1
        samples[0]["attention"] = {
            "block": block, "head": MAP_HEAD, "chars": decode(ids[0]),
            **{name: [[round(w, 3) for w in row] for row in model.attention_map(ids, block)[0, MAP_HEAD].tolist()]
               for name, model in (("base", base), ("adapted", merged))}}
    return samples
