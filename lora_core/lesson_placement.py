"""The transformer's lesson: where to put a fixed budget of adapter parameters (the LoRA paper's Table 5
question, asked of the text task's small model). Its runs: four placements, each at the largest rank whose
adapters fit the budget, from one base; its reveal ranks them by the merged model's loss on the code."""

from __future__ import annotations

from .lesson_parts import Bar, Reveal, merged
from .settings.config import preset
from .sweep import SweepRequest, SweepResult, request

# A transformer small enough for a lesson's seconds on a laptop (the text preset's base takes about 20 s)
SIZES = dict(hidden=32, blocks=1, heads=2, context=32, n_samples=1024, n_eval=128, batch_size=32, pretrain_epochs=8,
             epochs=4, lr=1e-2, alpha=8.0)
BUDGET = 1152  # q, v at r = 9; attention at r = 4; the MLP at r = 3; all six at r = 2, in this model
PLACEMENTS = {"q,v": "q and v (the LoRA paper's)", "attention": "attention: q, k, v, o", "mlp": "the MLP: fc1, fc2",
              "all": "all six"}
CHOICES = ("concentrated: q and v at a high rank", "spread: all six at a low rank", "about the same")
TIE = 0.01  # losses within 1 % of each other: no real difference
QUESTION = (f"A small transformer has learned Python's documentation; now it is fine-tuned on Python code with at "
            f"most **{BUDGET:,} trainable adapter parameters**. Each placement gets the largest rank that fits: q "
            "and v alone (the LoRA paper's choice) at a high rank, or all six projections of the block (q, k, v, o "
            "and the MLP's fc1, fc2) at a low one; attention alone and the MLP alone run too. **Which ends with "
            "the lower loss on the code?**")


def runs() -> SweepRequest:
    return request(preset("text", **SIZES), ranks=(1,), methods=("lora",), targets=tuple(PLACEMENTS),
                   budget=BUDGET)


def reveal(result: SweepResult) -> Reveal:
    by = {m.config["targets"]: m for m in result.members}
    losses = {p: merged(by[p]) for p in PLACEMENTS}
    ranked = sorted(losses, key=losses.get)
    few, spread = losses["q,v"], losses["all"]
    answer = CHOICES[2] if abs(few - spread) <= TIE * min(few, spread) else CHOICES[0] if few < spread else CHOICES[1]
    base = by["all"].losses["base_on_shifted"]
    parts = ", ".join(f"{PLACEMENTS[p]} at r = {by[p].config['rank']} ({by[p].params.lora_trainable:,} parameters) "
                      f"**{losses[p]:.3f}**" for p in ranked)
    verdict = {CHOICES[0]: f"q and v at r = {by['q,v'].config['rank']} ended {spread - few:.3f} below all six",
               CHOICES[1]: f"all six at r = {by['all'].config['rank']} ended {few - spread:.3f} below q and v",
               CHOICES[2]: "q and v and all six ended within 1 % of each other"}[answer]
    text = (f"Held-out loss on the code, nats per character (the base: {base:.3f}), lowest first: {parts}. "
            f"{verdict[0].upper()}{verdict[1:]}. "
            + ("Spreading the budget over every projection at a low rank beat concentrating it at a high one: what "
               "QLoRA and later work (Biderman et al. 2024) found on large models, and the direction of the LoRA "
               "paper's own Table 5, where Wq and Wv at r = 4 beat Wq alone at r = 8. " if answer == CHOICES[1] else
               "Later work on large models found spreading the budget over every projection wins; this run says "
               "otherwise. ")
            + f"Placements within a few hundredths of each other ({PLACEMENTS[ranked[0]]} and "
              f"{PLACEMENTS[ranked[1]]} here: {losses[ranked[1]] - losses[ranked[0]]:.3f}) are within what "
              "another seed moves.")
    numbers = {p: losses[p] for p in PLACEMENTS}
    return Reveal(text, answer,
                  [Bar(f"{PLACEMENTS[p]}, r = {by[p].config['rank']}", losses[p]) for p in ranked],
                  "merged loss on the code (nats per character)", numbers)
