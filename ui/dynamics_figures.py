"""See it learn: fine-tuning's directions epoch by epoch (measure/dynamics.py's record), live while a run trains
and after it; and the Spectrum page's scrubbed view of one epoch. Functions of results, no Streamlit."""

from __future__ import annotations

import plotly.colors
import plotly.graph_objects as go
from plotly.subplots import make_subplots

from lora_core.measure.dynamics import ORDINALS, approximate, arrivals
from lora_core.settings.config import ExperimentConfig
from lora_core.settings.results import PhaseHistory

from . import figures

TITLE = "ΔW's directions per epoch"
COLORS = plotly.colors.qualitative.Dark24
LEARNED_AXIS = "learned along it: σᵢ × share (dashed: σᵢ)"
DELTA_AXIS = "singular value of ΔW"


def dynamics_figure(history: PhaseHistory, epochs: int, shift_spectrum: list[float] | None) -> go.Figure:
    """Above (linear task): how much of each of the shift's directions the model has learned end to end, σᵢ times
    the share learned, growing towards the shift's own σᵢ (dashed); below: each adapted layer's ΔW singular
    values, one line per direction, over the fine-tuning epochs (of `epochs`) recorded so far."""
    follows = bool(history.modes_learned) and bool(shift_spectrum)
    rows = 2 if follows else 1
    fig = make_subplots(rows=rows, cols=1, shared_xaxes=True, vertical_spacing=0.1,
                        row_heights=[0.5, 0.5] if follows else [1.0])
    x = history.spectra_epochs
    if follows:
        sigma = shift_spectrum[:len(history.modes_learned[0])]
        for i, s in enumerate(sigma):
            color = COLORS[i % len(COLORS)]
            fig.add_trace(go.Scatter(x=x, y=[row[i] * s for row in history.modes_learned], mode="lines",
                                     name=f"shift's {ORDINALS[i]} direction (σ = {s:.3g})",
                                     line={"color": color, "width": 2}), row=1, col=1)
            fig.add_trace(go.Scatter(x=[1, epochs], y=[s, s], mode="lines", showlegend=False,
                                     name=f"σ{i + 1} of the shift", line={"color": color, "dash": "dash", "width": 1},
                                     hoverinfo="skip"), row=1, col=1)
        fig.update_yaxes(title_text=LEARNED_AXIS, row=1, col=1)
    dashes = ("solid", "dot", "dashdot", "longdash")
    for j, (layer, per_epoch) in enumerate(history.delta_spectra.items()):
        for i in range(max((len(v) for v in per_epoch), default=0)):
            fig.add_trace(go.Scatter(x=x, y=[v[i] if i < len(v) else None for v in per_epoch], mode="lines",
                                     name=f"{layer}: σ{i + 1} of ΔW", legendgroup=layer,
                                     line={"color": COLORS[i % len(COLORS)], "dash": dashes[j % len(dashes)],
                                           "width": 1.5}), row=rows, col=1)
    fig.update_yaxes(title_text=DELTA_AXIS, row=rows, col=1)
    fig.update_xaxes(title_text="fine-tuning epoch", range=[0.5, max(epochs, 1) + 0.5], row=rows, col=1)
    return fig.update_layout(title=TITLE, **figures.legend_layout(fig, {**figures.MARGIN, "t": 130}),
                             height=620 if follows else 420, hovermode="x unified")


def dynamics_caption(history: PhaseHistory, config: ExperimentConfig) -> str:
    """What this run's dynamics show, from its numbers."""
    said = arrivals(history)
    note = (" Singular values of wide matrices are a randomised top 8 (exact where they stand apart, possibly a "
            "little low where they crowd together)." if approximate(config) else "")
    epochs = history.spectra_epochs
    if len(epochs) > 1 and epochs[1] - epochs[0] > 1:  # thinned: an arrival is known to the recorded epoch
        note += f" Recorded every {epochs[1] - epochs[0]} epochs of {epochs[-1]}, so each epoch is the first " \
                "recorded one after it happened."
    if said:
        return (said + " Above: σᵢ × the share of direction i the model has learned end to end (uᵢᵀ ΔM vᵢ, ΔM = "
                "W₂'W₁' − W₂W₁), rising to the shift's σᵢ (dashed); below: each layer's ΔW." + note)
    return "Each adapted layer's ΔW, its singular values after every fine-tuning epoch." + note


def epoch_figure(history: PhaseHistory, index: int) -> go.Figure:
    """Each adapted layer's ΔW singular values at one recorded epoch (the Spectrum page's slider)."""
    epoch = history.spectra_epochs[index]
    fig = go.Figure()
    for layer, per_epoch in history.delta_spectra.items():
        values = per_epoch[index]
        fig.add_trace(go.Bar(x=[f"σ{i + 1}" for i in range(len(values))], y=values, name=layer))
    return fig.update_layout(title=f"ΔW's singular values after fine-tuning epoch {epoch}", barmode="group",
                             yaxis_title=DELTA_AXIS, xaxis_title="direction (largest first)",
                             **figures.legend_layout(fig), height=380)


def epoch_caption(history: PhaseHistory, epoch: int) -> str:
    """What the scrubbed epoch shows: how many of each layer's directions are there, and (linear task) how much
    of each of the shift's directions the model has learned by then."""
    index = history.spectra_epochs.index(epoch)
    at = history.dynamics_at(index)
    tops = "; ".join(f"{layer}: σ₁ = {values[0]:.3g}" + (f", σ₂ = {values[1]:.3g}" if len(values) > 1 else "")
                     for layer, values in at.delta.items() if values)
    learned = ", ".join(f"{100 * share:.0f} %" for share in at.learned)
    return (f"After fine-tuning epoch {epoch} of {history.spectra_epochs[-1]}: {tops}."
            + (f" Learned of the shift's directions, strongest first: {learned}." if learned else ""))
