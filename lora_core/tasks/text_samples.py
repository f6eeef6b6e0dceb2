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


def continuations(config: ExperimentConfig, base: nn.Module, merged: nn.Module, shifted: Task) -> list[dict]:
    """[{"prompt", "truth" (the text's own next characters), "base", "adapted"}] for the first PROMPTS held-out
    windows of the shifted text."""
    length = min(PROMPT_CHARS, config.context)
    samples = []
    for i in range(min(PROMPTS, shifted.eval.x.shape[0])):
        prompt = shifted.eval.x[i, :length]
        truth = shifted.eval.y[i, length - 1:]  # the window's own continuation, as far as the window goes
        samples.append({"prompt": decode(prompt), "truth": decode(truth),
                        **{name: decode(generate(model, prompt, CONTINUATION_CHARS, config.context))
                           for name, model in (("base", base), ("adapted", merged))}})
    return samples
