"""Live training from a page: a newer script run of the session releases the run it waited for, which the
scheduler then cancels within a mini-batch and does not keep."""

from __future__ import annotations

from streamlit.testing.v1 import AppTest


def _script_that_is_overtaken() -> None:
    import threading
    import time

    import streamlit as st

    from lora_core.config import preset
    from ui import live, session

    # Epochs of 4,000 single-row steps: only a check between mini-batches can stop one quickly.
    config = preset("default", d_in=8, hidden=8, d_out=8, n_samples=4000, n_eval=16, pretrain_epochs=1,
                    epochs=500, batch_size=1, seed=4242)
    state = session.current()
    sched = live.scheduler()

    def supersede() -> None:  # what a moved slider's new script run does to the old one's wait
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and not sched.stats()["running"]:
            time.sleep(0.01)
        time.sleep(0.3)
        state.active_run = "a newer script run"

    threading.Thread(target=supersede).start()
    result, _ = live.train(config, st.empty(), st.empty())
    released = time.monotonic()
    while sched.stats()["running"] and time.monotonic() - released < 10:
        time.sleep(0.01)
    stopped_after = time.monotonic() - released
    again = sched.submit(config, "another session")
    kept = again.from_cache
    sched.release(again, "another session")
    st.write(f"{result is None} {sched.stats()['running_bytes']} {stopped_after < 1.0} {kept}")


def test_a_newer_run_releases_the_old_one_which_stops_within_a_second_and_is_not_kept():
    at = AppTest.from_function(_script_that_is_overtaken, default_timeout=90).run()
    assert not at.exception, at.exception
    assert at.markdown[-1].value == "True 0 True False"
