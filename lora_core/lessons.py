"""Lessons: a question, a prediction the learner commits to, the lesson's runs, then a reveal written from them.

Each lesson is one entry of `LESSONS`: its question and choices, its runs (a small sweep: one base, a few
members, a few seconds on a laptop's CPU) and `reveal`, a function of the finished sweep that says what happened
in numbers, which choice the runs support, and the chart to draw. Nothing in a reveal is written in advance:
every number comes from the run, and the choice it supports is computed from them (tests/test_lessons.py runs
each lesson's real settings and checks each claim against the numbers).
"""

from __future__ import annotations

from itertools import pairwise

from . import lesson_placement
from .lesson_parts import Bar, Lesson, Reveal, accuracy, merged
from .measure.dynamics import ORDINALS, arrivals, half_learned_epochs
from .settings.choices import METHOD_SET_LABELS
from .settings.config import ExperimentConfig, preset
from .settings.results import ExperimentResult
from .sweep import SweepRequest, SweepResult, request


def _by_rank(result: SweepResult, method: str = "lora") -> dict[int, ExperimentResult]:
    return {m.config["rank"]: m for m, name in zip(result.members, result.methods, strict=True) if name == method}


def _label(name: str, m: ExperimentResult) -> str:
    return METHOD_SET_LABELS[name] if name == "full" else f"{METHOD_SET_LABELS[name]} r = {m.config['rank']}"


def _smallest_rank_within(losses: dict[int, float], factor: float) -> int:
    """The smallest rank whose loss is within `factor` of the best one's."""
    best = min(losses.values())
    return min(r for r, loss in losses.items() if loss <= factor * best)


# 1. The article's story ---------------------------------------------------------------------------------------
def _constant_runs() -> SweepRequest:
    return request(preset("default", shift="constant"), ranks=(1, 4, 16), methods=("lora",))


def removed(m: ExperimentResult) -> float:
    """The share of the base's loss on the shifted task that fine-tuning removed, in percent."""
    return 100 * (1 - merged(m) / m.losses["base_on_shifted"])


def _constant_reveal(result: SweepResult) -> Reveal:
    runs = _by_rank(result)
    share = {r: removed(m) for r, m in runs.items()}
    best = max(share.values())
    enough = min(r for r, s in share.items() if s >= best - 0.1)  # within 0.1 % of the base's loss of the best
    one = runs[1]
    spectrum = one.shift_spectrum
    second = spectrum[1] / spectrum[0] if len(spectrum) > 1 else 0.0
    rest = "every other one is 0" if second == 0 else f"the next is {second:.0e} of it"
    text = (f"Before fine-tuning, the base's loss on the shifted task was **{one.losses['base_on_shifted']:.3g}**. "
            f"Your r = 1 adapter brought it to **{merged(one):.3g}**, removing **{share[1]:.2f} %** of it; r = 4 "
            f"removed {share[4]:.2f} % ({merged(runs[4]):.3g}) and r = 16 {share[16]:.2f} % "
            f"({merged(runs[16]):.3g}). The shift adds {one.config['shift_scale']:g} to every entry of θ: a matrix "
            f"of rank 1 (its largest singular value is {spectrum[0]:.3g}, {rest}), so one direction is all there "
            f"is to learn. Merging B·A into W changed the model's outputs by at most **{one.merge_max_abs_diff:.1e}**"
            ": float32 rounding, so the merged model is the adapted one.")
    return Reveal(text, f"r = {enough}", [Bar(f"r = {r}", merged(m), m.floor) for r, m in runs.items()],
                  "merged loss on the shifted task (MSE)",
                  {"base": one.losses["base_on_shifted"], "removed_r1": share[1], "removed_r4": share[4],
                   "removed_r16": share[16], "second_singular_value": second, "merge_error": one.merge_max_abs_diff})


# 2. How much rank a shift of rank s needs ---------------------------------------------------------------------
SHIFT_RANK = 4


def _rank_runs() -> SweepRequest:
    return request(preset("default", shift="low_rank", shift_rank=SHIFT_RANK), ranks=(1, 2, 4), methods=("lora",))


def reachable(floor: float, base: float) -> bool:
    """Whether the best possible loss is practically zero: under a thousandth of the base's loss."""
    return floor < 1e-3 * base


FOUND = 1.05  # a trained loss within 5 % of the best possible one: training found the best change


def _rank_reveal(result: SweepResult) -> Reveal:
    runs = _by_rank(result)
    base = runs[1].losses["base_on_shifted"]
    first = min(r for r, m in runs.items() if reachable(m.floor, base))
    r1, rf = runs[1], runs[first]
    found = "training found it" if merged(r1) <= FOUND * r1.floor else "training did not get there"
    gap = merged(rf) / rf.floor
    after = (f"But your r = {first} adapter ended at **{merged(rf):.3g}** after {rf.config['epochs']} epochs, "
             f"{gap:.0f} times the best possible: what a rank can do and what training finds in a given time are "
             "not the same." if gap > 10 else
             f"Your r = {first} adapter ended at **{merged(rf):.3g}** after {rf.config['epochs']} epochs.")
    text = (f"The shift has rank {SHIFT_RANK}. The best any rank-1 pair of adapters can do here is "
            f"**{r1.floor:.3g}**, and your r = 1 adapter reached {merged(r1):.3g}: {found}. "
            f"From r = {first} on, the best possible is **{rf.floor:.2g}**: with an adapter on each of the two "
            f"layers, W₂W₁ changes by W₂·ΔW₁ + ΔW₂·W₁', up to 2r directions, so r = {first} reaches a rank-"
            f"{SHIFT_RANK} shift. {after} r = 4 reached {merged(runs[4]):.3g}.")
    return Reveal(text, f"r = {first}", [Bar(f"r = {r}", merged(m), m.floor) for r, m in runs.items()],
                  "merged loss on the shifted task (MSE)",
                  {"first_reachable": first, "floor_r1": r1.floor, "loss_r1": merged(r1), "floor_first": rf.floor,
                   "loss_first": merged(rf), "base": base, "gap": gap})


# 3. α and r ---------------------------------------------------------------------------------------------------
ALPHA = 8.0


def _alpha_runs() -> SweepRequest:
    return request(preset("default", shift="low_rank", shift_rank=8, alpha=ALPHA), ranks=(1, 4, 16),
                   methods=("lora", "rslora"))


def _alpha_reveal(result: SweepResult) -> Reveal:
    lora, rs = _by_rank(result, "lora"), _by_rank(result, "rslora")
    top = max(lora)
    a, b = merged(lora[top]), merged(rs[top])
    answer = "about the same" if abs(a - b) <= 0.05 * max(a, b) else "rsLoRA (α/√r)" if b < a else "LoRA (α/r)"
    text = (f"At r = 1 the two are one method (√1 = 1): both reached **{merged(lora[1]):.3g}**. As r grows with "
            f"α = {ALPHA:g} fixed, LoRA's scale α/r shrinks (at r = {top}: {ALPHA / top:g}) while rsLoRA's α/√r "
            f"shrinks slower ({ALPHA / top ** 0.5:g}). At r = {top}, LoRA reached **{a:.3g}** and rsLoRA "
            f"**{b:.3g}**; at r = 4, {merged(lora[4]):.3g} and {merged(rs[4]):.3g}. Kalajdzievski (2023) "
            "proposed α/√r so that a larger rank keeps learning as fast; here it "
            f"{'did' if b < a else 'did not'} end lower.")
    bars = [Bar(f"{METHOD_SET_LABELS[name]} r = {r}", merged(m), m.floor)
            for name, runs in (("lora", lora), ("rslora", rs)) for r, m in runs.items()]
    return Reveal(text, answer, bars, "merged loss on the shifted task (MSE)",
                  {"lora_r1": merged(lora[1]), "rslora_r1": merged(rs[1]), "lora_top": a, "rslora_top": b})


# 4. Forgetting ------------------------------------------------------------------------------------------------
def _forgetting_runs() -> SweepRequest:
    return request(preset("digits", digits_shift="rotated", rank=4), ranks=(4,), methods=("lora", "full"))


def _forgetting_reveal(result: SweepResult) -> Reveal:
    lora, full = result.members[result.methods.index("lora")], result.members[result.methods.index("full")]
    kept = {"LoRA (r = 4)": accuracy(lora, "merged_on_original"),
            "full fine-tuning": accuracy(full, "merged_on_original")}
    learned = {"LoRA (r = 4)": accuracy(lora, "merged_on_shifted"),
               "full fine-tuning": accuracy(full, "merged_on_shifted")}
    (x, a), (y, b) = kept.items()
    answer = "both forget alike" if abs(a - b) <= 2 else x if a > b else y
    verdict = "neither kept clearly more (within 2 points)" if abs(a - b) <= 2 else f"{answer} kept more"
    before = accuracy(lora, "base_on_original")
    text = (f"Before fine-tuning, the network read **{before:.1f} %** of the upright "
            f"held-out digits and {accuracy(lora, 'base_on_shifted'):.1f} % of the rotated ones. After: LoRA "
            f"({lora.params.lora_trainable:,} trained numbers) reads **{learned[x]:.1f} %** of the rotated digits "
            f"and keeps **{a:.1f} %** of the upright ones; full fine-tuning ({full.params.full_trainable:,} "
            f"numbers) reads {learned[y]:.1f} % and keeps **{b:.1f} %**. On this run and seed, {verdict}."
            + (" Both forget most of what they knew: a 90° rotation moves every pixel, and nothing in either "
               "fine-tune asks the model to remember the upright digits." if max(a, b) < before / 2 else ""))
    bars = [Bar(f"{name}: upright", value) for name, value in kept.items()] + [
        Bar(f"{name}: rotated", value) for name, value in learned.items()]
    return Reveal(text, answer, bars, "held-out accuracy after fine-tuning (%)",
                  {"lora_kept": a, "full_kept": b, "lora_learned": learned[x], "full_learned": learned[y],
                   "before": before})


# 5. Where low rank cannot go ----------------------------------------------------------------------------------
def _inverted_runs() -> SweepRequest:
    return request(preset("digits", digits_shift="inverted"), ranks=(1, 8), methods=("lora", "full"))


def _inverted_reveal(result: SweepResult) -> Reveal:
    runs = {_label(name, m): accuracy(m, "merged_on_shifted") for m, name in zip(result.members, result.methods,
                                                                                 strict=True)}
    best = max(runs.values())
    answer = next(choice for choice, label in INVERTED_CHOICES.items() if runs[label] >= best - 5)
    lora1, lora8, full = runs["LoRA r = 1"], runs["LoRA r = 8"], runs["full fine-tuning"]
    text = (f"On inverted digits (every pixel x becomes 1 − x) LoRA r = 1 reached **{lora1:.1f} %**, r = 8 "
            f"**{lora8:.1f} %**, and full fine-tuning **{full:.1f} %**. Why: the first layer sees 1 − x, so to "
            "compute what it computed before it needs W₁' = −W₁ (and a new bias): a change ΔW₁ = −2W₁, as many "
            "directions as the layer has."
            + (" A rank-8 adapter can move 8 of them: the change this shift needs is not low rank at all."
               if answer == "only full fine-tuning gets there" else ""))
    return Reveal(text, answer, [Bar(label, value) for label, value in runs.items()],
                  "held-out accuracy on inverted digits (%)", {"lora_r1": lora1, "lora_r8": lora8, "full": full})


INVERTED_CHOICES = {"r = 1 is enough": "LoRA r = 1", "r = 8 is enough": "LoRA r = 8",
                    "only full fine-tuning gets there": "full fine-tuning"}


# 6. Do the variants help? -------------------------------------------------------------------------------------
VARIANT_METHODS = ("lora", "rslora", "dora", "pissa", "olora", "loraplus")


def _variant_runs() -> SweepRequest:
    return request(preset("default", shift="low_rank", shift_rank=SHIFT_RANK), ranks=(2,), methods=VARIANT_METHODS)


def _variant_reveal(result: SweepResult) -> Reveal:
    losses = {METHOD_SET_LABELS[name]: merged(m) for m, name in zip(result.members, result.methods, strict=True)}
    ranked = sorted(losses, key=losses.get)
    tied = [name for name in ranked if losses[name] <= 1.02 * losses[ranked[0]]]  # within 2 %: no real difference
    answer = "plain LoRA is as good as any" if "LoRA" in tied else ranked[0]
    bottom = (f"{', '.join(tied)} ended within 2 % of each other at the bottom" if len(tied) > 1 else
              f"{ranked[0]} ended lowest")
    text = (f"All at r = 2 on a rank-{SHIFT_RANK} shift, from the same base and batches: "
            + ", ".join(f"{name} **{losses[name]:.3g}**" for name in ranked) + f". {bottom}. "
            "The variants change where training starts (PiSSA and OLoRA from W's own strongest directions), how "
            "B·A is scaled (rsLoRA), how fast B moves (LoRA+) or what the layer computes (DoRA rescales its rows); "
            "on this linear task that is what the numbers show, not a rule for every model.")
    return Reveal(text, answer if answer in VARIANT_CHOICES else "another variant",
                  [Bar(name, losses[name]) for name in ranked], "merged loss on the shifted task (MSE)", losses)


VARIANT_CHOICES = ("plain LoRA is as good as any", "DoRA", "PiSSA", "another variant")
DIRECTION_CHOICES = ("all three together", "largest first, one at a time", "smallest first, one at a time")


def _directions_runs() -> SweepRequest:
    return request(preset("dynamics"), ranks=(3,), methods=("lora",))


def _directions_reveal(result: SweepResult) -> Reveal:
    member = result.members[0]
    epochs = half_learned_epochs(member.history["finetune"])
    sigma = member.shift_spectrum[:len(epochs)]
    reached = [e for e in epochs if e is not None]
    ordered = len(reached) == len(epochs) and all(a < b for a, b in pairwise(epochs))
    reverse = len(reached) == len(epochs) and all(a > b for a, b in pairwise(epochs))
    answer = DIRECTION_CHOICES[1] if ordered else DIRECTION_CHOICES[2] if reverse else DIRECTION_CHOICES[0]
    text = arrivals(member.history["finetune"])
    if ordered:
        times = ", ".join(f"the {ORDINALS[i]} took **{epochs[i] / epochs[0]:.1f}×** as long as the first "
                          f"(1/σ says {sigma[0] / sigma[i]:.0f}×)" for i in range(1, len(epochs)))
        text += (f" {times[0].upper()}{times[1:]}. Gradient descent on a product of two matrices (B·A, or the two "
                 "layers) learns the strongest direction first, each after a plateau, in a time that grows like "
                 "1/σ (Saxe, McClelland & Ganguli 2014). This is plain SGD; Adam at the same learning rate (the "
                 "Playground's fine-tuning optimizer) brings every direction within the first few epochs.")
    numbers = {f"epoch {i + 1}": float(e) for i, e in enumerate(epochs) if e is not None}
    return Reveal(text, answer, [Bar(f"direction {i + 1} (σ = {s:.3g})", float(e if e is not None else 0))
                                 for i, (s, e) in enumerate(zip(sigma, epochs, strict=True))],
                  "when half of it was learned (fine-tuning epoch)", numbers)

LESSONS: dict[str, Lesson] = {lesson.id: lesson for lesson in (
    Lesson("constant", "A constant shift is one direction",
           "Fine-tuning must add 1 to every weight of θ (the article's shift). LoRA trains B·A of rank r on each "
           "layer. **Which is the smallest rank that does about as well as any?**",
           ("r = 1", "r = 4", "r = 16"), _constant_runs, _constant_reveal, "Playground"),
    Lesson("rank", "How much rank a shift of rank s needs",
           f"Now the shift has rank {SHIFT_RANK}, and both layers get an adapter of rank r. **What is the smallest "
           "r whose best possible loss is practically zero?**", ("r = 1", "r = 2", "r = 4"), _rank_runs,
           _rank_reveal, "Compare"),
    Lesson("alpha", "α and r: α/r against α/√r",
           f"Keep α = {ALPHA:g} and raise r from 1 to 16. LoRA scales B·A by α/r, rsLoRA by α/√r. **At r = 16, "
           "which ends with the lower loss?**", ("LoRA (α/r)", "rsLoRA (α/√r)", "about the same"), _alpha_runs,
           _alpha_reveal, "Compare"),
    Lesson("forgetting", "Forgetting: LoRA against full fine-tuning",
           "A network that reads handwritten digits is fine-tuned on the same digits rotated by 90°, once with "
           "LoRA (r = 4) and once with every weight. **Which still reads the upright digits better afterwards?**",
           ("LoRA (r = 4)", "full fine-tuning", "both forget alike"), _forgetting_runs, _forgetting_reveal,
           "Compare"),
    Lesson("inverted", "Where low rank cannot go",
           "Now every pixel is inverted: black becomes white. **How much does an adapter need to read inverted "
           "digits well?**", tuple(INVERTED_CHOICES), _inverted_runs, _inverted_reveal, "Compare"),
    Lesson("variants", "Do LoRA's variants help here?",
           f"Six methods at r = 2 on the rank-{SHIFT_RANK} shift: LoRA, rsLoRA, DoRA, PiSSA, OLoRA and LoRA+. "
           "**Which ends with the lowest loss?**", VARIANT_CHOICES, _variant_runs, _variant_reveal, "Compare"),
    Lesson("directions", "Directions are learned one at a time",
           "The shift now has three directions, of strengths 4 : 2 : 1, and plain gradient descent fine-tunes an "
           "adapter of rank 3 that can hold all of them. **In what order does the model learn them?**",
           DIRECTION_CHOICES, _directions_runs, _directions_reveal, "Playground"),
    Lesson("placement", "Where LoRA lives: which projections get the adapters", lesson_placement.QUESTION,
           lesson_placement.CHOICES, lesson_placement.runs, lesson_placement.reveal, "Compare"),
)}


def lesson_config(lesson: Lesson) -> ExperimentConfig:
    """The settings the lesson's runs share (what its explore link opens)."""
    return lesson.runs().config
