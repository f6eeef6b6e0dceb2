#!/usr/bin/env bash
# The GPU checks of issue 13, in one run on a machine with CUDA and the project's working tree (no Streamlit or
# Plotly needed: only torch, safetensors and pytest). Writes everything under $OUT (default ./gpu-results):
#   pytest -m cuda (every path on cuda against the CPU), the fine-tune benchmark on cuda, the article's preset
#   end to end on cuda (pretraining included), and nvidia-smi's view of the device.
set -uo pipefail
cd "$(dirname "$0")/.."
OUT=${OUT:-gpu-results}
mkdir -p "$OUT"
export LORA_EXPLORER_CACHE="$OUT/base-cache"
python3 -c "import torch; print(torch.__version__, torch.cuda.get_device_name(0))" | tee "$OUT/device.txt"
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv >> "$OUT/device.txt" 2>&1
timeout 300 python3 -m pytest -m cuda tests/test_cuda.py tests/test_cli.py -q -p no:cacheprovider \
  -k "cuda or out_of_memory" 2>&1 | tail -30 | tee "$OUT/pytest.txt"
timeout 180 python3 benchmarks/bench_finetune.py --device cuda 2>&1 | tee "$OUT/bench_finetune.txt"
/usr/bin/time -v timeout 120 python3 -m lora_core --preset article --device cuda --json "$OUT/article.json" \
  > "$OUT/article.txt" 2>&1
tail -8 "$OUT/article.txt"
python3 -m lora_core --preset article --device cuda --json "$OUT/article-cached.json" 2>/dev/null | tail -3
