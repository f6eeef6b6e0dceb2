"""The text task's own views of a result: its losses in nats and bits per character, and where one head of the
last block looks before and after fine-tuning. Functions of results, no Streamlit."""

from __future__ import annotations

import math

import plotly.graph_objects as go
from plotly.subplots import make_subplots

from lora_core.settings.results import ExperimentResult

from .figures import MARGIN

BITS_PER_NAT = 1 / math.log(2)


def loss_note(result: ExperimentResult) -> str:
    """The held-out losses that matter, in nats and bits per character: the shift's text and the documentation,
    before and after."""
    def both(key: str) -> str:
        value = result.losses.get(key)
        return "—" if value is None else f"{value:.3f} nats ({value * BITS_PER_NAT:.3f} bits)"

    return (f"Held-out loss per character on the shift's text: base {both('base_on_shifted')}, fine-tuned and "
            f"merged {both('merged_on_shifted')}; on the documentation: base {both('base_on_original')}, after "
            f"{both('merged_on_original')}.")


def _label(ch: str) -> str:
    return {"\n": "↵", " ": "␣", "\ufffd": "?"}.get(ch, ch)


def attention_figure(attention: dict) -> go.Figure:
    """Two heatmaps side by side: row i is character i of the prompt, column j how much of its attention goes to
    character j (rows sum to 1; the causal mask keeps the upper triangle empty), base and fine-tuned."""
    chars = [f"{i}:{_label(c)}" for i, c in enumerate(attention["chars"])]  # the index keeps repeats apart
    titles = ("base model", "fine-tuned and merged")
    fig = make_subplots(rows=1, cols=2, subplot_titles=titles, shared_yaxes=True, horizontal_spacing=0.04)
    for col, key in enumerate(("base", "adapted"), start=1):
        fig.add_trace(go.Heatmap(z=attention[key], x=chars, y=chars, coloraxis="coloraxis", name=titles[col - 1],
                                 hovertemplate="%{y} looks at %{x}: %{z:.2f}<extra></extra>"), row=1, col=col)
    fig.update_layout(title=f"Where each character looks: block {attention['block'] + 1}, head "
                            f"{attention['head'] + 1}", coloraxis={"colorscale": "Blues", "cmin": 0, "cmax": 1,
                                                               "colorbar": {"title": "weight"}},
                      margin={**MARGIN, "l": 70}, height=520)
    fig.update_xaxes(title_text="looks at (key)", showticklabels=False)
    fig.update_yaxes(title_text="character (query)", autorange="reversed", showticklabels=False, row=1, col=1)
    fig.update_yaxes(autorange="reversed", showticklabels=False, row=1, col=2)
    return fig
