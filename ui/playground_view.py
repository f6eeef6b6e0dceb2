"""The Playground page: the sidebar's settings, Train and Stop, the live chart, then the run's cards and notes."""

from __future__ import annotations

import logging

import streamlit as st

from lora_core.measure.analysis import config_param_counts, loss_improvement
from lora_core.settings.budget import duration, human_bytes
from lora_core.settings.config import LABELS, ConfigError, ExperimentConfig, make_config
from lora_core.settings.results import ExperimentResult
from lora_core.settings.variants import adapter_name, method_name, notes
from lora_core.tasks.registry import TASK_KINDS

from . import dynamics_figures, figures, live, session, text_figures, training_figures
from .sidebar import share_panel, show_link_warnings, sidebar
from .text import plain

INTRO = {  # the page's first line, by task
    "linear": "Pretrain a two-layer linear model on $y = x\\theta$, shift the task, then fine-tune LoRA adapters "
              "(rank r, scale α/r) on both layers and merge them.",
    "digits": "Pretrain a small ReLU network (64 → hidden → hidden → 10) on scikit-learn's 8×8 handwritten digits, "
              "shift the digits (rotate, mirror, invert, add noise, permute the pixels, or add classes pretraining "
              "never saw), then fine-tune LoRA adapters on the chosen layers and merge them.",
    "text": "Pretrain a small transformer (causal self-attention with q, k, v, o projections and an MLP fc1, fc2 "
            "in every block) to predict the next character of Python's own documentation, shift it to Python "
            "source code (or to the documentation read backwards), then fine-tune LoRA adapters on the chosen "
            "target modules and merge them. Losses are in nats per character (divide by ln 2 ≈ 0.693 for bits).",
}


def show() -> None:
    """The Playground page below its navigation."""
    config = sidebar()
    share_panel()
    state = session.current()

    st.title("Playground")
    st.markdown(INTRO[state.settings["task"]]
                + " Change a setting in the sidebar and press **Train**.")
    show_link_warnings()
    problem, cost = None, None
    if config is not None:
        try:  # this server's limits for one run (ui/live.py): refused before anything is allocated
            cost = live.admit(config)
        except ConfigError as e:
            problem = str(e)
    if problem:
        st.error(f"This run cannot start here: {plain(problem, 400)}")
    row = st.container(horizontal=True, vertical_alignment="center")
    clicked = row.button("Train", type="primary", disabled=config is None or problem is not None)
    # Pressing Stop reruns the page, and a rerun releases the run this session waits for (ui/live.py).
    stopped = row.button("Stop", disabled=not clicked, help="stop the run this page is waiting for")
    if config is not None:
        counts = config_param_counts(config)
        row.caption(f"{adapter_name(config)} trains {counts.lora_trainable:,} parameters where "
                    f"full fine-tuning trains "
                    f"{counts.full_trainable:,} ({counts.lora_trainable / counts.full_trainable:.2%})."
                    + (f" Estimated cost: {human_bytes(cost.bytes)} of memory, {cost.macs:.2g} multiply-adds, "
                       f"about {duration(cost.seconds)} here." if cost else ""))

    status, chart, dynamics_chart = st.empty(), st.empty(), st.empty()
    if stopped:
        status.info("Stopped: the run was cancelled (unless another session is waiting for the same settings).")
    if clicked and config is not None and problem is None:
        state.url_warnings = []
        try:
            result, from_cache = live.train(config, status, chart, dynamics_chart)
        except ConfigError as e:
            st.error(f"This run cannot start: {plain(str(e), 400)}")
        except Exception as e:  # the page's edge: a plain message here, the traceback in the server's log
            logging.getLogger(__name__).exception("training failed")
            st.error(f"Training failed: {plain(f'{type(e).__name__}: {e}', 400)}")
        else:
            if result is not None:
                state.record(result)
                state.from_cache = from_cache

    result = state.last()
    if result is None:
        if config is not None:  # the empty chart shows the epochs to come (and loads the charts before Train)
            chart.plotly_chart(training_figures.empty_figure(config.pretrain_epochs, config.epochs, config.task),
                               key="loss-empty")
        st.info("No run yet: press **Train** to pretrain and fine-tune with the settings in the sidebar.")
        st.stop()

    show_result(result, config, chart, state, dynamics_chart)


def show_result(result: ExperimentResult, config: ExperimentConfig | None, chart, state, dynamics_chart) -> None:
    """What the page shows of a finished run."""
    chart.plotly_chart(training_figures.result_figure(result), key="loss")
    tuning = result.history["finetune"]
    if tuning.spectra_epochs:
        with dynamics_chart.container():
            st.plotly_chart(dynamics_figures.dynamics_figure(tuning, result.config["epochs"], result.shift_spectrum),
                            key="dynamics")
            st.caption(dynamics_figures.dynamics_caption(tuning, make_config(**result.config)))
    if config is not None and result.config != config.to_dict():
        changed = [f"{LABELS.get(k, k)} {result.config[k]} → {v}" for k, v in config.to_dict().items()
                   if result.config[k] != v]
        st.info("These results are from different settings (" + plain("; ".join(changed), 300) + "). Press **Train**.")
    if result.status == "diverged":
        st.warning(f"This run diverged and stopped; the curve shows the epochs before it. {result.message}.")
    elif result.message:
        st.warning(result.message)

    loss_name = TASK_KINDS[result.config["task"]].loss_name
    accuracy_help = training_figures.ACCURACY_HELP.get(result.config["task"], "share of held-out answers right")
    cards = [c for _ in range(2) for c in st.columns(3)]  # two rows of three: the numbers stay readable
    for card, key in zip(cards, figures.LOSS_LABELS, strict=False):
        if result.accuracies:  # a classification task: accuracy on the card, the loss in its help
            card.metric(figures.LOSS_CARDS[key], training_figures.percent(result.accuracies.get(key)), border=True,
                        help=f"{figures.LOSS_LABELS[key]}: {accuracy_help}; {loss_name} "
                             f"{figures.number(result.losses.get(key))}")
        else:
            card.metric(figures.LOSS_CARDS[key], figures.number(result.losses.get(key)), border=True,
                        help=f"{figures.LOSS_LABELS[key]}: {loss_name} on held-out samples")
    if result.accuracies:
        st.caption(f"The cards show held-out accuracy: the {accuracy_help}. Each card's help gives "
                   f"the {loss_name}.")
    cards[-1].metric("Merge check", figures.number(result.merge_max_abs_diff), border=True,
                    help="max |adapter − merged|: the largest difference between the outputs of the adapter model and "
                         "of the merged model on held-out shifted data; merging is exact up to float rounding")

    fold = loss_improvement(result)
    before, after = result.accuracies.get("base_on_shifted"), result.accuracies.get("merged_on_shifted")
    shifted = training_figures.SHIFTED_DATA.get(result.config["task"], "shifted data")
    change = (f"Fine-tuning and merging took the accuracy on {shifted} from "
              f"{training_figures.percent(before)} to {training_figures.percent(after)}. " if after is not None
              else f"Fine-tuning and merging lowered the loss on shifted data {fold:,.0f}-fold. " if fold and fold >= 10
              else f"Fine-tuning and merging lowered the loss on shifted data {fold:.2g}-fold. " if fold and fold > 1
              else "")
    timing = " · ".join(f"{k.removesuffix('_s')} {v:.2f} s" for k, v in result.timings.items()) + \
        figures.estimate_note(result.estimate)
    st.caption(change
               + f"{method_name(make_config(**result.config))} on the {result.path} path · Device: {result.device} · "
               + timing
               + (" · pretrained base reused" if result.pretrain_cached else "")
               + (" · returned from the shared cache" if state.from_cache else ""))
    if result.floor is not None:
        st.caption(f"Floor: no change of this method's reach can do better than {figures.number(result.floor)} "
                   f"(± {figures.number(result.floor_noise)} on the held-out samples): {figures.FLOOR_NOTE}. "
                   "The Compare page sweeps it over ranks.")
    for note in notes(make_config(**result.config)):
        st.caption("What to look for with " + note)
    if result.samples:
        SAMPLE_VIEWS[result.config["task"]](result)


def digit_samples(result: ExperimentResult) -> None:
    st.plotly_chart(training_figures.samples_figure(result), key="samples")
    st.caption(training_figures.samples_caption(result))


def text_samples(result: ExperimentResult) -> None:
    """Each prompt continued by the base and by the fine-tuned model, as plain text (st.code shows it verbatim)."""
    st.caption(text_figures.loss_note(result))
    st.markdown("**The same prompts, continued** (greedy: the most likely next character, every time)")
    for i, sample in enumerate(result.samples):
        st.caption(f"Prompt {i + 1}, from the held-out shifted text")
        st.code(sample["prompt"], language=None, wrap_lines=True)
        for column, (who, text) in zip(st.columns(2), (("base model (pretrained on the documentation)",
                                                        sample["base"]), ("fine-tuned and merged", sample["adapted"])),
                                       strict=True):
            blank = " (only spaces and line breaks)" if not text.strip() else ""
            column.caption(who + blank)
            column.code(text, language=None, wrap_lines=True)
    attention = result.samples[0].get("attention")
    if attention:
        st.plotly_chart(text_figures.attention_figure(attention), key="attention")
        st.caption("Each row is a character of the first prompt; its cells, how much of that character's attention "
                   "goes to each earlier one (a row sums to 1). Hover for the characters. Adapters on q or k "
                   "change where a head looks; on v, o or the MLP only what it does with what it sees.")


# How a task's result samples are shown (ExperimentResult.samples, made by its TaskKind), by task
SAMPLE_VIEWS = {"digits": digit_samples, "text": text_samples}
