"""Live training from a page: a newer script run of the session releases the run it waited for, which the
scheduler then cancels within a mini-batch and does not keep."""

from __future__ import annotations

import pytest
from streamlit.testing.v1 import AppTest


def _script_that_is_overtaken() -> None:
    import threading
    import time

    import streamlit as st

    from lora_core.settings.config import preset
    from ui import live, session

    # Epochs of 4,000 single-row steps: only a check between mini-batches can stop one quickly. (About a
    # minute of work: within the app's time limit, so it is admitted; in the long lane.)
    config = preset("default", d_in=8, hidden=8, d_out=8, n_samples=4000, n_eval=16, pretrain_epochs=1,
                    epochs=100, batch_size=1, seed=4242)
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
    while sched.stats()["running"] and time.monotonic() - released < 60:  # a guard against a hang only
        time.sleep(0.01)
    stopped = not sched.stats()["running"]
    print(f"the released run stopped {time.monotonic() - released:.3f} s after its page let go")  # reported
    again = sched.submit(config, "another session")
    kept = again.from_cache
    sched.release(again, "another session")
    st.write(f"{result is None} {sched.stats()['running_bytes']} {stopped} {kept}")


def test_a_newer_run_releases_the_old_one_which_stops_and_is_not_kept():
    at = AppTest.from_function(_script_that_is_overtaken, default_timeout=90).run()
    assert not at.exception, at.exception
    assert at.markdown[-1].value == "True 0 True False"


def test_sessions_waiting_for_one_job_share_its_live_chart_and_see_every_update():
    from lora_core.serving.scheduler import Job
    from lora_core.settings.budget import estimate
    from lora_core.settings.config import preset
    from lora_core.settings.results import Progress
    from ui import live

    config = preset("default", pretrain_epochs=3, epochs=2)
    job, other = Job(config, estimate(config)), Job(config, estimate(config))
    job.progress += [Progress("pretrain", e, 3, 1.0 / e, 1.0 / e) for e in (1, 2)]
    first = live._live_figure(job, list(job.progress))
    assert live._live_figure(job, list(job.progress)) is first  # a second session: the same figure, not rebuilt
    assert live._live_figure(other, []) is not first  # another job (here with no epochs yet) has its own
    job.progress.append(Progress("pretrain", 3, 3, 0.2, 0.25))
    grown = live._live_figure(job, list(job.progress))
    assert grown is not first
    pretrain = next(t for t in grown.to_dict()["data"] if "held-out" in t["name"] and "pretrain" in t["name"])
    assert list(pretrain["y"]) == [1.0, 0.5, 0.25]


def test_the_live_directions_chart_grows_from_what_fine_tuning_records():
    from lora_core.serving.scheduler import Job
    from lora_core.settings.budget import estimate
    from lora_core.settings.config import preset
    from lora_core.settings.results import EpochDynamics, Progress
    from ui import live

    config = preset("default", shift="graded", shift_rank=2, pretrain_epochs=1, epochs=4)
    job = Job(config, estimate(config))
    job.progress.append(Progress("pretrain", 1, 1, 1.0, 1.0))
    assert live._live_figures(job, list(job.progress))[1] is None  # nothing recorded yet: no chart
    for epoch in (1, 2):
        dynamics = EpochDynamics({"layer1": [2.0 * epoch, 1.0], "layer2": [3.0, 0.5 * epoch]}, [9.0, 4.0],
                                 [0.4 * epoch, 0.1 * epoch])
        job.progress.append(Progress("finetune", epoch, 4, 0.5, 0.5, None, dynamics))
    chart = live._live_figures(job, list(job.progress))[1].to_dict()
    traces = {t["name"]: t for t in chart["data"]}
    assert list(traces["layer1: σ1 of ΔW"]["y"]) == [2.0, 4.0] and list(traces["layer2: σ2 of ΔW"]["y"]) == [0.5, 1.0]
    first = next(t for name, t in traces.items() if name.startswith("shift's first direction"))
    sigma = live._shift_spectrum(config)[0]
    assert list(first["y"]) == pytest.approx([0.4 * sigma, 0.8 * sigma])  # σ₁ × the share learned
    assert list(chart["layout"]["xaxis2"]["range"]) == [0.5, 4.5]  # the planned epochs: the lines grow into it


def test_the_server_does_not_collect_garbage_after_every_script_run():
    """Streamlit's default full collection after each script run held the GIL about 0.12 s; ten sessions pressing
    Train together stalled the health check for 0.6-1.05 s (tests/browser/test_load.py measures it)."""
    import tomllib
    from pathlib import Path

    settings = tomllib.loads((Path(__file__).parents[1] / ".streamlit" / "config.toml").read_text())
    assert settings["runner"]["postScriptGC"] is False
