"""Spectrum: the singular values of ΔW before and after merging, of the weights, and of the shift itself."""

import streamlit as st

from lora_core.measure.analysis import direction_count, factored_gap
from lora_core.settings.config import make_config
from lora_core.settings.variants import delta_kind, method_name
from lora_core.tasks.registry import TASK_KINDS
from ui import dynamics_figures, figures, session
from ui.navigation import need_run, page
from ui.text import plain

with page("Spectrum"):
    st.title("Spectrum")
    result = session.current().last()
    if result is None:
        need_run("the spectra")
        st.stop()
    if not result.spectra:
        st.warning(f"The last run stopped early ({result.status}), so it has no spectra. {plain(result.message)}")
        st.stop()


    config = make_config(**result.config)
    rank = config.rank if config.method == "lora" else None
    kind = delta_kind(config)
    model = TASK_KINDS[config.task].describe_model(config)
    task = TASK_KINDS[config.task].shift_label(config)
    st.markdown(f"Last run: {method_name(config)}, r = {config.rank}, α = {config.alpha:g}, {task}, model {model}. "
                "ΔW is always W_merged − W with W the pretrained weight. " + figures.DELTA_INTRO[kind])

    shown = result.spectra
    if len(shown) > figures.SIDE_BY_SIDE:  # a transformer's many projections: one at a time, chosen
        layer = st.selectbox("Layer", list(shown), help="every adapted layer of the run (every layer after full "
                             "fine-tuning)")
        shown = {layer: shown[layer]}
    columns = st.columns(len(shown))
    for column, (layer, s) in zip(columns, shown.items(), strict=True):
        with column:
            st.plotly_chart(figures.delta_figure(result, layer), key=f"delta-{layer}")
            st.caption(figures.DELTA_NOTE[kind].format(n=direction_count(s.delta_merged), r=config.rank,
                                                       k=len(s.delta_factored), two_r=2 * config.rank,
                                                       most=len(s.weight_before),
                                                       gap=factored_gap(s) if s.delta_factored else 0.0))
            st.plotly_chart(figures.weight_figure(result, layer), key=f"weight-{layer}")

    tuning = result.history["finetune"]
    if tuning.spectra_epochs:  # scrub ΔW through training: what fine-tuning recorded after each epoch
        st.subheader("Through training")
        epoch = st.select_slider("Fine-tuning epoch", options=tuning.spectra_epochs, value=tuning.spectra_epochs[-1],
                                 help="ΔW's singular values as they were after this epoch of fine-tuning")
        st.plotly_chart(dynamics_figures.epoch_figure(tuning, tuning.spectra_epochs.index(epoch)), key="epoch")
        st.caption(dynamics_figures.epoch_caption(tuning, epoch))

    shift = result.shift_spectrum  # computed inside the run, under its estimate: a view does no SVD
    if not TASK_KINDS[config.task].linear_model:  # the digits' shift is no matrix: each layer's change is all to show
        st.plotly_chart(figures.energy_figure({f"ΔW of {layer}": s.delta_merged for layer, s in result.spectra.items()},
                                              rank), key="energy")
        st.stop()
    left, right = st.columns(2)
    left.plotly_chart(figures.shift_figure(shift, config), key="shift")
    curves = {f"ΔW of {layer}": s.delta_merged for layer, s in result.spectra.items()}
    right.plotly_chart(figures.energy_figure({**curves, "the shift Δθ": shift}, rank), key="energy")
    need = direction_count(shift)
    st.markdown(f"**What the shift needs:** Δθ has {need} non-zero singular value(s)"
                + (" — a constant shift is one direction, so r = 1 is enough." if config.shift == "constant" else ".")
                + (f" The adapter has r = {config.rank} per layer." if rank else ""))
