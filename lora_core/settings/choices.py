"""The values settings can take, the limits they must keep, and the error for one that cannot.

The bottom of lora_core (no torch, nothing of lora_core below it): config.py declares the settings with these
choices, and the rules that validate a config (task_specs, path_rule, budget) read them from here.
"""

from __future__ import annotations

import os
from typing import Any

# Choices, written once and imported wherever a widget, flag or check needs them.
TASKS = ["linear", "digits", "text"]  # a list: tasks/registry.register_task adds one
TASK_LABELS = {"linear": "linear regression (the article)", "digits": "handwritten digits (MLP)",
               "text": "text (a small transformer)"}
DIGIT_SHIFTS = ("rotated", "mirrored", "inverted", "noised", "permuted", "held_out")  # digits.py
DIGIT_SHIFT_LABELS = {"rotated": "rotated", "mirrored": "mirrored", "inverted": "inverted", "noised": "noised",
                      "permuted": "pixels permuted", "held_out": "classes held out"}
# The digits network's layers an adapter goes on (task_specs.MLP_LAYERS by number: input 1, hidden 2, output 3)
LAYER_SETS = ("1,2,3", "1,2", "2,3", "1,3", "1", "2", "3")
LAYER_SET_LABELS = {"1,2,3": "all three", "1,2": "1 and 2 (input, hidden)", "2,3": "2 and 3 (hidden, output)",
                    "1,3": "1 and 3 (input, output)", "1": "1 (input)", "2": "2 (hidden)", "3": "3 (output)"}
# The text task's shifts (tasks/text_data.py): what fine-tuning adapts the documentation's model to
TEXT_SHIFTS = ("code", "reversed")
TEXT_SHIFT_LABELS = {"code": "Python source code", "reversed": "the documentation backwards"}
# The text model's modules an adapter may go on, PEFT's names, by their short names in the `targets` setting;
# a setting is a comma-separated subset in this order, or one of TARGET_PRESETS.
TARGET_MODULES = {"q": "q_proj", "k": "k_proj", "v": "v_proj", "o": "o_proj", "fc1": "fc1", "fc2": "fc2"}
TARGET_PRESETS = {"attention": ("q", "k", "v", "o"), "mlp": ("fc1", "fc2"), "all": tuple(TARGET_MODULES)}
TARGET_SETS = (*TARGET_PRESETS, *(",".join(n for i, n in enumerate(TARGET_MODULES) if mask >> i & 1)
                                  for mask in range(1, 2 ** len(TARGET_MODULES))))
TARGET_SET_LABELS = {"attention": "attention: q, k, v, o", "mlp": "MLP: fc1, fc2", "all": "all six",
                     "q,v": "q, v (the LoRA paper's)"}


def canonical_targets(text: str) -> str:
    """A `targets` setting in its one spelling: 'V, q' -> 'q,v', 'ATTENTION' -> 'attention'; text that names
    anything else is returned as it was (and then refused as no choice)."""
    names = [n.strip().lower() for n in text.split(",") if n.strip()]
    if len(names) == 1 and names[0] in TARGET_PRESETS:
        return names[0]
    short = {**{v: k for k, v in TARGET_MODULES.items()}, **{k: k for k in TARGET_MODULES}}  # q_proj or q
    if not names or any(n not in short for n in names):
        return text
    chosen = {short[n] for n in names}
    return ",".join(n for n in TARGET_MODULES if n in chosen)


METHODS = ("lora", "full")
METHOD_LABELS = {"lora": "LoRA (and its variants)", "full": "full fine-tuning"}
SHIFTS = ("constant", "low_rank", "graded", "full_rank")
SHIFT_LABELS = {"constant": "constant", "low_rank": "low-rank", "graded": "low-rank, directions halving",
                "full_rank": "full-rank"}
RANKED_SHIFTS = ("low_rank", "graded")  # the shifts whose rank is the `shift_rank` setting
# The fine-tuning optimizer: Adam (the article's, torch.optim.Adam's defaults) or plain gradient descent on
# mini-batches (torch.optim.SGD without momentum: what the theory of learning one direction at a time describes)
OPTIMIZERS = ("adam", "sgd")
OPTIMIZER_LABELS = {"adam": "Adam (the article)", "sgd": "SGD (plain gradient descent)"}
DEVICES = ("auto", "cpu", "cuda", "mps")
# gaussian: the article's randn; kaiming: PEFT's kaiming_uniform(a=sqrt(5)); pissa, olora: from W (inits.py)
INITS = ["gaussian", "kaiming", "pissa", "olora"]  # a list: adapters/registry.register_variant adds one
INIT_LABELS = {"gaussian": "Gaussian (the article)", "kaiming": "Kaiming uniform (PEFT)",
               "pissa": "PiSSA (top-r SVD of W)", "olora": "OLoRA (QR of W)"}
BOOL_TEXT = {"true": True, "false": False, "1": True, "0": False, "yes": True, "no": False, "on": True,
             "off": False}
DTYPES = ("float32", "float64")
BYTES_PER_ITEM = {"float32": 4, "float64": 8, "float16": 2, "bfloat16": 2}  # half precisions: Parameters page
# A sweep's method names (`sweep --methods`, the Compare page): each a named set of the settings above.
METHOD_SETS: dict[str, dict[str, Any]] = {
    "lora": {"method": "lora"},
    "rslora": {"method": "lora", "use_rslora": True},
    "dora": {"method": "lora", "use_dora": True},
    "pissa": {"method": "lora", "init": "pissa"},
    "olora": {"method": "lora", "init": "olora"},
    "loraplus": {"method": "lora", "lr_ratio": 16.0},
    "full": {"method": "full"},
}
METHOD_SET_LABELS = {"lora": "LoRA", "rslora": "rsLoRA", "dora": "DoRA", "pissa": "PiSSA", "olora": "OLoRA",
                     "loraplus": f"LoRA+ (λ = {METHOD_SETS['loraplus']['lr_ratio']:g})", "full": "full fine-tuning"}
PATHS = ("auto", "autograd", "fast")  # which training path fine-tunes; auto picks fast when it applies

# Memory a configuration may ask for before it is refused (bytes); an env var raises or lowers it.
MEMORY_LIMIT_BYTES = int(os.environ.get("LORA_EXPLORER_MAX_BYTES", 8 * 2**30))
MAX_DIM = 65_536
MAX_SAMPLES = 10_000_000
MAX_EPOCHS = 100_000
FLOAT_MAX = 3.4e38  # a little under float32's largest finite value, 3.4028e38
# The smallest positive setting that still does something. Every positive float scales or adds to values of
# order 1 (an Adam step, α/r on B·A, a shift, a noise): float32 resolves about 6e-8 of a value, so anything
# 1e-12 or more below it is lost to rounding, and below 1.2e-38 (float32's smallest normal) it becomes 0 outright
# (1e-320 in a link is 0.0 in float32). Refused by name, rather than a run that reports "ok" and changed nothing.
MIN_POSITIVE = 1e-12


class ConfigError(ValueError):
    """A configuration that cannot run; the message says what is wrong and what is allowed."""
