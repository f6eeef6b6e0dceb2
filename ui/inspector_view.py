"""The Inspector page's figures and table: functions of an AdapterReport, no Streamlit.

Module names of a transformer (`model.layers.7.self_attn.q_proj`) are split into a layer index and a module name,
so that a chart can draw one line per kind of module across the layers.
"""

from __future__ import annotations

import re

import pandas as pd
import plotly.graph_objects as go

from lora_core.inspector import AdapterReport, rows

from .figures import _finite, _layout

_LAYER = re.compile(r"(?:^|\.)(?:layers?|h|blocks?|block)\.(\d+)\.(.+)$")


def split_name(module: str) -> tuple[int | None, str]:
    """'model.layers.7.self_attn.q_proj' -> (7, 'self_attn.q_proj'); a name without a layer index -> (None, name)."""
    match = _LAYER.search(module)
    return (int(match[1]), match[2]) if match else (None, module)


def per_layer(report: AdapterReport, value: str) -> go.Figure:
    """`value` ('effective_rank' or 'delta_norm') per layer index, one line per module name; without layer
    indices, one bar per module."""
    named = [(split_name(m.module), getattr(m, value)) for m in report.modules]
    label = {"effective_rank": "effective rank (exp of the entropy of σ²)", "delta_norm": "‖ΔW‖_F"}[value]
    fig = go.Figure()
    if all(layer is not None for (layer, _), _ in named):
        kinds: dict[str, list[tuple[int, float]]] = {}
        for (layer, kind), v in named:
            kinds.setdefault(kind, []).append((layer, v))
        for kind, points in sorted(kinds.items()):
            points.sort()
            fig.add_trace(go.Scatter(x=[p[0] for p in points], y=[p[1] for p in points], mode="lines+markers",
                                     name=kind))
        return _layout(fig, f"{label} per layer", "layer index", label)
    fig.add_trace(go.Bar(x=[m.module for m in report.modules], y=[getattr(m, value) for m in report.modules],
                         name=label))
    return _layout(fig, f"{label} per module", "module", label)


def spectra(report: AdapterReport, modules: list[str]) -> go.Figure:
    """The singular values of ΔW of the chosen modules."""
    fig = go.Figure()
    for m in report.modules:
        if m.module in modules:
            fig.add_trace(go.Scatter(x=list(range(1, len(m.singular_values) + 1)), y=_finite(m.singular_values),
                                     mode="lines+markers", name=m.module))
    _layout(fig, "Singular values of ΔW = s·B·A", "index i (largest first)", "singular value σᵢ (log scale)",
            log_y=True)
    if max((len(m.singular_values) for m in report.modules), default=0) <= 20:
        fig.update_xaxes(dtick=1)  # whole indices, not 1.5
    return fig


def table(report: AdapterReport) -> pd.DataFrame:
    return pd.DataFrame(rows(report))
