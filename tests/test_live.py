"""Live training from a page: a newer script run of the session cancels the older one's run."""

from __future__ import annotations

from streamlit.testing.v1 import AppTest


def _script_that_is_overtaken() -> None:
    import streamlit as st

    from lora_core.config import preset
    from ui import live, session

    config = preset("default", d_in=8, hidden=8, d_out=8, n_samples=64, n_eval=16, pretrain_epochs=4, epochs=50,
                    seed=4242)
    original = live.run_experiment

    def overtaken(config, on_progress):
        def hook(p):
            if p.phase == "finetune" and p.epoch == 3:
                session.current().active_run = "a newer script run"  # what a moved slider's rerun does
            return on_progress(p)
        return original(config, hook)

    live.run_experiment = overtaken
    try:
        result, _ = live.train(config, st.empty(), st.empty())
    finally:
        live.run_experiment = original
    st.write(f"{result.status} {len(result.history['finetune'].train_loss)} {live.cached(config) is None}")


def test_a_newer_run_cancels_the_old_one_within_an_epoch_and_it_is_not_cached():
    at = AppTest.from_function(_script_that_is_overtaken, default_timeout=60).run()
    assert not at.exception
    assert at.markdown[-1].value == "cancelled 3 True"
