"""The Inspector on an adapter the size of a 7B language model's: 32 layers × 7 modules (q, k, v, o 4096 × 4096;
gate, up 4096 → 11008; down 11008 → 4096) at r = 64, about 160 M float32 parameters (640 MB), made here.

    python benchmarks/bench_inspector.py            # about half a minute to build; the goal is under 10 s to read

Printed: the file's size, the time `inspect_adapter` takes on its bytes (parsing, then per module QR of each factor
and a 64 × 64 SVD; never a dense 4096 × 11008 ΔW), and a dense SVD of one module's ΔW for comparison.
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path

import torch
from safetensors.torch import save

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from lora_core.inspector import inspect_adapter

SHAPES = {"self_attn.q_proj": (4096, 4096), "self_attn.k_proj": (4096, 4096), "self_attn.v_proj": (4096, 4096),
          "self_attn.o_proj": (4096, 4096), "mlp.gate_proj": (4096, 11008), "mlp.up_proj": (4096, 11008),
          "mlp.down_proj": (11008, 4096)}
LAYERS, RANK = 32, 64


def main() -> None:
    g = torch.Generator().manual_seed(0)
    tensors = {}
    for layer in range(LAYERS):
        for name, (d_in, d_out) in SHAPES.items():
            key = f"base_model.model.model.layers.{layer}.{name}"
            tensors[f"{key}.lora_A.weight"] = torch.randn(RANK, d_in, generator=g) / d_in ** 0.5
            tensors[f"{key}.lora_B.weight"] = torch.randn(d_out, RANK, generator=g) * 0.01
    params = sum(t.numel() for t in tensors.values())
    data = save(tensors)
    config = json.dumps({"peft_type": "LORA", "r": RANK, "lora_alpha": 16})
    print(f"{len(tensors) // 2} modules, {params / 1e6:.0f} M parameters, {len(data) / 2**20:.0f} MiB")
    del tensors
    start = time.perf_counter()
    report = inspect_adapter(data, config, max_bytes=2**31)
    seconds = time.perf_counter() - start
    print(f"inspect_adapter: {seconds:.2f} s for {len(report.modules)} modules "
          f"({1000 * seconds / len(report.modules):.1f} ms a module)")
    a = torch.randn(RANK, 4096, generator=g)
    b = torch.randn(11008, RANK, generator=g)
    start = time.perf_counter()
    torch.linalg.svdvals((b @ a).double())
    print(f"for comparison, one dense SVD of a 11008 x 4096 ΔW: {time.perf_counter() - start:.2f} s")


if __name__ == "__main__":
    main()
