"""A run's cost before it starts: peak memory measured against the estimate over several shapes (wide layers
included), multiply-adds that scale with the work, and this server's limits for one run."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from lora_core.budget import APP_RUN_MACS, check, estimate
from lora_core.config import ConfigError, preset

ROOT = Path(__file__).resolve().parents[1]
# Peak RSS from /proc (VmHWM), reset to the current RSS just before the run; getrusage's ru_maxrss is no use
# here, since a child inherits its parent's (pytest's) peak across fork and exec.
# A script's start: the config from argv[1] (JSON), torch warmed up, `kib(field)` read from /proc/self/status.
PEAK_RSS_PREAMBLE = """
import json, os, sys
os.environ["LORA_EXPLORER_CACHE"] = "off"
from lora_core.config import preset
from lora_core.experiment import run_experiment
from lora_core.training import warm_up

def kib(field):
    return int(open("/proc/self/status").read().split(field + ":")[1].split()[0]) * 1024

warm_up()
config = preset("default", **json.loads(sys.argv[1]))
"""
MEASURE = PEAK_RSS_PREAMBLE + """
open("/proc/self/clear_refs", "w").write("5")  # resets VmHWM to the current RSS
before = kib("VmRSS")
run_experiment(config)
print(kib("VmHWM") - before)
"""


@pytest.mark.parametrize("shape", [
    dict(d_in=4000, hidden=1, d_out=4000, rank=1),  # wide layers: θ, Δθ and θ' dominate
    dict(d_in=1500, hidden=1500, d_out=1500, n_samples=2000),  # square layers: the spectra's SVDs dominate
    dict(n_samples=300_000),  # many samples: the data and the fast path's activations dominate
    dict(d_in=800, hidden=800, d_out=800, n_samples=20_000, method="full"),  # full fine-tuning: Adam's state
    dict(d_in=2500, hidden=10, d_out=2500, shift="full_rank"),  # a full-rank shift's dense spectrum
    dict(d_in=1500, hidden=1500, d_out=1500, n_samples=2000, use_dora=True),  # DoRA's dense W + sBA per step
    dict(d_in=2000, hidden=1000, d_out=2000, rank=8, init="pissa"),  # PiSSA's SVD of each weight
    dict(task="digits"),  # the digits task: reading the data dominates
    dict(task="digits", hidden=2000),  # a wide digits network: the spectra
    dict(task="digits", hidden=2000, method="full"),  # ... and full fine-tuning's Adam state
])
def test_peak_memory_is_within_30_percent_of_the_estimate(shape):
    settings = {**shape, "pretrain_epochs": 1, "epochs": 1}
    out = subprocess.run([sys.executable, "-c", MEASURE, json.dumps(settings)], capture_output=True, text=True,
                         cwd=ROOT, timeout=300)
    assert out.returncode == 0, out.stderr[-2000:]
    measured = int(out.stdout.strip())
    expected = estimate(preset("default", **settings)).bytes
    assert 0.7 <= measured / expected <= 1.3, f"measured {measured / 2**20:.0f} MiB, estimated {expected / 2**20:.0f}"


def test_multiply_adds_grow_with_the_work():
    base = estimate(preset("default"))
    assert estimate(preset("default", pretrain_epochs=60, epochs=60)).macs == pytest.approx(2 * base.macs, rel=0.1)
    assert estimate(preset("default", rank=8)).macs > base.macs
    assert estimate(preset("default", method="full")).macs > base.macs
    article = estimate(preset("article"))
    # the article's pretraining alone: 100 epochs x 10,000 rows x 3 (forward + backward) x 2,001,000 weights
    assert article.macs == pytest.approx(6.0e12, rel=0.15)
    assert article.steps == 79 * 200


def test_the_app_admits_the_article_but_not_a_hundred_times_it():
    check(preset("article"), max_bytes=8 * 2**30, max_macs=APP_RUN_MACS)
    with pytest.raises(ConfigError, match=r"multiply-adds .* lower the epochs"):
        check(preset("article", epochs=10_000, pretrain_epochs=10_000), max_bytes=8 * 2**30, max_macs=APP_RUN_MACS)
    with pytest.raises(ConfigError, match=r"memory, more than .* lower the training"):
        check(preset("default", d_in=20_000, hidden=1, d_out=20_000, rank=1), max_bytes=2**30, max_macs=APP_RUN_MACS)
