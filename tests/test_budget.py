"""A run's cost before it starts: peak memory measured against the estimate over several shapes (wide layers
included), multiply-adds that scale with the work, and this server's limits for one run."""

from __future__ import annotations

import pytest

from lora_core.settings.budget import APP_RUN_MACS, APP_RUN_SECONDS, SECONDS_PER_STEP, check, estimate
from lora_core.settings.config import ConfigError, preset
from tests.peak_memory import peak_bytes

ARTICLE = dict(rank=1, alpha=1.0, init="gaussian", n_samples=10_000, n_eval=2_000, d_in=1001, hidden=1000,
               d_out=1000, batch_size=128, lr=1e-3)  # the article preset's shapes (at 1 epoch each, below)
SHAPES = {
    "wide layers": dict(d_in=2000, hidden=1, d_out=2000, rank=1),  # θ, Δθ and θ' (16 MB each) dominate
    "square layers": dict(d_in=900, hidden=900, d_out=900, n_samples=2000),  # the spectra's SVDs dominate
    "many samples": dict(n_samples=300_000),  # the data and the fast path's activations dominate
    "full fine-tuning": dict(d_in=700, hidden=700, d_out=700, n_samples=8_000, method="full"),  # Adam's state
    "full-rank shift": dict(d_in=1300, hidden=10, d_out=1300, shift="full_rank"),  # its dense spectrum
    "DoRA": dict(d_in=900, hidden=900, d_out=900, n_samples=2000, use_dora=True),  # dense W + sBA per step
    "PiSSA": dict(d_in=1200, hidden=600, d_out=1200, rank=8, init="pissa"),  # PiSSA's SVD of each weight
    "digits": dict(task="digits"),  # reading the data dominates
    "wide digits": dict(task="digits", hidden=1000),  # the spectra
    "wide digits, full": dict(task="digits", hidden=1000, method="full"),  # ... and full fine-tuning's Adam state
    "article": ARTICLE,
    "article, full fine-tuning": dict(ARTICLE, method="full"),
    "text": dict(task="text", n_eval=256, batch_size=32),  # reading the two texts dominates
    "long text windows": dict(task="text", hidden=128, context=512, batch_size=64, n_samples=64, n_eval=64),
    "wide text, full": dict(task="text", hidden=256, n_samples=64, n_eval=64, method="full"),
}


@pytest.fixture(scope="module")
def peaks() -> dict[str, int]:
    """Each shape's measured peak (bytes above the RSS before its run) at 1 epoch of each phase, one after
    another (two at once would slow torch's threads many times over on two cores)."""
    measured = peak_bytes({name: ("experiment", {**settings, "pretrain_epochs": 1, "epochs": 1})
                           for name, settings in SHAPES.items()})
    print("seconds per shape:", {name: seconds for name, (_, seconds) in measured.items()})
    return {name: peak for name, (peak, _) in measured.items()}


@pytest.mark.parametrize("shape", list(SHAPES))
def test_the_memory_estimate_is_an_upper_bound_and_not_a_wild_one(peaks, shape):
    """The scheduler admits by the estimate, so the real peak must never exceed it; and an estimate more than
    twice the peak would refuse honest runs."""
    measured = peaks[shape]
    expected = estimate(preset("default", **SHAPES[shape], pretrain_epochs=1, epochs=1)).bytes
    print(f"{shape}: measured {measured / 2**20:.0f} MiB, estimated {expected / 2**20:.0f} MiB, "
          f"{measured / expected:.2f}")
    assert measured <= expected <= 2 * measured, f"measured {measured / 2**20:.0f} MiB, estimated " \
                                                 f"{expected / 2**20:.0f}"


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
        check(preset("default", d_in=12_000, hidden=1, d_out=12_000, rank=1), max_bytes=2**30, max_macs=APP_RUN_MACS)


ONE_ROW = dict(d_in=1, hidden=1, d_out=1, rank=1, n_eval=1, batch_size=1)
APP_LIMITS = dict(max_bytes=8 * 2**30, max_macs=APP_RUN_MACS, max_seconds=APP_RUN_SECONDS)


@pytest.mark.parametrize("settings", [
    dict(ONE_ROW, n_samples=4_000_000, pretrain_epochs=100_000, epochs=100_000),  # years of one-row steps
    dict(ONE_ROW, n_samples=2_000_000),  # hours at the default 30 + 30 epochs
])
def test_the_app_refuses_runs_of_many_cheap_steps_saying_what_to_change(settings):
    """Such runs do almost no arithmetic (the multiply-add limit lets them through) but every step costs time."""
    config = preset("default", **settings)
    assert estimate(config).macs < APP_RUN_MACS
    with pytest.raises(ConfigError, match=r"would take up to about .* optimizer steps.* raise the batch size"):
        check(config, **APP_LIMITS)


def test_the_time_estimate_counts_every_step_and_admits_the_article():
    check(preset("article"), **APP_LIMITS)
    # the same arithmetic (autograd: no per-step products of its own) in 1 or 1024 steps per epoch
    few, many = (preset("default", batch_size=b, path="autograd") for b in (1024, 1))
    assert estimate(many).macs == pytest.approx(estimate(few).macs, rel=0.01)
    steps = estimate(many).steps - estimate(few).steps
    assert estimate(many).seconds - estimate(few).seconds >= steps * SECONDS_PER_STEP["autograd"]
