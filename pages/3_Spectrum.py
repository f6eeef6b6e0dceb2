"""Spectrum: the singular values of ΔW before and after merging, of the weights, and of the shift itself."""

import streamlit as st

from lora_core.analysis import direction_count, factored_gap
from lora_core.config import SHIFT_LABELS, make_config
from ui import figures, session
from ui.navigation import need_run, page
from ui.text import plain

page("Spectrum")
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
st.markdown(f"Last run: r = {config.rank}, α = {config.alpha:g}, {SHIFT_LABELS[config.shift]} shift of size "
            f"{config.shift_scale:g}, model {config.d_in} → {config.hidden} → {config.d_out}. "
            "ΔW = (α/r) B A has at most r non-zero singular values; the factors give them without forming ΔW, "
            "the merged weights give them from W_merged − W. The two should agree.")

columns = st.columns(len(result.spectra))
for column, (layer, s) in zip(columns, result.spectra.items(), strict=True):
    with column:
        st.plotly_chart(figures.delta_figure(result, layer), key=f"delta-{layer}")
        n = direction_count(s.delta_merged)
        if s.delta_factored:
            st.caption(f"ΔW after merging has {n} non-zero singular value(s) (r = {config.rank}); the largest "
                       f"{len(s.delta_factored)} agree with the factored ones to {factored_gap(s):.1e} "
                       "relative.")
        else:
            st.caption(f"Full fine-tuning: ΔW has {n} non-zero singular values; there are no factors.")
        st.plotly_chart(figures.weight_figure(result, layer), key=f"weight-{layer}")

shift = result.shift_spectrum  # computed inside the run, under its estimate: a view does no SVD
left, right = st.columns(2)
left.plotly_chart(figures.shift_figure(shift, config), key="shift")
curves = {f"ΔW of {layer}": s.delta_merged for layer, s in result.spectra.items()}
right.plotly_chart(figures.energy_figure({**curves, "the shift Δθ": shift}, rank), key="energy")
need = direction_count(shift)
st.markdown(f"**What the shift needs:** Δθ has {need} non-zero singular value(s)"
            + (" — a constant shift is one direction, so r = 1 is enough." if config.shift == "constant" else ".")
            + (f" The adapter has r = {config.rank} per layer." if rank else ""))
